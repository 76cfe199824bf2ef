"""The postmortem's Markdown as HTML: the subset the recorder's own template writes
(headings, paragraphs, quotes, bullets nested by indent, task boxes, numbered steps,
fenced blocks, `code` and **bold**), every character of the text escaped first.

The final document is whatever `recorder close` wrote (possibly edited by hand), so the
page renders that file, not a re-rendering of the incident. Anything outside the subset
shows as its plain text: never as markup.
"""

from __future__ import annotations

import html as html_entities
import re

from markupsafe import Markup, escape

from recorder.fillin import PLACEHOLDER_MARK

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_ITEM = re.compile(r"^(?P<indent>\s*)(?:(?P<bullet>[-*+])|(?P<number>\d{1,3})[.)])\s+(?P<text>.*)$")
_TASK = re.compile(r"^\[(?P<done>[ xX])\]\s+")
_CODE = re.compile(r"`([^`\n]+)`")
_BOLD = re.compile(r"\*\*([^*\n]+)\*\*")
_MARKER = re.compile(re.escape(str(escape(PLACEHOLDER_MARK))) + r"[^\]\n]*\]\]")


def inline(text: str) -> Markup:
    """One line of text: escaped, then `code`, **bold** and FILL IN markers marked up.

    Entities are read as Markdown reads them (the drafter writes `&lt;` for a `<` from a
    log line or a note), then everything is escaped again: `&lt;script&gt;` shows as
    `<script>`, as text."""
    html = str(escape(html_entities.unescape(text)))
    html = _CODE.sub(r"<code>\1</code>", html)
    html = _BOLD.sub(r"<strong>\1</strong>", html)
    html = _MARKER.sub(lambda m: f'<mark class="fill-in">{m.group(0)}</mark>', html)
    return Markup(html)


def to_html(text: str) -> Markup:
    """The document as an HTML fragment (headings one level down: the page owns <h1>)."""
    out: list[str] = []
    paragraph: list[str] = []
    lists: list[tuple[int, str]] = []  # open lists: (indent, "ul" or "ol")
    fence: list[str] | None = None
    fence_lang = ""

    def end_paragraph() -> None:
        if paragraph:
            out.append(f"<p>{' '.join(paragraph)}</p>\n")
            paragraph.clear()

    def end_lists(to_indent: int = -1) -> None:
        while lists and lists[-1][0] > to_indent:
            out.append(f"</li></{lists.pop()[1]}>")
            if not lists:
                out.append("\n")

    for line in text.splitlines():
        if fence is not None:
            if line.strip().startswith("```"):
                cls = f' class="lang-{escape(fence_lang)}"' if fence_lang else ""
                out.append(f"<pre{cls}>{escape(chr(10).join(fence))}</pre>\n")
                fence = None
            else:
                fence.append(line)
            continue
        stripped = line.strip()
        if stripped.startswith("```"):
            end_paragraph()
            end_lists()
            fence, fence_lang = [], re.sub(r"[^A-Za-z0-9-]", "", stripped[3:])[:20]
            continue
        if not stripped:
            end_paragraph()
            continue
        heading = _HEADING.match(line)
        if heading:
            end_paragraph()
            end_lists()
            level = min(6, len(heading.group(1)) + 1)
            out.append(f"<h{level}>{inline(heading.group(2))}</h{level}>\n")
            continue
        item = _ITEM.match(line)
        if item and not paragraph:
            indent = len(item["indent"].expandtabs(4))
            kind = "ol" if item["number"] else "ul"
            if lists and indent > lists[-1][0]:
                out.append(f"<{kind}><li>")
                lists.append((indent, kind))
            else:
                end_lists(indent)
                if lists and lists[-1][0] == indent and lists[-1][1] == kind:
                    out.append("</li><li>")
                else:
                    if lists and lists[-1][0] == indent:
                        out.append(f"</li></{lists.pop()[1]}>")
                    out.append(f"<{kind}><li>")
                    lists.append((indent, kind))
            body = item["text"]
            task = _TASK.match(body)
            if task:
                box = "&#9745;" if task["done"] != " " else "&#9744;"
                out.append(f'<span class="box">{box}</span> ')
                body = body[task.end() :]
            out.append(str(inline(body)))
            continue
        if lists and line.startswith(" "):  # a continuation of the open item
            out.append(" " + str(inline(stripped)))
            continue
        end_lists()
        if stripped.startswith(">"):
            end_paragraph()
            out.append(f"<blockquote>{inline(stripped.lstrip('>').strip())}</blockquote>\n")
            continue
        paragraph.append(str(inline(stripped)))
    if fence is not None:
        out.append(f"<pre>{escape(chr(10).join(fence))}</pre>\n")
    end_paragraph()
    end_lists()
    # Consecutive quote lines read as one quote.
    html = "".join(out).replace("</blockquote>\n<blockquote>", " ")
    return Markup(html)
