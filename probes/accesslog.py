"""The access-log reader: nginx log lines to client, time and status class, fast.

Used by the error_rate probe (tailing, windowed) and by `recorder logscan` (offline), so
both count the same way. This is the recorder's hot path: a busy load balancer writes
thousands of lines a second and logscan reads gigabytes.

How it is fast. A log_format string is compiled into one regular expression for a line
that captures only the client, the time and the first digit of the status; everything
after the last field needed is skipped. Python's regular-expression engine pays a fixed
price per match and per loop, so the expression for a *block* of 64 consecutive lines
(`\\n LINE \\n LINE ...`) runs over a whole chunk with one `findall`: no Python code runs
per line. Each line slot is `(?>VALID rest-of-line | rest-of-line)`, so a malformed line
still fills its slot (with empty groups) and the slots stay aligned with the lines. The
1-character status digit costs no allocation (CPython caches 1-byte strings), and a
line's time is captured only when it differs from the first line of its block (a
backreference compares it in place; most lines of a block share a second). The counts come
from the joined digits with `bytes.count`, the client sets from `set.update`.

Why it is exact. The fast expression uses loops that stop at one character (`[^ ]*`),
which the engine runs far faster than classes that also stop at a newline (`[^ \\n]*`);
such a loop can run past the end of a malformed line into the next one. It can only do
so by consuming an extra newline, so a chunk whose slot count differs from its newline
count is read again with the strict expression (same expression, newline-safe classes).
When the counts agree no slot crossed a line, and then the two expressions are the same.

Counting. `recorder logscan` keeps only totals (classes, distinct clients, clients with a
5xx, first and last 5xx), so it counts through a tally (`new_tally`): the compiled one in
probes/_accesslog.c when the install could build it, which reads the same steps as the
strict expression (`_layout`) and keeps the clients in its own hash table, or `PyTally`,
built on `parse_chunk`. Both give the same totals on every input
(tests/test_accesslog_compiled.py). The error_rate probe reads far fewer lines (those of
the last second) and keeps per-second sets, so it uses `parse_chunk` directly.

The recorder's own requests. Its http probes say `User-Agent: recorder/VERSION`
(probes/http.py); a line whose $http_user_agent starts with `recorder/` (`OWN_AGENT`) is
well-formed but left out of the requests, classes and clients, and counted apart
(`Lines.own_times`, `self_requests`), so the recorder does not count itself as a user or
its failed probes as users' errors. For that the reading goes on past the last field it
needs, up to the start of the user agent; when the agent comes after those fields the way
to it is optional, so a line cut short there is still read (as not the recorder's). A
format without $http_user_agent cannot tell them apart: the recorder's requests then
count as a client's (the `combined` format has it, as does any format that logs it). Anyone
can send that User-Agent: it hides requests from these counts, not from nginx.

Escapes. nginx's default escaping writes a `"` inside a value as `\\x22`; escape=json and
Apache-style logs write `\\"`. With escape `default` or `json` (`ESCAPES`) a backslash in
a value that ends at a quote takes the byte after it, so `\\"` does not end the value;
with `none` a quote always does. A line without a `\\"` reads alike either way, so the
chunk is read with the plain patterns and only its lines that hold one are read again,
each alone, with the escape-aware one (`LogFormat.escaped`, `_reread_escaped`). The
compiled counter only looks back for backslashes at a quote it stops at.
Lines are bytes; clients stay bytes until they are reported.
"""

from __future__ import annotations

import calendar
import math
import operator
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from itertools import chain, compress, repeat
from typing import Protocol, TypedDict

COMBINED = (
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
    '"$http_referer" "$http_user_agent"'
)
CLIENT_VARS = ("remote_addr", "realip_remote_addr", "http_x_real_ip", "http_x_forwarded_for")
TIME_VARS = {"time_local": rb"(.{26})", "time_iso8601": rb"(.{25})", "msec": rb"(\d++\.\d++)"}
# How long a request took, best first: $request_time is what the client waited (from the
# first byte read to the last byte sent); $upstream_response_time only the backends' part.
# A format with neither cannot tell slow responses from fast ones.
DURATION_VARS = ("request_time", "upstream_response_time")
BLOCK_LINES = 64
# A longer line is not something nginx wrote (its request and header buffers are far
# smaller): readers count it once as malformed and skip to its newline, so a file
# without newlines cannot make them hold it whole.
MAX_LINE = 4 << 20
CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
# nginx's `escape=` of log_format. `default` and `json` are read alike: a backslash in a
# quoted value takes the byte after it, so `\"` does not end the value (nginx's default
# writes `"` as `\x22` and `\` as `\x5C`, so its logs hold no `\"`; json and Apache-style
# logs write `\"`). `none`: values are written raw, a backslash is only a backslash.
ESCAPES = ("default", "json", "none")
# bytes.translate table: b"5" -> 1, every other byte -> 0 (a mask for itertools.compress).
MASK_5XX = bytes(1 if i == ord("5") else 0 for i in range(256))
_MONTHS = {
    m.encode(): i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
_VAR = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")
# How the recorder's own requests start their User-Agent (probes/http.py sends
# `recorder/VERSION`): the reader leaves them out of every count but `self_requests`.
OWN_AGENT = b"recorder/"
# The last second datetime can show (9999-12-31T23:59:59Z): a later $msec is no time.
MAX_EPOCH = 253402300799

# A step of a format's layout for the compiled counter (probes/_accesslog.c): (kind,
# capture, width, text). The kinds are numbered as in that file.
Step = tuple[int, int, int, bytes]
_LIT, _SKIP, _CLIENT, _FIXED, _MSEC, _STATUS, _OPTIONAL, _AGENT = range(8)
_FIXED_WIDTH = {"time_local": 26, "time_iso8601": 25}


class LogFormatError(ValueError):
    """The log_format string cannot be read (names what is wrong)."""


@dataclass(frozen=True)
class LogFormat:
    """A compiled log_format. Groups of one line slot: client, time, status digit, in
    the order `index` gives."""

    text: str
    time_var: str
    index: tuple[int, int, int]  # positions of client, time, status in a slot's groups
    block: re.Pattern[bytes]
    one: re.Pattern[bytes]
    strict: re.Pattern[bytes]
    # The reading of `strict` as steps for the compiled counter; None for a format it
    # cannot take (a literal with a newline), which is then counted in Python.
    layout: tuple[Step, ...] | None = None
    groups: int = 3  # groups per line slot
    # The position among them of the mark of the recorder's own requests (`OWN_AGENT`);
    # None for a format without $http_user_agent.
    own: int | None = None
    escape: str = "default"  # how the log was written (nginx's `escape=`): ESCAPES
    # `strict` where a backslash takes the byte after it, for the lines that hold `\"`
    # (None with escape `none`, or when no value stops at a quote).
    escaped: re.Pattern[bytes] | None = None
    # The position among a slot's groups of the request's duration (`DURATION_VARS`);
    # None for a format that logs none, or whose duration cannot be read.
    duration: int | None = None
    duration_var: str | None = None

    @property
    def name(self) -> str:
        return "combined" if self.text == COMBINED else self.text


def _variable_pattern(
    name: str, stop: bytes | None, strict: bool, capture: bool, escaped: bool = False
) -> bytes:
    """The expression for one variable: fixed shapes for time and status, otherwise a
    loop up to the first character of the literal text that follows it. `escaped`: a
    value that stops at `"` may hold `\\"` (a backslash takes the byte after it)."""
    if name in DURATION_VARS and capture:
        # Up to the literal after it (`0.002, 1.004` when two backends were tried), or to
        # the end of the line when it ends the format. nginx writes it: no escapes.
        stops = rb"\n" if stop is None else re.escape(stop) + (rb"\n" if strict else b"")
        return b"([^" + stops + b"]*+)"
    if escaped and stop == b'"' and name not in TIME_VARS and name != "status":
        unit = rb'(?:[^"\\' + (rb"\n" if strict else b"") + rb"]++|\\[^\n])"
        if name in CLIENT_VARS and capture:
            return b"(" + unit + b"++)"
        return unit + b"*+"
    if name in TIME_VARS:
        pattern = TIME_VARS[name]
    elif name == "status":
        pattern = rb"(\d)\d\d"
    elif stop is None:
        raise LogFormatError(
            f"${name} must be followed by literal text (it comes before a field the reader needs)"
        )
    else:
        loop = b"[^" + re.escape(stop) + (rb"\n" if strict else b"") + b"]"
        pattern = b"(" + loop + b"++)" if name in CLIENT_VARS and capture else loop + b"*+"
    if not capture and pattern.startswith(b"("):
        # Only the group that opens the pattern: a `(` further on is the escaped stop
        # byte inside a class (`[^\(]`), which must stay a `(`.
        pattern = b"(?:" + pattern[1:]
    return pattern


def compile_format(text: str | None = None, escape: str = "default") -> LogFormat:
    """Compile an nginx log_format string (None: combined), written with nginx's
    `escape=` (`ESCAPES`), into the reader's patterns."""
    if escape not in ESCAPES:
        raise LogFormatError(f"unknown log escape {escape!r}: use {', '.join(ESCAPES)}")
    return _compile(COMBINED if text is None else text, escape)


@lru_cache(maxsize=32)
def _compile(text: str, escape: str = "default") -> LogFormat:
    pieces: list[tuple[str, str]] = []  # ("lit", text) / ("var", name)
    pos = 0
    for m in _VAR.finditer(text):
        if m.start() > pos:
            pieces.append(("lit", text[pos : m.start()]))
        pieces.append(("var", m.group(1) or m.group(2)))
        pos = m.end()
    if pos < len(text):
        pieces.append(("lit", text[pos:]))
    names = [p[1] for p in pieces if p[0] == "var"]
    client = next((v for v in CLIENT_VARS if v in names), None)
    time_var = next((v for v in TIME_VARS if v in names), None)
    if client is None:
        raise LogFormatError("log_format has no client address ($remote_addr)")
    if time_var is None:
        raise LogFormatError("log_format has no time ($time_local, $time_iso8601 or $msec)")
    if "status" not in names:
        raise LogFormatError("log_format has no $status")
    # Only the first occurrence of each field is captured; the line is cut after the
    # last of the three (or after the start of the user agent, when it comes later).
    duration = next((v for v in DURATION_VARS if v in names), None)
    wanted = {client, time_var, "status"}
    last = max(i for i, p in enumerate(pieces) if p[0] == "var" and p[1] in wanted)
    plan = _plan(pieces, client, time_var, last, duration)

    def build(strict: bool, time_capture: str, escaped: bool = False) -> bytes:
        out: list[bytes] = []
        for kind, value, stop, field_name in plan:
            if kind == "lit":
                out.append(re.escape(value.encode()))
            elif kind == "optional":
                out.append(b"(?:")
            elif field_name == "own":
                # A look ahead: the value is read on by the loop after it (none when it
                # ends the reading: then `stop` is None).
                ahead = b"(?=(" + re.escape(OWN_AGENT[:1]) + b")" + re.escape(OWN_AGENT[1:]) + b")"
                out.append(b"(?:" + ahead + b"|)")
                if stop is not None:
                    out.append(_variable_pattern(value, stop, strict, False, escaped))
            else:
                pattern = _variable_pattern(value, stop, strict, field_name is not None, escaped)
                if field_name == "time":
                    inner = pattern[1:-1]
                    if time_capture == "first":
                        pattern = b"(?P<t0>" + inner + b")"
                    else:
                        # Most lines of a block share the first line's second: compare with
                        # it and capture (allocate) only a time that differs. A $msec has
                        # no fixed width: `1.9` must not match the start of `1.99` (with
                        # nothing literal after the time, the rest would be skipped unread).
                        same = b"(?P=t0)(?!\\d)" if value == "msec" else b"(?P=t0)"
                        pattern = b"(?:" + same + b"|(" + inner + b"))"
                out.append(pattern)
        if any(kind == "optional" for kind, *_ in plan):
            out.append(b")?+")  # possessive: nothing after it can fail
        return b"".join(out)

    def slot(strict: bool, time_capture: str, escaped: bool = False) -> bytes:
        # A malformed line takes the second branch: its slot is filled, with empty groups.
        return b"(?>" + build(strict, time_capture, escaped) + rb"[^\n]*+|[^\n]*+)"

    order = [name for kind, _, _, name in plan if kind == "var" and name is not None]
    # Escapes matter only to a value that stops at a quote, and only where `\"` occurs.
    quoted = any(kind == "var" and stop == b'"' for kind, _, stop, _ in plan)
    escaped = escape != "none" and quoted
    block = rb"\n" + slot(False, "first") + (rb"\n" + slot(False, "same")) * (BLOCK_LINES - 1)
    try:
        return LogFormat(
            text=text,
            time_var=time_var,
            index=(order.index("client"), order.index("time"), order.index("status")),
            block=re.compile(block),
            one=re.compile(rb"\n" + slot(False, "first")),
            strict=re.compile(rb"\n" + slot(True, "first")),
            layout=_layout(plan, escaped),
            groups=len(order),
            own=order.index("own") if "own" in order else None,
            escape=escape,
            escaped=re.compile(rb"\n" + slot(True, "first", True)) if escaped else None,
            duration=order.index("duration") if "duration" in order else None,
            duration_var=duration if "duration" in order else None,
        )
    except re.error as exc:  # pragma: no cover - every piece above is escaped or fixed
        raise LogFormatError(f"cannot compile log_format: {exc}") from None


# What the reader reads of a line, in order: ("lit", text, None, None); ("var", name,
# stop byte or None, captured field or None); ("optional", "", None, None), after which a
# line that does not match is still read, as not the recorder's own request.
PlanStep = tuple[str, str, bytes | None, str | None]


def _plan(
    pieces: list[tuple[str, str]],
    client: str,
    time_var: str,
    last: int,
    duration: str | None = None,
) -> list[PlanStep]:
    """The pieces the reader reads: up to the last of client, time and status and the
    first character after it, capturing the first occurrence of each; then, for a format
    with $http_user_agent, the start of that value, where the recorder's own requests
    say `recorder/` (see `OWN_AGENT`), and for one with a request's duration
    (`DURATION_VARS`), that value. What comes after the last needed field is optional:
    a line cut short there is read as before (not the recorder's, duration unknown)."""
    plan: list[PlanStep] = []
    captured: set[str] = set()
    agent = next((i for i, p in enumerate(pieces) if p == ("var", "http_user_agent")), None)
    took = next((i for i, p in enumerate(pieces) if duration and p == ("var", duration)), None)

    def stop_after(i: int) -> bytes | None:
        nxt = pieces[i + 1] if i + 1 < len(pieces) else None
        return nxt[1].encode()[:1] if nxt and nxt[0] == "lit" else None

    def field_of(i: int, value: str) -> str | None:
        if i == agent:
            return "own"
        if i == took:
            return "duration"
        return {client: "client", time_var: "time", "status": "status"}.get(value)

    for i, (kind, value) in enumerate(pieces[: last + 1]):
        if kind == "lit":
            plan.append(("lit", value, None, None))
            continue
        field_name = field_of(i, value)
        if field_name in ("own", "duration") and stop_after(i) is None:
            # as `_variable_pattern` says of any other value
            raise LogFormatError(
                f"${value} must be followed by literal text"
                " (it comes before a field the reader needs)"
            )
        if field_name in captured:
            field_name = None
        if field_name is not None:
            captured.add(field_name)
        plan.append(("var", value, stop_after(i), field_name))
    after = pieces[last + 1][1] if last + 1 < len(pieces) and pieces[last + 1][0] == "lit" else ""
    if after:
        # The character after the last field, so `2001` is not read as status 200.
        plan.append(("lit", after[:1], None, None))
    ends = [i for i in (agent, took) if i is not None and i > last]
    if not ends or "\n" in after[1:]:
        return plan
    end = max(ends)
    tail: list[PlanStep] = [("optional", "", None, None)]
    reached = 0  # the length of `tail` up to the last wanted field it reads
    if after[1:]:
        tail.append(("lit", after[1:], None, None))
    for i in range(last + 1 + bool(after), end + 1):
        kind, value = pieces[i]
        if kind == "lit" and "\n" in value:
            break  # the way on would cross lines
        if kind == "lit":
            tail.append(("lit", value, None, None))
        elif i in (agent, took) and (i == end or stop_after(i) is not None):
            # The user agent is looked at, not read, when the reading ends there.
            stop = None if i == end == agent else stop_after(i)
            tail.append(("var", value, stop, field_of(i, value)))
            reached = len(tail)
        elif stop_after(i) is None:
            break  # two values with nothing between them: what follows is not read
        else:
            tail.append(("var", value, stop_after(i), None))
    return plan + tail[:reached] if reached else plan


def _layout(plan: list[PlanStep], escaped: bool = False) -> tuple[Step, ...] | None:
    """The plan as steps for the compiled counter, which reads it as `build(strict=True)`
    of `_compile` does. None when a literal holds a newline: the counter reads one line
    at a time, while the pattern would look across lines."""
    steps: list[Step] = []
    for kind, value, stop, field_name in plan:
        if kind == "lit":
            if "\n" in value:
                return None
            steps.append((_LIT, 0, 0, value.encode()))
        elif kind == "optional":
            steps.append((_OPTIONAL, 0, 0, b""))
        elif field_name == "duration":
            # The counter keeps no durations: it only reads past one (as the pattern
            # does, without escapes), and one that ends the reading needs no step.
            if stop is not None:
                steps.append((_SKIP, 0, 0, stop))
        elif field_name == "own":
            steps.append((_AGENT, 0, 0, OWN_AGENT))
            if stop is not None:
                steps.append((_SKIP, 0, int(escaped and stop == b'"'), stop))
        elif value in _FIXED_WIDTH:
            steps.append((_FIXED, int(field_name is not None), _FIXED_WIDTH[value], b""))
        elif value == "msec":
            steps.append((_MSEC, int(field_name is not None), 0, b""))
        elif value == "status":
            steps.append((_STATUS, int(field_name is not None), 0, b""))
        else:  # `build` refused a variable without a literal after it
            assert stop is not None
            kind_of = _CLIENT if field_name == "client" else _SKIP
            # width 1: a backslash takes the byte after it (the value may hold `\"`)
            steps.append((kind_of, 0, int(escaped and stop == b'"'), stop))
    return tuple(steps)


@dataclass
class Lines:
    """The parsed lines of one chunk: aligned lists of the well-formed lines' fields.

    A line's time is `times[i]`, or, when that is empty, the time of the first line of
    its block (most lines share it: see `compile_format`), given per block in
    `block_starts` for the first 64 * len(block_starts) lines.
    """

    lines: int = 0  # every line, well-formed or not
    clients: list[bytes] = field(default_factory=list)
    times: list[bytes] = field(default_factory=list)
    digits: bytes = b""  # the status classes, one ASCII digit per well-formed line
    block_starts: list[bytes] = field(default_factory=list)
    _starts: list[bytes] | None = None  # block_starts spread over the lines, once needed
    # The times of the recorder's own requests (`OWN_AGENT`): well-formed lines left out
    # of the lists above.
    own_times: list[bytes] = field(default_factory=list)
    # Their status classes: nginx's count of responses includes them (the metric
    # recorder_http_responses_total is nginx's count), the site's error share does not.
    own_digits: bytes = b""
    # Each well-formed line's duration as logged (`LogFormat.duration`), aligned with
    # `clients` (empty when the line was cut short before it); None when the format
    # logs none.
    durations: list[bytes] | None = None

    @property
    def matched(self) -> int:
        return len(self.digits) + len(self.own_times)

    @property
    def own(self) -> int:
        return len(self.own_times)

    @property
    def malformed(self) -> int:
        return self.lines - self.matched

    def iter_starts(self) -> Iterator[bytes]:
        if self._starts is not None:
            return iter(self._starts)
        spread = chain.from_iterable(repeat(t, BLOCK_LINES) for t in self.block_starts)
        return chain(spread, repeat(b"", len(self.times) - BLOCK_LINES * len(self.block_starts)))

    def full_times(self) -> list[bytes]:
        """Every well-formed line's time (materialized: costs a pass in Python)."""
        return [t or s for t, s in zip(self.times, self.iter_starts(), strict=True)]

    def distinct_times(self) -> set[bytes]:
        found = set(self.times)
        found.update(self.block_starts)
        found.discard(b"")
        return found

    def keep(self, mask: Iterable[object]) -> None:
        """Keep only the lines whose mask entry is true."""
        flags = list(mask)
        starts = list(self.iter_starts())
        self.clients = list(compress(self.clients, flags))
        self.times = list(compress(self.times, flags))
        self._starts = list(compress(starts, flags))
        self.digits = bytes(compress(self.digits, flags))
        if self.durations is not None:
            self.durations = list(compress(self.durations, flags))


def parse_chunk(fmt: LogFormat, buf: bytes, start: int = 0, end: int | None = None) -> Lines:
    """Parse the complete lines in buf[start:end]: it is one newline, then the lines
    separated by newlines, without a newline after the last, so every newline in it
    starts a line. (A region of a larger buffer is read in place, without a copy.)"""
    end = len(buf) if end is None else end
    lines = buf.count(b"\n", start, end)
    if not lines:
        return Lines()
    full = lines - lines % BLOCK_LINES
    split = end
    for _ in range(lines - full):
        split = buf.rfind(b"\n", start, split)
    rows: list[tuple[bytes, ...]] = fmt.block.findall(buf, start, split) if full else []
    rest: list[tuple[bytes, ...]] = fmt.one.findall(buf, split, end)
    if len(rows) * BLOCK_LINES + len(rest) != lines:
        # A loop ran past a malformed line's end: read the chunk with the strict pattern.
        rows, rest = [], fmt.strict.findall(buf, start, end)
    flat = list(chain.from_iterable(chain(rows, rest)))
    if fmt.escaped is not None:
        _reread_escaped(fmt.escaped, fmt.groups, buf, start, end, flat)
    ci, ti, si = fmt.index
    n = fmt.groups
    parsed = Lines(
        lines=lines,
        clients=flat[ci::n],
        times=flat[ti::n],
        block_starts=[r[ti] for r in rows],
    )
    digits = b"".join(flat[si::n])
    marks = flat[fmt.own :: n] if fmt.own is not None else None
    if fmt.duration is not None:
        parsed.durations = flat[fmt.duration :: n]
    if len(digits) != len(parsed.clients):
        # Malformed lines filled their slots with empty groups: drop them.
        if marks is not None:
            marks = list(compress(marks, map(len, parsed.clients)))
        parsed.keep(map(len, parsed.clients))
    parsed.digits = digits
    if marks is not None and OWN_AGENT[:1] in marks:
        # The recorder's own requests (few, when any): their times, then out.
        parsed.own_times = list(compress(parsed.full_times(), marks))
        parsed.own_digits = bytes(compress(parsed.digits, marks))
        parsed.keep(map(operator.not_, marks))
    return parsed


def _reread_escaped(
    escaped: re.Pattern[bytes], groups: int, buf: bytes, start: int, end: int, flat: list[bytes]
) -> None:
    """Read again, each alone with the escape-aware pattern, the lines of buf[start:end]
    that hold a `\\"` (few), and put their groups in `flat` in place of what the plain
    patterns read. A line without one reads alike with both, and the plain patterns are
    the faster. A line's time is then its own (never its block's first line's)."""
    pos = _escaped_quote(buf, start, end)
    newlines = 0  # in buf[start:counted]
    counted = start
    while pos >= 0:
        newlines += buf.count(b"\n", counted, pos)
        counted = pos
        line_start = buf.rfind(b"\n", start, pos)
        line_end = buf.find(b"\n", pos, end)
        if line_end < 0:
            line_end = end
        found = escaped.match(buf, line_start, line_end)
        i = (newlines - 1) * groups  # the line is the newlines-th of the region
        flat[i : i + groups] = [g or b"" for g in found.groups()] if found else [b""] * groups
        pos = _escaped_quote(buf, line_end, end)


def _escaped_quote(buf: bytes, start: int, end: int) -> int:
    """Where the next `\\"` in buf[start:end] starts, or -1. By its backslash: a search for
    one byte runs at memory speed, while one for the pair stops at every quote."""
    pos = buf.find(b"\\", start, end)
    while pos >= 0 and buf[pos + 1 : pos + 2] != b'"':
        pos = buf.find(b"\\", pos + 1, end)
    return pos if pos >= 0 and pos + 1 < end else -1


def well_formed(fmt: LogFormat, line: bytes) -> bool:
    """Whether one line (without its newline) is read as a request (slow: for one line)."""
    if b"\n" in line:
        return False
    strict = fmt.escaped if fmt.escaped is not None and b'\\"' in line else fmt.strict
    found = strict.match(b"\n" + line)
    return found is not None and bool(found.group(fmt.index[2] + 1))


# ---- times ------------------------------------------------------------------------------


def _time_local(raw: bytes) -> int | None:
    """23/Nov/2026:14:30:05 +0300 as epoch seconds. A day of log holds 86,400 distinct
    times, each converted once: the minute (everything but the seconds) is converted
    once and the seconds added. The same result as the whole conversion, errors
    included: the seconds enter it only as the last term of a sum."""
    minute = _minute_local(raw[:18] + raw[20:])
    if minute is None:
        return None
    try:
        return minute + int(raw[18:20])
    except ValueError:
        return None


@lru_cache(maxsize=4096)
def _minute_local(key: bytes) -> int | None:
    """The epoch second a minute starts (a time_local without its two second digits)."""
    return _time_local_full(key[:18] + b"00" + key[18:])


def _time_local_full(raw: bytes) -> int | None:
    # 23/Nov/2026:14:30:05 +0300
    try:
        month = _MONTHS[raw[3:6]]
        if raw[2:3] != b"/" or raw[6:7] != b"/" or raw[20:21] != b" ":
            return None
        stamp = calendar.timegm(
            (
                int(raw[7:11]),
                month,
                int(raw[0:2]),
                int(raw[12:14]),
                int(raw[15:17]),
                int(raw[18:20]),
                0,
                0,
                0,
            )
        )
        sign = {b"+": 1, b"-": -1}[raw[21:22]]
        offset = sign * (int(raw[22:24]) * 3600 + int(raw[24:26]) * 60)
    except (KeyError, ValueError):
        return None
    return stamp - offset


def _time_iso8601(raw: bytes) -> int | None:
    try:
        parsed = datetime.fromisoformat(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    if parsed.tzinfo is None:
        return None
    return int(parsed.timestamp())


def _msec(raw: bytes) -> int | None:
    # A hostile line can hold 400 digits: that is no time (and no datetime could show it).
    try:
        value = int(float(raw))
    except (ValueError, OverflowError):
        return None
    return value if value <= MAX_EPOCH else None


_CONVERTERS = {"time_local": _time_local, "time_iso8601": _time_iso8601, "msec": _msec}


_MISSING = object()


class TimeCache:
    """Log time strings to epoch seconds, each distinct string converted once."""

    def __init__(self, time_var: str, limit: int = 100_000) -> None:
        self._convert = _CONVERTERS[time_var]
        self._cache: dict[bytes, int | None] = {}
        self._limit = limit

    def __call__(self, raw: bytes) -> int | None:
        # get() with a sentinel: most calls here are misses (one per distinct time), and
        # a raised and caught KeyError costs several times a lookup.
        value = self._cache.get(raw, _MISSING)
        if value is not _MISSING:
            return value  # type: ignore[return-value]
        if len(self._cache) >= self._limit:
            self._cache.clear()
        value = self._cache[raw] = self._convert(raw)
        return value

    def many(self, raws: Iterable[bytes]) -> dict[bytes, int | None]:
        return {raw: self(raw) for raw in raws}


def iso(epoch: int | None) -> str | None:
    """An epoch second as ISO 8601 in UTC (`2026-11-23T11:30:05Z`)."""
    if epoch is None:
        return None
    try:
        moment = datetime.fromtimestamp(epoch, UTC)
    except (ValueError, OverflowError, OSError):
        # Outside the years a datetime can show: no moment to tell, not a failed check.
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def drop_untimed(lines: Lines, seconds: dict[bytes, int | None]) -> int:
    """Remove well-formed lines whose time does not parse; returns how many."""
    bad = {raw for raw, sec in seconds.items() if sec is None}
    if not bad:
        return 0
    before = len(lines.digits)
    lines.keep([t not in bad for t in lines.full_times()])
    return before - len(lines.digits)


# The shapes nginx writes a duration in: a decimal number (`0.153`); for
# $upstream_response_time one per backend tried, `, `-separated, with ` : ` between the
# upstream groups of an internal redirect, and `-` for one that gave no answer. Anything
# else (two lines glued by a cut write, a hostile value) is no duration: summing every
# number in it made thousands of seconds, or infinity, of a line.
_DURATION_NUMBER = rb"(?:[0-9]+(?:\.[0-9]+)?|-)"
_DURATION_SHAPE = re.compile(_DURATION_NUMBER + rb"(?:(?:, | : )" + _DURATION_NUMBER + rb")*")
_DURATION_PART = re.compile(rb"[0-9]+(?:\.[0-9]+)?")
# No response nginx logs took a day: a longer value is not a duration (and subtracted
# from the line's time it could leave the years a datetime can show).
MAX_DURATION = 86_400.0


def duration_seconds(raw: bytes) -> float | None:
    """A logged duration in seconds: `0.153`; for $upstream_response_time the sum of the
    backends tried (`0.002, 1.004`, `0.5 : 0.3`), which the client waited for in turn;
    None for `-` (no backend was asked) or anything not of those shapes, not finite or
    above `MAX_DURATION` (unknown, never slow)."""
    if _DURATION_SHAPE.fullmatch(raw) is None:
        return None
    parts = _DURATION_PART.findall(raw)
    if not parts:
        return None
    seconds = sum(map(float, parts))
    return seconds if math.isfinite(seconds) and seconds <= MAX_DURATION else None


def odd_durations(lines: Lines) -> int:
    """How many well-formed lines hold a duration nginx could not have written (not of
    its shapes, not finite, or above `MAX_DURATION`): read as unknown, like a line cut
    before its duration (empty) or one no backend answered (`-`), but counted, as a
    malformed line is, so a log full of them is noticed."""
    if lines.durations is None:
        return 0
    odd = [
        raw
        for raw in set(lines.durations)
        if raw
        and duration_seconds(raw) is None
        and (_DURATION_SHAPE.fullmatch(raw) is None or _DURATION_PART.search(raw) is not None)
    ]
    return sum(map(lines.durations.count, odd))


def slow_mask(lines: Lines, above: float) -> list[bool]:
    """Which of the well-formed lines took longer than `above` seconds (none when the
    format logs no duration). Each distinct logged value is converted once: they have
    millisecond resolution, so a chunk holds few."""
    if lines.durations is None:
        return [False] * len(lines.clients)
    slow = {}
    for raw in set(lines.durations):
        seconds = duration_seconds(raw)
        slow[raw] = seconds is not None and seconds > above
    # A 1xx is never slow: nginx logs a websocket's 101 when the connection closes, with
    # the connection's whole life as its duration.
    return [
        slow[raw] and digit != 0x31
        for raw, digit in zip(lines.durations, lines.digits, strict=True)
    ]


def clients_with_5xx(lines: Lines) -> Iterable[bytes]:
    return compress(lines.clients, lines.digits.translate(MASK_5XX))


def times_with_5xx(lines: Lines) -> set[bytes]:
    """The distinct times of the lines answered with a 5xx."""
    mask = lines.digits.translate(MASK_5XX)
    own = list(compress(lines.times, mask))
    found = set(own)
    if b"" in found:  # some share their block's first time
        found.discard(b"")
        found.update(compress(compress(lines.iter_starts(), mask), map(operator.not_, own)))
    return found


def split_complete(tail: bytes, data: bytes) -> tuple[bytes, bytes]:
    """(chunk, new tail): the complete lines of tail+data as `parse_chunk` wants them,
    and the partial last line kept for the next read."""
    cut = data.rfind(b"\n")
    if cut < 0:
        return b"", tail + data
    return b"\n" + tail + data[:cut], data[cut + 1 :]


# ---- counting: what `recorder logscan` keeps of the lines ---------------------------------


class Totals(TypedDict):
    """A tally's counts. `digits[d]` counts the kept lines whose status starts with d."""

    lines: int  # every line
    matched: int  # well-formed lines
    kept: int  # well-formed lines inside [since, until) (all of them without a range)
    untimed: int  # well-formed lines whose time does not parse
    out_of_range: int  # well-formed lines outside the range, untimed ones included
    # The recorder's own requests (`OWN_AGENT`) inside the range: in `matched`, not in
    # `kept`, `digits` or the clients.
    self_requests: int
    digits: tuple[int, ...]
    clients: int
    clients_with_5xx: int
    first_5xx: int | None  # epoch seconds
    last_5xx: int | None


class Tally(Protocol):
    """Running counts over the lines of many chunks (see `new_tally`)."""

    def scan(self, buf: bytes, start: int, end: int, /) -> None: ...

    def totals(self) -> Totals: ...


class PyTally:
    """The tally in Python: the reference the compiled one (probes/_accesslog.c) must
    equal, and what counts when that one was not built.

    `convert` turns a line's time into epoch seconds (None: it does not parse). A line
    whose time does not parse is untimed; with a range (`since` inclusive, `until`
    exclusive) it is also out of range, without one it is still counted.
    """

    def __init__(
        self,
        fmt: LogFormat,
        convert: Callable[[bytes], int | None],
        since: int | None = None,
        until: int | None = None,
    ) -> None:
        self.fmt = fmt
        self.convert = convert
        self.since, self.until = since, until
        self.lines = self.matched = self.kept = self.untimed = self.out_of_range = 0
        self.self_requests = 0
        self.digits = [0] * 10
        self.clients: set[bytes] = set()
        self.clients_5xx: set[bytes] = set()
        self.first_5xx: int | None = None
        self.last_5xx: int | None = None

    def scan(self, buf: bytes, start: int, end: int, /) -> None:
        chunk = parse_chunk(self.fmt, buf, start, end)
        self.lines += chunk.lines
        self.matched += chunk.matched
        seconds = {raw: self.convert(raw) for raw in chunk.distinct_times()}
        if chunk.own_times:
            # The recorder's own requests are counted like any other line up to the range,
            # then apart (`self_requests`), never in the classes or clients.
            seconds.update((raw, self.convert(raw)) for raw in chunk.own_times)
            own = [seconds[t] for t in chunk.own_times]
            self.untimed += own.count(None)
            if self.since is not None or self.until is not None:
                lo = self.since if self.since is not None else -(1 << 62)
                hi = self.until if self.until is not None else 1 << 62
                in_range = sum(1 for s in own if s is not None and lo <= s < hi)
                self.out_of_range += len(own) - in_range
                self.self_requests += in_range
            else:
                self.self_requests += len(own)
        if None in seconds.values():
            self.untimed += sum(1 for t in chunk.full_times() if seconds[t] is None)
        if self.since is not None or self.until is not None:
            lo = self.since if self.since is not None else -(1 << 62)
            hi = self.until if self.until is not None else 1 << 62
            inside = {raw: s is not None and lo <= s < hi for raw, s in seconds.items()}
            if not all(inside.values()):
                before = len(chunk.digits)
                chunk.keep(map(inside.__getitem__, chunk.full_times()))
                self.out_of_range += before - len(chunk.digits)
        self.kept += len(chunk.digits)
        for d in range(10):
            self.digits[d] += chunk.digits.count(str(d).encode())
        self.clients.update(chunk.clients)
        self.clients_5xx.update(clients_with_5xx(chunk))
        stamps = [s for s in map(seconds.__getitem__, times_with_5xx(chunk)) if s is not None]
        if stamps:
            lo5, hi5 = min(stamps), max(stamps)
            self.first_5xx = lo5 if self.first_5xx is None else min(self.first_5xx, lo5)
            self.last_5xx = hi5 if self.last_5xx is None else max(self.last_5xx, hi5)

    def totals(self) -> Totals:
        return Totals(
            lines=self.lines,
            matched=self.matched,
            kept=self.kept,
            untimed=self.untimed,
            out_of_range=self.out_of_range,
            self_requests=self.self_requests,
            digits=tuple(self.digits),
            clients=len(self.clients),
            clients_with_5xx=len(self.clients_5xx),
            first_5xx=self.first_5xx,
            last_5xx=self.last_5xx,
        )


def _load_compiled() -> Callable[..., Tally] | None:
    """The compiled Tally type, unless it was not built or RECORDER_PURE_PYTHON is set
    (to compare the two, or to rule the C code out when something looks wrong)."""
    if os.environ.get("RECORDER_PURE_PYTHON"):
        return None
    try:
        from probes._accesslog import Tally as compiled
    except ImportError:  # built without a C compiler: the Python tally is exact, slower
        return None
    return compiled


_COMPILED = _load_compiled()
# Which tally `new_tally` gives: reported by `recorder logscan --json` and the benchmark.
READER = "compiled" if _COMPILED is not None else "python"


def new_tally(
    fmt: LogFormat,
    convert: Callable[[bytes], int | None],
    since: int | None = None,
    until: int | None = None,
) -> Tally:
    """A tally for lines of `fmt`: the compiled one when it was built and the format
    has a layout, else `PyTally`. Both count the same (tests/test_accesslog_compiled.py)."""
    if _COMPILED is not None and fmt.layout is not None:
        # time_local: the canonical times are converted in C (the same arithmetic as
        # `_time_local`); `convert` still answers for every other shape.
        return _COMPILED(fmt.layout, convert, since, until, fmt.time_var == "time_local")
    return PyTally(fmt, convert, since, until)
