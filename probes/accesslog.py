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
1-character status digit costs no allocation (CPython caches 1-byte strings); the counts
come from the joined digits with `bytes.count`, the client sets from `set.update`.

Why it is exact. The fast expression uses loops that stop at one character (`[^ ]*`),
which the engine runs far faster than classes that also stop at a newline (`[^ \\n]*`);
such a loop can run past the end of a malformed line into the next one. It can only do
so by consuming an extra newline, so a chunk whose slot count differs from its newline
count is read again with the strict expression (same expression, newline-safe classes).
When the counts agree no slot crossed a line, and then the two expressions are the same.

What is assumed of the log: nginx's default escaping (a `"` inside a value is written as
`\\x22`), so a quoted value holds no raw quote. Lines are bytes; clients stay bytes until
they are reported.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from itertools import chain, compress

COMBINED = (
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
    '"$http_referer" "$http_user_agent"'
)
CLIENT_VARS = ("remote_addr", "realip_remote_addr", "http_x_real_ip", "http_x_forwarded_for")
TIME_VARS = {"time_local": rb"(.{26})", "time_iso8601": rb"(.{25})", "msec": rb"(\d++\.\d++)"}
BLOCK_LINES = 64
CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
_DIGITS = (b"1", b"2", b"3", b"4", b"5")
# bytes.translate table: b"5" -> 1, every other byte -> 0 (a mask for itertools.compress).
_MASK_5XX = bytes(1 if i == ord("5") else 0 for i in range(256))
_MONTHS = {
    m.encode(): i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
_VAR = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")


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

    @property
    def name(self) -> str:
        return "combined" if self.text == COMBINED else self.text


def _variable_pattern(name: str, stop: bytes | None, strict: bool, capture: bool) -> bytes:
    """The expression for one variable: fixed shapes for time and status, otherwise a
    loop up to the first character of the literal text that follows it."""
    if name in TIME_VARS:
        pattern = TIME_VARS[name]
    elif name == "status":
        pattern = rb"(\d)\d\d"
    elif stop is None:
        raise LogFormatError(f"${name} must be followed by literal text (before the status)")
    else:
        loop = b"[^" + re.escape(stop) + (rb"\n" if strict else b"") + b"]"
        pattern = b"(" + loop + b"++)" if name in CLIENT_VARS and capture else loop + b"*+"
    if not capture:
        pattern = pattern.replace(b"(", b"(?:")
    return pattern


@lru_cache(maxsize=32)
def compile_format(text: str | None = None) -> LogFormat:
    """Compile an nginx log_format string (None: combined) into the reader's patterns."""
    text = COMBINED if text is None else text
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
    # last of the three.
    wanted = {client, time_var, "status"}
    last = max(i for i, p in enumerate(pieces) if p[0] == "var" and p[1] in wanted)

    def build(strict: bool) -> tuple[bytes, tuple[int, int, int]]:
        out: list[bytes] = []
        order: list[str] = []
        for i, (kind, value) in enumerate(pieces[: last + 1]):
            if kind == "lit":
                out.append(re.escape(value.encode()))
                continue
            nxt = pieces[i + 1] if i + 1 < len(pieces) else None
            stop = nxt[1].encode()[:1] if nxt and nxt[0] == "lit" else None
            field_name = {client: "client", time_var: "time", "status": "status"}.get(value)
            capture = field_name is not None and field_name not in order
            if capture:
                order.append(str(field_name))
            out.append(_variable_pattern(value, stop, strict, capture))
        if last + 1 < len(pieces) and pieces[last + 1][0] == "lit":
            # The character after the last field, so `2001` is not read as status 200.
            out.append(re.escape(pieces[last + 1][1].encode()[:1]))
        return b"".join(out), (order.index("client"), order.index("time"), order.index("status"))

    valid, index = build(strict=False)
    valid_strict, _ = build(strict=True)
    slot = b"(?>" + valid + rb"[^\n]*+|[^\n]*+)"
    slot_strict = b"(?>" + valid_strict + rb"[^\n]*+|[^\n]*+)"
    try:
        return LogFormat(
            text=text,
            time_var=time_var,
            index=index,
            block=re.compile(rb"\n" + rb"\n".join([slot] * BLOCK_LINES)),
            one=re.compile(rb"\n" + slot),
            strict=re.compile(rb"\n" + slot_strict),
        )
    except re.error as exc:  # pragma: no cover - every piece above is escaped or fixed
        raise LogFormatError(f"cannot compile log_format: {exc}") from None


@dataclass
class Lines:
    """The parsed lines of one chunk: aligned lists of the well-formed lines' fields."""

    lines: int = 0  # every line, well-formed or not
    clients: list[bytes] = field(default_factory=list)
    times: list[bytes] = field(default_factory=list)
    digits: bytes = b""  # the status classes, one ASCII digit per well-formed line

    @property
    def matched(self) -> int:
        return len(self.digits)

    @property
    def malformed(self) -> int:
        return self.lines - len(self.digits)


def parse_chunk(fmt: LogFormat, buf: bytes) -> Lines:
    """Parse complete lines. `buf` is one newline, then the lines separated by newlines,
    without a newline after the last: every newline in it starts a line."""
    lines = buf.count(b"\n")
    if not lines:
        return Lines()
    full = lines - lines % BLOCK_LINES
    split = len(buf)
    for _ in range(lines - full):
        split = buf.rfind(b"\n", 0, split)
    rows: list[tuple[bytes, ...]] = fmt.block.findall(buf, 0, split) if full else []
    rest: list[tuple[bytes, ...]] = fmt.one.findall(buf, split)
    if len(rows) * BLOCK_LINES + len(rest) != lines:
        # A loop ran past a malformed line's end: read the chunk with the strict pattern.
        rows, rest = [], fmt.strict.findall(buf)
    flat = list(chain.from_iterable(chain(rows, rest)))
    ci, ti, si = fmt.index
    clients = flat[ci::3]
    times = flat[ti::3]
    digits = b"".join(flat[si::3])
    if len(digits) != len(clients):
        # Malformed lines filled their slots with empty groups: drop them.
        keep = list(map(len, clients))
        clients = list(compress(clients, keep))
        times = list(compress(times, keep))
    return Lines(lines=lines, clients=clients, times=times, digits=digits)


# ---- times ------------------------------------------------------------------------------


def _time_local(raw: bytes) -> int | None:
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
    try:
        return int(float(raw))
    except ValueError:
        return None


_CONVERTERS = {"time_local": _time_local, "time_iso8601": _time_iso8601, "msec": _msec}


class TimeCache:
    """Log time strings to epoch seconds, each distinct string converted once."""

    def __init__(self, time_var: str, limit: int = 100_000) -> None:
        self._convert = _CONVERTERS[time_var]
        self._cache: dict[bytes, int | None] = {}
        self._limit = limit

    def __call__(self, raw: bytes) -> int | None:
        try:
            return self._cache[raw]
        except KeyError:
            pass
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
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def drop_untimed(lines: Lines, seconds: dict[bytes, int | None]) -> int:
    """Remove well-formed lines whose time does not parse (they count as malformed);
    returns how many were removed."""
    bad = {raw for raw, sec in seconds.items() if sec is None}
    if not bad:
        return 0
    keep = [t not in bad for t in lines.times]
    before = len(lines.digits)
    lines.clients = list(compress(lines.clients, keep))
    lines.times = list(compress(lines.times, keep))
    lines.digits = bytes(compress(lines.digits, keep))
    return before - len(lines.digits)


def class_counts(digits: bytes) -> dict[str, int]:
    return {name: digits.count(d) for name, d in zip(CLASSES, _DIGITS, strict=True)}


def clients_with_5xx(lines: Lines) -> Iterable[bytes]:
    return compress(lines.clients, lines.digits.translate(_MASK_5XX))


def times_with_5xx(lines: Lines) -> Iterable[bytes]:
    return compress(lines.times, lines.digits.translate(_MASK_5XX))


def split_complete(tail: bytes, data: bytes) -> tuple[bytes, bytes]:
    """(chunk, new tail): the complete lines of tail+data as `parse_chunk` wants them,
    and the partial last line kept for the next read."""
    cut = data.rfind(b"\n")
    if cut < 0:
        return b"", tail + data
    return b"\n" + tail + data[:cut], data[cut + 1 :]
