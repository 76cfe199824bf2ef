"""`recorder lint`: hold a postmortem to docs/postmortem-standard.md and say precisely
what is missing.

Real postmortems come as Markdown, HTML or plain text with `o` bullets, with headings
worded in many ways, so the document is read by meaning:

1.-2. `recorder.postmortem.document` reads it: HTML into Markdown-like lines, headings
   in any form mapped to the standard's four sections by their words.
3. This module holds the rules: each section is checked for the facts the standard asks
   for. The rules, so a writer can predict the verdict:

   Issue summary: at least two times (start and end), each with a time zone written
   next to it (`20:00 EAT`, `14:30 (UTC)`, `10:45 AM PST`, `+03:00`, `Africa/Nairobi`),
   or in a range whose end carries one (`20:00 to 20:45 EAT`), or after a statement
   such as "all times in EAT"; a date (`2023-10-20`, `Oct 20, 2023`, `20/10/2023`); a
   percentage (`30%`, `30 percent`) or a share in numbers (`4,812 of 10,025 clients`);
   words for who was hit (users, customers, requests...) and what they experienced
   (errors, 5xx, timeouts, slow, could not...); a root cause (caused, because, due to,
   root cause...).

   Timeline: entries are bullets (`-`, `*`, `+`, `•`, `o`, numbered), table rows, or
   lines that begin with a time; indented sub-bullets belong to their parent. Every
   entry holds a time; entries are in order (a time earlier by more than 12 hours is
   the next day); the entries together mention detection, how it was detected, actions,
   a misleading path, escalation and resolution (word lists in `_COVERAGE`).

   Root cause and resolution: each is explained in at least MIN_EXPLANATION_WORDS
   words. The two are told apart by their headings or labels ("Root cause", "Resolution",
   "Fix:"); an undivided text turns to the fix at its first sentence that says more
   about fixing (resolved, fixed, rolled back, we restarted...) than about causing
   (root cause, because, due to...).

   Corrective and preventative measures: broad improvements (prose, bullets under an
   "Improvements" label, or items too general to be tasks) and at least one specific
   task. A task is a bullet of at least three words with an action word (add, patch,
   monitor, alert...) that names a concrete object: a host (`web-01`), a path or file
   (`/etc/nginx/...`, `nginx.conf`, `sites-enabled`), a backticked command, a URL, an
   nginx directive (`proxy_next_upstream`), a tool (`curl`, `systemctl`, Prometheus,
   the CI pipeline), a concrete mechanism (symlinks, health checks, canary, 5xx rate),
   or a number with a unit (`5%`, `2 minutes`). "Improve monitoring", "Be more careful"
   and "Fix nginx" name nothing concrete and do not count. Under a "Tasks" label every
   item must be such a task: a vague one there is a gap of its own (elsewhere it counts
   as a broad improvement).

4. Any `[[FILL IN` marker left by `recorder draft` is a gap in the section holding it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# Re-exported: `recorder.postmortem` has always offered them.
from recorder.fillin import PLACEHOLDER_MARK as PLACEHOLDER_MARK
from recorder.fillin import fill_in as fill_in
from recorder.postmortem.document import DOCUMENT as DOCUMENT
from recorder.postmortem.document import MAX_BYTES as MAX_BYTES
from recorder.postmortem.document import MAX_LINES as MAX_LINES
from recorder.postmortem.document import (
    MEASURES,
    ROOT,
    SUMMARY,
    TIMELINE,
    Section,
    decode,
    is_binary,
    read_document,
)
from recorder.postmortem.document import SECTIONS as SECTIONS

MIN_EXPLANATION_WORDS = 20

_HEADING_HINT = {
    SUMMARY: '"Issue summary" or "Summary"',
    TIMELINE: '"Timeline" or "Time line"',
    ROOT: '"Root cause and resolution", or "Root cause" and "Resolution"',
    MEASURES: '"Corrective and preventative measures" or "Action items"',
}


@dataclass(frozen=True)
class Gap:
    """One thing the document lacks: `str()` is `FILE: Section: what is missing`."""

    section: str
    message: str
    file: str = "<text>"

    def __str__(self) -> str:
        return f"{self.file}: {self.section}: {self.message}"

    def to_json(self) -> dict[str, str]:
        return {"file": self.file, "section": self.section, "message": self.message}


def to_json(gaps: Iterable[Gap]) -> list[dict[str, str]]:
    return [gap.to_json() for gap in gaps]


# ---- vocabulary ----------------------------------------------------------------------
# Word patterns are lower case and run on lowered text: re.IGNORECASE makes these large
# alternations about four times slower, which shows on a large document.

_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_DATE = re.compile(
    r"\b(?P<iso>(?P<y>\d{4})-(?P<mo>\d{1,2})-(?P<d>\d{1,2}))(?=\b|[Tt])"
    r"|\b(?P<sa>\d{1,2})/(?P<sb>\d{1,2})/(?P<sy>\d{2,4})\b"
    rf"|\b(?P<mon1>{_MONTH})\.?\s+(?P<d1>\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(?P<y1>\d{{4}})\b)?"
    rf"|\b(?P<d2>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<mon2>{_MONTH})\b\.?"
    r"(?:,?\s+(?P<y2>\d{4})\b)?",
)
_TIME = re.compile(
    r"(?<![\d:])(?P<h>[01]?\d|2[0-3]):(?P<m>[0-5]\d)(?P<s>:[0-5]\d(?:\.\d+)?)?"
    r"(?:\s?(?P<ampm>[AaPp]\.?[Mm]\.?)(?![A-Za-z]))?(?!\d|:\d)"
    r"|(?<![\d:.])\b(?P<h2>1[0-2]|0?[1-9])\s?(?P<ampm2>[AaPp]\.?[Mm]\.?)(?![A-Za-z])"
)
_ABBREVIATIONS = (
    "UTC|GMT|EAT|CAT|WAT|SAST|CET|CEST|EET|EEST|WET|WEST|BST|IST|PST|PDT|PT|MST|MDT|MT|CST"
    "|CDT|CT|EST|EDT|ET|AKST|AKDT|HST|JST|KST|AEST|AEDT|ACST|ACDT|AWST|NZST|NZDT|SGT|HKT"
    "|MSK|BRT|ART|PHT|WIB|ICT|PKT|GST|AST|ADT|NST|NDT"
)
_ZONE_NAME = (
    r"(?:(?:UTC|GMT|utc|gmt)\s?[+\-−±]\s?\d{1,2}(?::?\d{2})?"
    rf"|(?:{_ABBREVIATIONS}|utc|gmt)\b"
    r"|[A-Z][a-z]+(?:/[A-Z][A-Za-z_]+)+"
    r"|(?:[A-Z][a-z]+\s){1,3}(?:Standard\s|Daylight\s|Summer\s)?Time\b)"
)
# Right after a time: a zone name (maybe in parentheses), `Z`, or an ISO offset.
_ZONE_AFTER = re.compile(
    rf"\s?\(?\s?{_ZONE_NAME}|(?P<z>Z)\b|\s?(?P<off>[+\-−](?:0\d|1[0-4]):?[0-5]\d)\b"
)
# "All times are in EAT": only the lead-in ignores case; zone names must keep theirs
# ("ET" is a zone, "et" is not).
_ALL_TIMES_IN = re.compile(
    r"(?i:\btimes?\b\s*(?:(?:are|is|shown|given|listed|written|in|below|above)\s+){0,3}"
    rf"(?:the\s+)?)\(?{_ZONE_NAME}"
)
_RANGE_JOIN = re.compile(
    r"\s*(?:-|–|—|to|until|till|through|and)\s*(?:on\s+)?"
    rf"(?:(?:{_DATE.pattern})[\s,]*(?:at\s+)?)?$",
    re.IGNORECASE,
)
_PERCENT = re.compile(
    r"\d+(?:[.,]\d+)?\s*(?:%|percent\b|per\s+cent\b|pct\b)"
    r"|\b\d[\d,]*\s+(?:out\s+)?of\s+(?:the\s+)?(?:about\s+)?\d[\d,]*\s+"
    r"(?:users|clients|customers|requests|visitors|sessions)\b",
)
_WHO = re.compile(
    r"\b(?:users?|customers?|clients?|visitors?|requests?|people|shoppers|buyers|"
    r"subscribers|traffic|readers)\b",
)
_EXPERIENCED = re.compile(
    r"\b(?:errors?|5xx|50[0-4]|404|fail\w*|time[ds]?[- ]?out|timeouts?|slow\w*|latenc\w*|"
    r"could ?n[o']t|can ?n[o']t|unable|unavailable|unreachable|inaccessible|down|refused|"
    r"blank|outage|degraded|broken|lost|not (?:load|reach|access|log))\b",
)
_CAUSE_WORDS = re.compile(
    r"\b(?:root[- ]?cause|caus(?:e|ed|es|ing)|because|due to|result(?:ed)? (?:of|from)|"
    r"triggered by|stemmed from|(?:was|were) (?:removed|deleted|missing|misconfigured|broken))\b",
)

# What the timeline's entries must mention, all together: the gap's message and the words
# that count. Escalation, fourth in the story, is judged per entry by _escalated().
_COVERAGE: list[tuple[str, re.Pattern[str]]] = [
    (
        "no entry says when the issue was detected",
        re.compile(
            r"\b(?:detect\w*|notic\w*|alert\w*|alarm\w*|report\w*|spotted|discover\w*|"
            r"became aware|aware of|flagged|fired|triggered|paged|observed|identified|"
            r"first (?:signs?|reports?|errors?|alerts?)|complain\w*|"
            r"incident (?:was )?(?:opened|declared|created)|"
            r"(?:opened|declared|created) (?:an|the) incident)\b",
        ),
    ),
    (
        "no entry says how it was detected (monitoring alert, an engineer noticed, "
        "a customer complained)",
        re.compile(
            r"\b(?:monitor\w*|alert\w*|alarm\w*|pag(?:er|ed|ing)\w*|pagerduty|opsgenie|"
            r"probe\w*|health[- ]?checks?|uptime\w*|synthetic|dashboards?|grafana|"
            r"prometheus|alertmanager|datadog|nagios|zabbix|pingdom|sentry|recorder|"
            r"customers?|users? report\w*|reported by|complain\w*|support (?:ticket|team|desk)|"
            r"tickets?|tweets?|twitter|noticed|spotted|on-?call|automated)\b",
        ),
    ),
    (
        "no entry describes the actions taken (what was investigated, what the team "
        "assumed the cause was)",
        re.compile(
            r"\b(?:investigat\w*|check\w*|inspect\w*|examin\w*|look(?:ed|ing)? (?:at|into)|"
            r"review\w*|restart\w*|reload\w*|ran|run(?:ning)?|tested|testing|debug\w*|"
            r"diagnos\w*|analy[sz]\w*|traced|grep\w*|tail\w*|verif\w*|confirm\w*|assum\w*|"
            r"suspect\w*|quer(?:y|ied)|searched|compared|curl\w*|logged in|read)\b",
        ),
    ),
    (
        "no misleading investigation or debugging path (what was suspected or assumed "
        "and turned out wrong)",
        re.compile(
            r"\b(?:assum\w*|suspect\w*|thought|believ\w*|mislead\w*|misled|red herring|"
            r"wrong(?:ly)?|mistak\w*|turned out|false (?:lead|trail)|dead end|blam\w*|"
            r"did ?n[o']t (?:help|fix|change|resolve|work)|(?:had|made|with) no "
            r"(?:effect|difference)|no (?:improvement|change)|"
            r"not (?:the (?:cause|issue|problem|culprit)|related)|unrelated|incorrect\w*|"
            r"misdiagnos\w*)\b",
        ),
    ),
    (
        "no entry says how the incident was resolved",
        re.compile(
            r"\b(?:resolv\w*|fix\w*|restor\w*|roll(?:ed|ing)? ?back|rollback|revert\w*|"
            r"recover\w*|mitigat\w*|back to normal|back online|(?:was|is|came) back|"
            r"healthy again|returned to normal|normal again|re-?creat\w*|re-?enabl\w*|"
            r"re-?link\w*|all clear)\b",
        ),
    ),
]

_NO_ESCALATION = "no escalation (to which team or people the incident was escalated)"
_ESCALATION = re.compile(
    r"\b(?:escalat\w*|looped in|pulled in|called in|brought in|handed (?:over|off)|"
    r"hand-?off|incident commander|reached out|contacted|woke|joined|informed|"
    r"(?:to|with) (?:the )?[\w-]+(?: [\w-]+)? team)\b"
)
_PAGED = re.compile(r"\b(?:paged|paging|notif(?:ied|y|ying))\b")
_AUTOMATIC = re.compile(r"\b(?:alert\w*|alarm\w*|monitor\w*|probe\w*|automat\w*)\b")


def _escalated(entry: str) -> bool:
    """Whether a (lowered) timeline entry says someone else was brought in. "An alert
    paged the on-call engineer" is detection; "paged the database team" is escalation."""
    if _ESCALATION.search(entry):
        return True
    return bool(_PAGED.search(entry)) and not _AUTOMATIC.search(entry)


# Where an undivided "root cause and resolution" text turns from cause to fix: the first
# sentence that says more about fixing than about causing.
_FIX_WORDS = re.compile(
    r"\b(?:resolved|fixed|to resolve|to fix|the fix|roll(?:ed|ing)? back|rollback|restored|"
    r"mitigated|recovered|re-?creat(?:ed|ing)|re-?enabled|re-?linked|was resolved|"
    # The responders as the subject of a remedy: "we restarted", "the engineer removed".
    r"(?:we|i|they|the (?:[\w-]+ )?(?:engineers?|team|responders?|operators?))\s+"
    r"(?:then\s+|quickly\s+|manually\s+|first\s+)?(?:ran|started|restarted|reloaded|removed|"
    r"replaced|added|deployed|killed|linked|took|moved|changed|corrected|recreated|applied|"
    r"reverted|enabled)|by (?:restarting|reloading|recreating|removing|rolling|reverting|"
    r"starting|linking|adding|replacing))\b",
)
_CAUSE_WORDS_STRONG = re.compile(
    r"\b(?:root cause|caus(?:ed|es|ing)|because|due to|the reason|led to|resulted in)\b",
)
_ROOT_LABEL = re.compile(
    r"^\W{0,3}(?P<label>root[- ]?causes?|causes?|resolution|recovery|mitigation|fix(?:es)?|"
    r"how (?:it was|we) (?:fixed|resolved)(?: it)?)\W{0,3}\s*[:\-–—]\s*",
    re.IGNORECASE,
)

_ACTION_WORDS = frozenset(
    """add adding create write patch fix set configure enable disable install remove delete
    deploy automate automation document update upgrade migrate replace restore run alert
    alerting alerts monitor monitoring page test tests testing validate validation check
    checks require block limit increase decrease raise lower review audit schedule
    implement introduce roll move pin tune put make use switch split scale provision rename
    adopt extend build lint verify enforce ensure track log record rotate drop expose publish
    define instrument gate reduce allow deny restrict protect cache retry separate isolate
    correct move rewrite refactor fail abort reject send notify expire renew""".split()
)
_CONCRETE = re.compile(
    r"`[^`]+`"
    r"|(?:^|[\s(\"'])~?\.{0,2}/[\w.\-*]+(?:/[\w.\-*{}]+)+"
    r"|\b[\w\-]+\.(?:conf|ya?ml|json|sh|py|cfg|ini|toml|service|timer|log|j2|tmpl|tf)\b"
    r"|\bsites-(?:enabled|available)\b|\bconf\.d\b"
    r"|\b[a-z][a-z0-9]*(?:-[a-z0-9]+)*-\d+\b"
    r"|\b(?:\d{1,3}\.){3}\d{1,3}\b"
    r"|https?://\S+"
    r"|\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|net|org|io|dev|local|internal|lan|example)\b"
    r"|\b(?:listen|server_name|proxy_\w+|upstream|max_fails|fail_timeout|worker_\w+|"
    r"keepalive\w*|limit_req\w*|limit_conn\w*|client_max_body_size|ssl_\w+|error_log|"
    r"access_log|log_format|try_files|health_check|default_server)\b"
    r"|\bnginx -[tTs]\b|\b(?:curl|wget|ln -s|systemctl|journalctl|ansible|terraform|puppet|"
    r"chef|saltstack|prometheus|alertmanager|grafana|blackbox(?:_exporter)?|pagerduty|"
    r"opsgenie|jenkins|github actions|gitlab(?:[- ]ci)?|ci(?:/cd)?|pipeline|cron(?:job|tab)?|"
    r"logrotate|goaccess|haproxy|keepalived|docker|kubernetes|k8s|helm|pre-commit|recorder|"
    r"statuspage|sentry|datadog|runbooks?|playbooks?)\b"
    r"|\b(?:symlinks?|sym-links?|post-deploy|pre-deploy|smoke tests?|canary|rollbacks?|"
    r"roll back|health ?checks?|alert rules?|5xx|4xx|error rates?|p9\d|latency|"
    r"rate limit\w*|load tests?|backends?|upstreams?|certificates?|tls|dns|firewall|"
    r"iptables|nftables|security groups?|file descriptors?|disk space|staging|"
    r"(?:config(?:uration)?|syntax) (?:test|validation|check)s?|ports? \d+)\b"
    r"|\b\d+(?:\.\d+)?\s*(?:%|ms|s|secs?|seconds?|mins?|minutes?|hours?|h|rps|r/s|req/s|"
    r"requests|connections|gb|mb|x)(?!\w)",
)
_WORD = re.compile(r"[A-Za-z0-9][\w'./:\-]*")
_BROAD_LABEL = re.compile(
    r"improv|broad|general|prevent|lesson|what (?:can|could|should)|long[- ]term|strateg",
)
_PLACEHOLDER = re.compile(re.escape(PLACEHOLDER_MARK) + r"[^\]\n]{0,120}(?:\]\])?", re.IGNORECASE)
_TASK_LABEL = re.compile(r"\btasks?\b|\baction items?\b|\bto-?dos?\b|\bfollow[- ]ups?\b")


_LEADS_WITH_TIME = re.compile(
    rf"^\W{{0,3}}(?:(?:{_DATE.pattern})[\sT,]*(?:at\s+)?)?(?:{_TIME.pattern})", re.IGNORECASE
)


# ---- times -----------------------------------------------------------------------------


@dataclass
class _Time:
    start: int
    end: int
    minutes: int
    zoned: bool


def _times(text: str) -> list[_Time]:
    found: list[_Time] = []
    consumed = -1
    for m in _TIME.finditer(text):
        if m.start() < consumed:
            continue  # the "03:00" of a "+03:00" offset already read as a zone
        if m.group("h") is not None:
            hour, minute, ampm = int(m.group("h")), int(m.group("m")), m.group("ampm")
        else:
            hour, minute, ampm = int(m.group("h2")), 0, m.group("ampm2")
        if ampm:
            hour = hour % 12 + (12 if ampm.lower().startswith("p") else 0)
        end = m.end()
        zone = _ZONE_AFTER.match(text, end)
        zoned = False
        if zone:
            offset = zone.group("off")
            # `10:00-11:00` is a range, not an offset; an offset follows seconds or a `+`.
            if not offset or offset[0] == "+" or m.group("s"):
                zoned = True
                end = consumed = zone.end()
        found.append(_Time(m.start(), end, hour * 60 + minute, zoned))
    # "from 20:00 to 20:45 EAT", "10:45 AM PST to 11:30 AM": both ends of a range share
    # the zone written on one of them.
    pairs = list(zip(found[:-1], found[1:], strict=True))
    for a, b in [*reversed(pairs), *pairs]:
        if a.zoned != b.zoned and _RANGE_JOIN.match(text[a.end : b.start]):
            a.zoned = b.zoned = True
    return found


def _date_key(m: re.Match[str], year: int) -> int | None:
    months = "jan feb mar apr may jun jul aug sep oct nov dec".split()
    try:
        if m.group("iso"):
            return int(m.group("y")) * 400 + int(m.group("mo")) * 32 + int(m.group("d"))
        if m.group("sa"):
            a, b, y = int(m.group("sa")), int(m.group("sb")), int(m.group("sy"))
            month, day = (a, b) if a <= 12 else (b, a)
            return (y if y > 99 else 2000 + y) * 400 + month * 32 + day
        name = (m.group("mon1") or m.group("mon2")).lower()[:3]
        day = int(m.group("d1") or m.group("d2"))
        y = int(m.group("y1") or m.group("y2") or year)
        return y * 400 + (months.index(name) + 1) * 32 + day
    except (TypeError, ValueError):
        return None


# ---- checks ----------------------------------------------------------------------------


def _words(text: str) -> int:
    return len(_WORD.findall(text))


def _quote(text: str, limit: int = 60) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return '"' + (text if len(text) <= limit else text[: limit - 1].rstrip() + "…") + '"'


def _without_placeholders(text: str) -> str:
    return _PLACEHOLDER.sub(" ", text)


def _check_summary(section: Section, preamble: str) -> list[str]:
    text = _without_placeholders(section.text())
    lower = text.lower()
    gaps: list[str] = []
    times = _times(text)
    zone_stated = bool(_ALL_TIMES_IN.search(text) or _ALL_TIMES_IN.search(preamble))
    if len(times) < 2:
        gaps.append('duration: no start and end time (e.g. "2023-10-20 20:00 EAT to 20:45 EAT")')
    elif not zone_stated and sum(t.zoned for t in times) < 2:
        gaps.append(
            'duration: the start and end times have no time zone (e.g. "20:00 EAT", "14:30 (UTC)")'
        )
    if times and not _DATE.search(lower):
        gaps.append('duration: the start and end times have no date (e.g. "2023-10-20")')
    if not _PERCENT.search(lower):
        gaps.append('impact: no percentage of users affected (e.g. "30% of users")')
    if not (_WHO.search(lower) and _EXPERIENCED.search(lower)):
        gaps.append(
            "impact: does not say what users experienced (errors, timeouts, could not log in)"
        )
    if not _CAUSE_WORDS.search(lower):
        gaps.append("no root cause (a sentence or two on what caused the outage)")
    return gaps


@dataclass
class _Entry:
    text: str
    indent: int
    time_left: bool = False  # its time is a placeholder, reported as such


_PLACEHOLDER_FIRST = re.compile(r"^\W{0,3}" + re.escape(PLACEHOLDER_MARK), re.IGNORECASE)


def _timeline_entries(section: Section) -> list[_Entry]:
    entries: list[_Entry] = []
    attached = False  # whether the previous line belongs to the last entry
    for line, _ in section.lines:
        text = _without_placeholders(line.text).strip(" -–—:|")
        if not text:
            attached = False  # a placeholder alone: reported as such, not as an entry
            continue
        time_left = bool(_PLACEHOLDER_FIRST.match(line.text))
        if line.kind in ("bullet", "row"):
            if (
                entries
                and line.kind == "bullet"
                and line.level > entries[-1].indent + 1
                and not _LEADS_WITH_TIME.match(text)
            ):
                entries[-1].text += " " + text  # a sub-bullet without a time explains its parent
            else:
                indent = line.level if line.kind == "bullet" else 0
                entries.append(_Entry(text, indent, time_left))
            attached = True
        elif line.kind == "text" and _LEADS_WITH_TIME.match(text):
            entries.append(_Entry(text, line.level))
            attached = True
        elif line.kind == "text" and entries and (attached or line.level > entries[-1].indent):
            entries[-1].text += " " + text  # a wrapped entry
        else:
            attached = False
    return entries


def _check_timeline(section: Section) -> list[str]:
    entries = _timeline_entries(section)
    if not entries:
        return ['no bullet points with times (write "- 20:05 EAT - what happened")']
    gaps: list[str] = []
    timed = [(entry, _times(entry.text)) for entry in entries]
    untimed = [entry for entry, times in timed if not times and not entry.time_left]
    if untimed:
        n = len(untimed)
        what = "entry has" if n == 1 else "entries have"
        gaps.append(f"{n} {what} no time: {_quote(untimed[0].text)}")
    previous: tuple[int, _Entry] | None = None
    year, date, day_offset = 0, 0, 0
    for entry, times in timed:
        if not times:
            continue
        dm = _DATE.search(entry.text.lower())
        key = _date_key(dm, year) if dm else None
        if key is not None:
            date, day_offset, year = key, 0, key // 400
        at = (date + day_offset) * 1440 + times[0].minutes
        if previous and at < previous[0]:
            if key is None and previous[0] - at > 12 * 60:
                day_offset += 1  # past midnight
                at += 1440
            else:
                gaps.append(
                    f"entries out of order: {_quote(entry.text, 40)} comes after "
                    f"{_quote(previous[1].text, 40)}"
                )
                break
        previous = (at, entry)
    joined = "\n".join(e.text for e in entries).lower()
    covered = [(message, bool(pattern.search(joined))) for message, pattern in _COVERAGE]
    # Escalation is judged entry by entry (see _escalated), in its place in the story.
    escalated = any(_escalated(e.text.lower()) for e in entries)
    covered.insert(4, (_NO_ESCALATION, escalated))
    gaps.extend(message for message, ok in covered if not ok)
    return gaps


def _split_root(section: Section) -> tuple[str, str]:
    """The section's text about the cause and about the fix: by its headings and labels
    where it has them; an undivided text turns to the fix at the first sentence that says
    more about fixing than about causing (people tell the cause first)."""
    # Paragraphs first: a sentence wrapped over lines must be judged whole.
    chunks: list[tuple[str, str | None]] = []
    label: str | None = None
    joinable = False
    for line, part in section.lines:
        if line.kind in ("blank", "rule", "heading"):
            joinable = False
            continue
        text = _without_placeholders(line.text)
        m = _ROOT_LABEL.match(text)
        if m:
            label = "cause" if "cause" in m.group("label").lower() else "resolution"
            text = text[m.end() :]
            joinable = False
        where = label or part
        if joinable and line.kind == "text" and chunks and chunks[-1][1] == where:
            chunks[-1] = (chunks[-1][0] + " " + text, where)
        else:
            chunks.append((text, where))
        joinable = line.kind == "text"
    cause: list[str] = []
    fix: list[str] = []
    fixing = False
    for text, where in chunks:
        if where:
            (cause if where == "cause" else fix).append(text)
            continue
        for sentence in re.split(r"(?<=[.!?])\s+", text):
            if not fixing:
                lower = sentence.lower()
                hits = len(_FIX_WORDS.findall(lower))
                fixing = hits > len(_CAUSE_WORDS_STRONG.findall(lower))
            (fix if fixing else cause).append(sentence)
    return " ".join(cause), " ".join(fix)


def _check_root(section: Section) -> list[str]:
    cause, fix = _split_root(section)
    gaps: list[str] = []
    for what, text, none in (
        ("root cause", cause, "no explanation of what caused the issue"),
        ("resolution", fix, "no explanation of how the issue was fixed"),
    ):
        n = _words(text)
        if n == 0:
            gaps.append(none)
        elif n < MIN_EXPLANATION_WORDS:
            gaps.append(
                f"the {what} is not explained in detail ({n} words; at least "
                f"{MIN_EXPLANATION_WORDS})"
            )
    return gaps


def is_specific_task(text: str) -> bool:
    """Whether a corrective item is specific enough to be a TODO (rule in the module doc)."""
    text = text[:1000]  # what a task is shows in its first words
    words = [w.lower().strip(".,;:") for w in _WORD.findall(text)]
    if len(words) < 3:
        return False
    return any(w in _ACTION_WORDS for w in words) and bool(_CONCRETE.search(text.lower()))


def _check_measures(section: Section) -> list[str]:
    items: list[tuple[str, bool]] = []  # (text, under a "broad improvements" label)
    listed: list[int] = []  # the items under a "Tasks" label: each must be a task
    prose = 0
    broad_label = task_label = False
    joinable = False  # the last task line ended mid-sentence: a lower-case line continues it
    for line, _ in section.lines:
        text = _without_placeholders(line.text).strip()
        if line.kind == "heading" or (
            line.kind == "text" and text.endswith(":") and _words(text) <= 6
        ):
            broad_label = bool(_BROAD_LABEL.search(text.lower()))
            task_label = bool(_TASK_LABEL.search(text.lower()))
            joinable = False
        elif line.kind in ("bullet", "row") and text:
            items.append((text, broad_label))
            if task_label:
                listed.append(len(items) - 1)
            joinable = False
        elif line.kind == "text" and task_label and text:
            # Under a "Tasks:" label each unmarked line is a task, as each unmarked line
            # led by a time is a timeline entry; a wrapped one continues its task.
            if joinable and items and text[:1].islower():
                items[-1] = (f"{items[-1][0]} {text}", items[-1][1])
            else:
                items.append((text, False))
                listed.append(len(items) - 1)
            joinable = not text.endswith((".", "!", "?", ";"))
        elif line.kind == "text":
            prose += _words(text)
    verdicts = [(t, is_specific_task(t)) for t, _ in items]
    specific = [t for t, ok in verdicts if ok]
    vague = [t for t, ok in verdicts if not ok]
    gaps: list[str] = []
    if prose < 8 and not vague and not any(under for _, under in items):
        gaps.append("no broad improvements (what can be improved or fixed, broadly)")
    if not items:
        gaps.append(
            'no list of tasks (bullet points such as "add monitoring of sites-enabled symlinks")'
        )
    elif not specific:
        shown = ", ".join(_quote(t, 40) for t in vague[:5])
        gaps.append(f"no specific task; too vague to act on: {shown}")
    else:
        # A vague item among prose is a broad improvement; listed as a task it is a
        # promise nobody can act on or check ("improve monitoring"), so each is a gap.
        for n in listed:
            if not verdicts[n][1]:
                gaps.append(
                    f"task too vague to act on: {_quote(verdicts[n][0], 60)} (name an "
                    "action and what it acts on: a host, file, command, tool or number)"
                )
    return gaps


_CHECKS = {
    TIMELINE: _check_timeline,
    ROOT: _check_root,
    MEASURES: _check_measures,
}


def _placeholders(text: str) -> list[str]:
    seen: list[str] = []
    for m in _PLACEHOLDER.finditer(text):
        if m.group(0) not in seen:
            seen.append(m.group(0))
    return [f"placeholder left: {p}" for p in seen]


def _lint(text: str, name: str, truncated: bool) -> list[Gap]:
    if is_binary(text):
        return [Gap(DOCUMENT, "not a text document", name)]
    if not text.strip():
        return [Gap(DOCUMENT, "empty document", name)]
    document = read_document(text, truncated)
    gaps: list[Gap] = []
    if document.truncated:
        limits = f"{MAX_BYTES // (1024 * 1024)} MB or {MAX_LINES:,} lines"
        gaps.append(Gap(DOCUMENT, f"longer than {limits}; only the start was checked", name))
    sections, preamble = document.sections, document.other.text()
    gaps.extend(Gap(DOCUMENT, p, name) for p in _placeholders(preamble))
    for title in SECTIONS:
        section = sections.get(title)
        if section is None:
            gaps.append(
                Gap(title, f"section is missing (no heading such as {_HEADING_HINT[title]})", name)
            )
            continue
        if not section.content():
            gaps.append(Gap(title, "section is empty", name))
            continue
        found = _check_summary(section, preamble) if title == SUMMARY else _CHECKS[title](section)
        found += _placeholders(section.text())
        gaps.extend(Gap(title, message, name) for message in found)
    return gaps


def lint_text(text: str, name: str = "<text>") -> list[Gap]:
    """Every gap between `text` and the postmortem standard, in section order; [] when complete."""
    truncated = len(text) > MAX_BYTES
    return _lint(text[:MAX_BYTES] if truncated else text, name, truncated)


def lint_bytes(data: bytes, name: str = "<bytes>") -> list[Gap]:
    """Lint raw file contents of any encoding (UTF-8, UTF-16 with BOM, Windows-1252)."""
    truncated = len(data) > MAX_BYTES
    data = data[:MAX_BYTES]
    if b"\x00" in data[:8192] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return [Gap(DOCUMENT, "not a text document", name)]
    return _lint(decode(data), name, truncated)


def lint_file(path: str | Path) -> list[Gap]:
    """Lint one file; a file that cannot be read is a gap, never an exception."""
    name = str(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except IsADirectoryError:
        return [Gap(DOCUMENT, "cannot read: is a directory", name)]
    except OSError as exc:
        return [Gap(DOCUMENT, f"cannot read: {exc.strerror or exc}", name)]
    return lint_bytes(data, name)
