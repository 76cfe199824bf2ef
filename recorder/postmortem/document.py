"""Reading a postmortem: HTML, Markdown or plain text into lines and sections.

The rules (`recorder.postmortem.lint`) judge what a section says; this module only finds
the sections, however the document is written:

1. Bytes are decoded (UTF-8, UTF-16 with a BOM, else Windows-1252: never fail on a byte).
2. HTML is turned into Markdown-like lines (`<h2>` -> `##`, `<li>` -> `-`, rows -> `|`).
3. Each line gets a kind (heading, bullet, table row, text, code, rule, blank). Headings
   are found in any form: `#`..`######`, setext underlines, a bold-only line, or a plain
   line on its own (colon or not, any case) made only of heading words ("Issue Summary:",
   "TIME LINE", "Root Cause and Resolution"), and mapped to a section by their words
   (`classify`).
4. Lines are grouped under the four sections of the standard; plain "Root cause:" lines
   inside the summary are the summary's own labels when the document has a root-cause
   section further down. What is under no known heading is the `DOCUMENT` part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

# More is not a postmortem (1 MB is some 200 pages): read no further, and say so. The
# bound also keeps a hostile file from costing more than a few seconds of regex work.
MAX_BYTES = 1024 * 1024
MAX_LINES = 20_000

SUMMARY = "Issue summary"
TIMELINE = "Timeline"
ROOT = "Root cause and resolution"
MEASURES = "Corrective and preventative measures"
DOCUMENT = "Document"
SECTIONS = (SUMMARY, TIMELINE, ROOT, MEASURES)


# ---- headings --------------------------------------------------------------------------

_HEADING_WORDS = frozenset(
    """issue incident outage executive summary overview of the impact and duration time line
    timeline chronology sequence events event root cause causes resolution recovery
    mitigation fix corrective correction preventative preventive prevention measures measure
    actions action items item follow up ups follow-up follow-ups next steps tasks task
    improvements remediation trigger detailed postmortem post-mortem tl;dr what went wrong
    why it happened how was fixed resolved we in detail analysis""".split()
)
_KEYS: list[tuple[str, re.Pattern[str]]] = [
    ("timeline", re.compile(r"\btime\s*-?\s*line\b|\bchronology\b|\bsequence of events\b")),
    (
        "measures",
        re.compile(
            r"\bcorrect(?:ive|ion)\b|\bprevent(?:(?:at)?ive|ion)\b|\baction items?\b|"
            r"\bfollow[- ]?ups?\b|\bnext steps\b|\bremediation (?:items|actions|tasks)\b|"
            r"\bimprovements?\b|\bto-?dos?\b|\btasks?\b"
        ),
    ),
    ("cause", re.compile(r"\broot[- ]?causes?\b|\bcauses?\b|\btrigger\b|\bwhat went wrong\b")),
    (
        "resolution",
        re.compile(
            r"\bresolution\b|\brecovery\b|\bmitigation\b|\bfix(?:es)?\b|"
            r"\bhow (?:it was|we) (?:fixed|resolved)\b"
        ),
    ),
    (
        "summary",
        re.compile(r"\bsummary\b|\boverview\b|\btl;?dr\b|\babstract\b|\bimpact\b|\bduration\b"),
    ),
]
_SECTION_OF = {
    "summary": SUMMARY,
    "timeline": TIMELINE,
    "cause": ROOT,
    "resolution": ROOT,
    "root": ROOT,
    "measures": MEASURES,
}
# A one-word plain numbered line ("3. Fix", "2. Tasks") is more likely a list item.
_ONE_WORD_HEADINGS = frozenset(
    {"summary", "overview", "timeline", "chronology", "resolution", "impact", "duration"}
)
_NUMBERING = re.compile(
    r"^(?:(?:section|part|chapter)\s+)?(?:\d+(?:\.\d+)*[.)]?|[ivx]+[.)])\s+", re.IGNORECASE
)


def _normalize_heading(text: str) -> str:
    text = text.lower().replace("&", " and ")
    text = re.sub(r"\([^)]*\)|\[[^\]]*\]", " ", text)  # "Timeline (all times EAT)"
    text = re.sub(r"[*_`#]+", " ", text)
    text = text.strip().rstrip(":").strip()
    text = _NUMBERING.sub("", text)
    return re.sub(r"\s+", " ", text).strip(" :.-–—")


def classify(text: str) -> str | None:
    """The section key a heading's words mean, or None."""
    norm = _normalize_heading(text)
    if not norm or len(norm.split()) > 12:
        return None
    keys = [key for key, pattern in _KEYS if pattern.search(norm)]
    if not keys:
        return None
    if "cause" in keys and "resolution" in keys and keys[0] == "cause":
        return "root"
    return keys[0]


def _plain_heading(line: str) -> str | None:
    """A plain-text line that is a heading on its own: only heading words, short."""
    stripped = line.strip()
    if not stripped or len(stripped) > 80 or stripped.endswith((".", ",", ";")):
        return None
    first = re.sub(r"^[\W\d_]+", "", stripped).split(" ", 1)[0].lower().rstrip(":")
    if first not in _HEADING_WORDS:
        return None  # cheap refusal of the many ordinary lines
    numbered = bool(_NUMBERING.match(stripped))
    norm = _normalize_heading(stripped)
    words = norm.split()
    if not words or len(words) > 8 or not all(w in _HEADING_WORDS for w in words):
        return None
    if numbered and len(words) == 1 and words[0] not in _ONE_WORD_HEADINGS:
        return None
    return classify(stripped)


# ---- lines -----------------------------------------------------------------------------


@dataclass
class Line:
    kind: str  # heading | bullet | row | text | blank | code | rule
    text: str
    level: int = 0  # heading: 1-6 markup, 7 bold line, 8 plain line; bullet: indent
    key: str | None = None  # heading: what section its words mean


_ATX = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_SETEXT = re.compile(r"^\s{0,3}(=+|-+)\s*$")
_RULE = re.compile(r"^\s{0,3}([-*_])(?:\s*\1){2,}\s*$")
_BOLD_LINE = re.compile(r"^\s*(\*\*|__)(?P<t>[^*_]+?)(?::\s*)?\1\s*:?\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")
_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(?:\|\s*:?-{2,}:?\s*)*\|?\s*$")
_BULLET = re.compile(
    r"^(?P<indent>[ \t]*)(?:[-*+•·◦▪‣►➢–—\uf0b7\uf0a7]|o|\d{1,3}[.)]|[a-z]\))[ \t]+"
    r"(?:\[[ xX]\][ \t]+)?(?P<body>\S.*)$"
)


def parse_lines(raw: list[str]) -> list[Line]:
    lines: list[Line] = []
    in_code = False
    skip_next = False
    for i, source in enumerate(raw):
        line = source.rstrip().expandtabs(4)
        if skip_next:
            skip_next = False
            lines.append(Line("rule", ""))
            continue
        if _FENCE.match(line):
            in_code = not in_code
            lines.append(Line("code", line))
            continue
        if in_code:
            lines.append(Line("code", line))
            continue
        if not line.strip():
            lines.append(Line("blank", ""))
            continue
        atx = _ATX.match(line)
        if atx:
            lines.append(Line("heading", atx.group(2), len(atx.group(1)), classify(atx.group(2))))
            continue
        nxt = raw[i + 1].rstrip() if i + 1 < len(raw) else ""
        bullet = _BULLET.match(line)
        row = _TABLE_ROW.match(line)
        if _SETEXT.match(nxt) and len(nxt.strip()) >= 3 and not bullet and not row:
            key = classify(line)
            # A sentence above a `---` separator is text in plain documents, not a title.
            if key or (len(line.split()) <= 10 and not line.rstrip().endswith(".")):
                level = 1 if nxt.strip().startswith("=") else 2
                lines.append(Line("heading", line.strip(), level, key))
                skip_next = True
                continue
        if _RULE.match(line):
            lines.append(Line("rule", ""))
            continue
        bold = _BOLD_LINE.match(line)
        if bold and classify(bold.group("t")):
            lines.append(Line("heading", bold.group("t").strip(), 7, classify(bold.group("t"))))
            continue
        key = _plain_heading(line)
        if key and not row and (not bullet or _NUMBERING.match(line.strip())):
            lines.append(Line("heading", line.strip(), 8, key))
            continue
        if row:
            if _TABLE_SEP.match(line):
                # The row above was the table's header, not an entry.
                if lines and lines[-1].kind == "row":
                    lines[-1].kind = "rule"
                lines.append(Line("rule", ""))
                continue
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            lines.append(Line("row", " - ".join(c for c in cells if c)))
            continue
        if bullet:
            lines.append(Line("bullet", bullet.group("body"), len(bullet.group("indent"))))
            continue
        lines.append(Line("text", line.strip(), len(line) - len(line.lstrip())))
    return lines


# ---- HTML ------------------------------------------------------------------------------

_HTML_HINT = re.compile(r"<(?:html|body|h[1-6])\b[^>]*>", re.IGNORECASE)
_HTML_BLOCK = re.compile(r"<(?:p|ul|ol|li|div|table|tr)\b[^>]*>", re.IGNORECASE)


def looks_like_html(text: str) -> bool:
    if re.search(r"^\s{0,3}#{1,6}\s", text, re.MULTILINE):
        return False  # Markdown that embeds some HTML stays Markdown
    return bool(_HTML_HINT.search(text)) or len(_HTML_BLOCK.findall(text, 0, 200_000)) >= 3


class _HTMLToLines(HTMLParser):
    _SKIP = frozenset({"script", "style", "head", "title", "noscript", "template"})
    _BLOCK = frozenset(
        """p div section article header footer main table thead tbody tfoot dl dt dd
        blockquote hr br body html figure figcaption nav aside pre""".split()
    )
    _HEADINGS = {f"h{n}": n for n in range(1, 7)}
    # Where text flows as one paragraph (its line breaks are only wrapping).
    _FLOW = frozenset({"p", "li", "td", "th", "dt", "dd", "blockquote", "figcaption"}) | set(
        _HEADINGS
    )
    _SPACE = re.compile(r"\s+")
    _LINE_SPACE = re.compile(r"[^\S\n]+")

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.newlines = 0  # so the caller can stop at MAX_LINES
        self.skip = 0
        self.depth = 0  # nested lists
        self.pre = 0
        self.flow = 0  # open tags of _FLOW
        self.header_row = False

    def emit(self, text: str) -> None:
        self.out.append(text)
        self.newlines += text.count("\n")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._FLOW:
            self.flow += 1
        if tag in self._SKIP:
            self.skip += 1
        elif tag in self._HEADINGS:
            self.emit("\n\n" + "#" * self._HEADINGS[tag] + " ")
        elif tag in ("ul", "ol"):
            self.depth += 1
            self.emit("\n")
        elif tag == "li":
            self.emit("\n" + "  " * max(self.depth - 1, 0) + "- ")
        elif tag == "tr":
            self.header_row = True
            self.emit("\n|")
        elif tag == "td":
            self.header_row = False
        elif tag in ("strong", "b"):
            self.emit("**")
        elif tag == "code" and not self.pre:
            self.emit("`")  # keeps a command a command for the task check
        elif tag in self._BLOCK:
            if tag == "pre":
                self.pre += 1
            self.emit("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._FLOW:
            self.flow = max(0, self.flow - 1)
        if tag in self._SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag in self._HEADINGS:
            self.emit("\n")
        elif tag in ("ul", "ol"):
            self.depth = max(0, self.depth - 1)
            self.emit("\n")
        elif tag in ("td", "th"):
            self.emit(" |")
        elif tag == "tr":
            self.emit("\n|---|\n" if self.header_row else "\n")
        elif tag in ("strong", "b"):
            self.emit("**")
        elif tag == "code" and not self.pre:
            self.emit("`")
        elif tag in self._BLOCK:
            if tag == "pre":
                self.pre = max(0, self.pre - 1)
            self.emit("\n")

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if self.pre:
            self.emit(data)
        elif self.flow:
            self.emit(self._SPACE.sub(" ", data))
        else:
            # Text loose in the body or a div, outside any paragraph: hand-written HTML
            # postmortems put plain-line headings ("Root Cause and Resolution:") and
            # timeline or task lines there, one per line. Keep its lines.
            self.emit(self._LINE_SPACE.sub(" ", data))


def html_to_text(text: str) -> str:
    parser = _HTMLToLines()
    for start in range(0, len(text), 64 * 1024):
        parser.feed(text[start : start + 64 * 1024])
        if parser.newlines > MAX_LINES:
            break  # the caller cuts at MAX_LINES and says so
    else:
        parser.close()
    return "\n".join(
        line.rstrip() if line.strip() else "" for line in "".join(parser.out).split("\n")
    )


# ---- sections --------------------------------------------------------------------------


@dataclass
class Section:
    name: str
    lines: list[tuple[Line, str | None]] = field(default_factory=list)  # (line, part)

    def content(self) -> list[Line]:
        return [ln for ln, _ in self.lines if ln.kind in ("text", "bullet", "row", "code")]

    def text(self) -> str:
        return "\n".join(ln.text for ln, _ in self.lines if ln.kind not in ("blank", "rule"))


def split_sections(lines: list[Line]) -> tuple[dict[str, Section], Section]:
    sections: dict[str, Section] = {}
    other = Section(DOCUMENT)  # before the first section and under unknown headings
    current: Section = other
    level = 0
    part: str | None = None
    headings = [(i, ln) for i, ln in enumerate(lines) if ln.kind == "heading"]
    for i, line in enumerate(lines):
        if line.kind != "heading":
            current.lines.append((line, part))
            continue
        if line.key is None:
            if current is not other and line.level <= level and line.level <= 6:
                current, level, part = other, line.level, None
            else:
                current.lines.append((Line("text", line.text), part))
            continue
        name = _SECTION_OF[line.key]
        if (
            current.name == SUMMARY
            and line.key in ("cause", "resolution")
            and any(
                j > i and _SECTION_OF.get(h.key or "") == ROOT and h.level <= level
                for j, h in headings
            )
        ):
            # "Root cause: ..." inside the summary, with the real section further down.
            current.lines.append((Line("text", line.text), part))
            continue
        if name == current.name:
            if name == ROOT:
                part = line.key if line.key in ("cause", "resolution") else None
            current.lines.append((line, part))
            continue
        current = sections.setdefault(name, Section(name))
        level = line.level
        part = line.key if line.key in ("cause", "resolution") else None
    return sections, other


@dataclass
class Document:
    """A document read into sections: the four of the standard (those present), the
    rest (before the first section and under unknown headings), and whether it was cut
    at MAX_LINES."""

    sections: dict[str, Section]
    other: Section
    truncated: bool


def read_document(text: str, truncated: bool = False) -> Document:
    """Read decoded text (`truncated`: it was already cut at MAX_BYTES)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    if looks_like_html(text):
        text = html_to_text(text)
    lines = text.split("\n")
    if len(lines) > MAX_LINES:
        lines, truncated = lines[:MAX_LINES], True
    sections, other = split_sections(parse_lines(lines))
    return Document(sections, other, truncated)


def is_binary(text: str) -> bool:
    sample = text[:8192]
    if "\x00" in sample:
        return True
    controls = sum(1 for c in sample if ord(c) < 32 and c not in "\t\n\r\f\v")
    return bool(sample) and controls / len(sample) > 0.05


def decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if exc.start >= len(data) - 3:
            return data[: exc.start].decode("utf-8-sig")  # cut inside the last character
    # Not UTF-8: most such postmortems are Windows-1252 (Word); never fail on a byte.
    return data.decode("cp1252", errors="replace")
