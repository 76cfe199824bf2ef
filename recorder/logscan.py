"""`recorder logscan`: the access-log reader, offline, over plain or gzipped files.

The same parser as the error_rate probe (probes/accesslog.py), so a number printed here
and one the probe reported mean the same thing. Memory holds the distinct clients, not
the lines.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from typing import IO, Any

from probes.accesslog import (
    CLASSES,
    MAX_LINE,
    LogFormat,
    PyTally,
    TimeCache,
    Totals,
    compile_format,
    iso,
    new_tally,
    well_formed,
)

# Bytes per read: large enough to amortize, small enough to stay in cache; at most
# MAX_LINE, which the long-line check below relies on (a line within one read is short).
CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
# A larger share of malformed lines is a warning: a log nginx wrote with the format given
# has none (a line cut by a crash, an over-long line), so many mean another format.
MALFORMED_WARN = 0.01
SAMPLE_CHARS = 200  # of the malformed line shown with the warning


def parse_time(text: str, tz: tzinfo) -> datetime:
    """`2026-11-23 14:30`, `2026-11-23T14:30:05`, `2026-11-23` (in `tz`) or ISO 8601 with
    an offset (`2026-11-23T14:30:00+03:00`, `...Z`); an aware datetime."""
    raw = text.strip()
    candidate = raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw
    if re.fullmatch(r"\d{4}-\d\d-\d\d", candidate):
        candidate += "T00:00"
    try:
        value = datetime.fromisoformat(candidate)
    except ValueError:
        raise ValueError(
            f"cannot read time {text!r}: use ISO 8601 (2026-11-23T14:30:00+03:00) "
            "or 'YYYY-MM-DD HH:MM'"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value


class Summary:
    """Running totals over every chunk of every file, kept by a tally (compiled when it
    was built: see probes/accesslog.py `new_tally`)."""

    def __init__(self, fmt: LogFormat, since: int | None, until: int | None) -> None:
        self.tally = new_tally(fmt, TimeCache(fmt.time_var), since, until)
        self.long_lines = 0  # lines over MAX_LINE: malformed, never given to the tally
        self.fmt = fmt
        self.sample: bytes | None = None  # the first malformed line, for the warning

    def add(self, buf: bytes, start: int = 0, end: int | None = None) -> None:
        """Count the lines of buf[start:end], as `parse_chunk` reads them."""
        end = len(buf) if end is None else end
        if self.sample is not None:
            self.tally.scan(buf, start, end)
            return
        before = self.tally.totals()
        self.tally.scan(buf, start, end)
        after = self.tally.totals()
        if after["lines"] - after["matched"] > before["lines"] - before["matched"]:
            # The first region with a malformed line: find it (once, in Python).
            lines = buf[start + 1 : end].split(b"\n")
            self.sample = next((x for x in lines if not well_formed(self.fmt, x)), None)

    def add_long_line(self, head: bytes) -> None:
        """Count a line over MAX_LINE (malformed); `head` is its start."""
        self.long_lines += 1
        if self.sample is None:
            self.sample = head

    def totals(self) -> Totals:
        """The tally's totals with the over-long lines counted in (as malformed)."""
        t = self.tally.totals()
        t["lines"] += self.long_lines
        return t

    def to_json(self) -> dict[str, Any]:
        t = self.totals()
        classes = {name: t["digits"][int(name[0])] for name in CLASSES}
        requests = sum(classes.values())
        clients = t["clients"]
        failed = t["clients_with_5xx"]
        return {
            "requests": requests,
            "status_classes": classes,
            "error_ratio": round(classes["5xx"] / requests, 6) if requests else 0.0,
            "clients": clients,
            "clients_with_5xx": failed,
            "affected_ratio": round(failed / clients, 6) if clients else 0.0,
            "first_5xx": iso(t["first_5xx"]),
            "last_5xx": iso(t["last_5xx"]),
            "lines": t["lines"],
            "malformed_lines": t["lines"] - t["matched"],
            "out_of_range_lines": t["out_of_range"],
            "untimed_lines": t["untimed"],
            "self_requests": t["self_requests"],
            "malformed_sample": printable(self.sample) if self.sample is not None else None,
            "reader": "python" if isinstance(self.tally, PyTally) else "compiled",
        }


def scan(
    paths: Sequence[str],
    since: datetime | None = None,
    until: datetime | None = None,
    log_format: str | None = None,
    log_escape: str = "default",
) -> dict[str, Any]:
    """Summarize access logs (plain or gzip): requests, status classes, 5xx share,
    distinct clients, clients that got a 5xx, affected share, first and last 5xx (UTC),
    malformed lines. `since` is inclusive, `until` exclusive; both need a zone.
    `log_escape`: the log_format's escape= (probes.accesslog.ESCAPES)."""
    fmt = compile_format(log_format, log_escape)
    for bound in (since, until):
        if bound is not None and bound.tzinfo is None:
            raise ValueError("since/until need a time zone")
    if since is not None and until is not None and since >= until:
        raise ValueError(
            f"--since ({since.isoformat()}) is not before --until ({until.isoformat()}):"
            " no request can be in that range (--since is inclusive, --until exclusive)"
        )
    summary = Summary(
        fmt,
        int(since.timestamp()) if since else None,
        int(until.timestamp()) if until else None,
    )
    files: list[dict[str, Any]] = []
    for path in paths:
        files.append(_scan_file(path, fmt, summary))
    result = summary.to_json()
    result["files"] = files
    result["since"] = since.astimezone(UTC).isoformat() if since else None
    result["until"] = until.astimezone(UTC).isoformat() if until else None
    result["log_format"] = fmt.name
    result["log_escape"] = fmt.escape
    return result


def _scan_file(path: str, fmt: LogFormat, summary: Summary) -> dict[str, Any]:
    before = summary.totals()
    compressed = False
    with open(path, "rb") as raw:
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        source: IO[bytes] = (
            gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw  # type: ignore[assignment]
        )
        try:
            pending = b""  # the start of a line cut by the previous read
            dropping = False  # inside an over-long line, already counted, up to its end
            while True:
                try:
                    data = source.read(CHUNK)
                except (EOFError, gzip.BadGzipFile) as exc:
                    raise ValueError(f"{path}: damaged gzip file ({exc})") from None
                if not data:
                    break
                first = data.find(b"\n")
                if first < 0:
                    if not dropping:
                        pending += data
                        if len(pending) > MAX_LINE:
                            summary.add_long_line(pending[:SAMPLE_CHARS])
                            pending, dropping = b"", True
                    continue
                # The line cut by the previous read, completed; then the lines of this
                # read, counted in place (from its first newline to its last).
                if dropping:
                    dropping = False
                elif len(pending) + first > MAX_LINE:
                    summary.add_long_line(pending[:SAMPLE_CHARS] + data[: min(first, SAMPLE_CHARS)])
                else:
                    summary.add(b"\n" + pending + data[:first])
                last = data.rfind(b"\n")
                if last > first:
                    summary.add(data, first, last)
                pending = data[last + 1 :]
            if pending:  # a last line without its newline still counts
                summary.add(b"\n" + pending)
        finally:
            if source is not raw:
                source.close()
    after = summary.totals()
    lines = after["lines"] - before["lines"]
    return {
        "path": path,
        "compressed": compressed,
        "lines": lines,
        "requests": after["kept"] - before["kept"],
        "malformed_lines": lines - (after["matched"] - before["matched"]),
    }


def printable(raw: bytes) -> str:
    """A log line as it can be shown on a terminal: decoded (bad bytes replaced), control
    and other unprintable characters (an escape sequence's ESC) dropped, cut short."""
    text = raw[: SAMPLE_CHARS * 4].decode("utf-8", "replace")
    text = "".join(c for c in text if c.isprintable())
    return text[:SAMPLE_CHARS] + ("..." if len(text) > SAMPLE_CHARS else "")


def problems(summary: dict[str, Any]) -> tuple[list[str], str | None]:
    """(warnings, error) about how well the files were read. An error when lines were read
    and none parsed (a binary file, another format): the counts then mean nothing. A
    warning when more than MALFORMED_WARN of the lines did not parse."""
    lines, malformed = summary["lines"], summary["malformed_lines"]
    if not lines or not malformed:
        return [], None
    fmt = summary["log_format"]
    sample = summary.get("malformed_sample")
    cause = (
        f"likely cause: the log was not written with the log format {fmt}"
        " (give the nginx log_format it was written with: --format '...')"
    )
    shown = f"first malformed line: {sample!r}" if sample is not None else ""
    if malformed == lines:
        what = "file" if len(summary.get("files") or []) == 1 else "files"
        return [], f"no line of the {what} parsed ({_n(lines)} lines); {cause}; {shown}"
    if malformed > MALFORMED_WARN * lines:
        return [
            f"{_n(malformed)} of {_n(lines)} lines ({malformed / lines:.1%}) did not parse"
            f" and are not counted; {cause}; {shown}"
        ], None
    return [], None


def _n(value: int) -> str:
    return f"{value:,}"


def format_text(summary: dict[str, Any], tz: tzinfo | None = None) -> str:
    """The summary for people: counts with thousands separators, times with their zone."""
    zone = tz or UTC

    def when(value: str | None) -> str:
        if not value:
            return "none"
        at = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(zone)
        return at.strftime("%Y-%m-%d %H:%M:%S %Z")

    classes = summary["status_classes"]
    files = summary.get("files") or []
    out = [
        f"files:      {len(files)} ({_n(summary['lines'])} lines,"
        f" {_n(summary['malformed_lines'])} malformed)",
    ]
    if summary.get("since") or summary.get("until"):
        out.append(
            f"range:      {when(summary.get('since')) if summary.get('since') else 'start'}"
            f" to {when(summary.get('until')) if summary.get('until') else 'end'}"
            f" ({_n(summary.get('out_of_range_lines', 0))} lines outside)"
        )
    own = summary.get("self_requests", 0)
    out += [
        f"requests:   {_n(summary['requests'])}"
        + (f" (and {_n(own)} of the recorder's own, left out)" if own else ""),
        "classes:    " + ", ".join(f"{k} {_n(v)}" for k, v in classes.items()),
        f"5xx share:  {summary['error_ratio']:.2%} ({_n(classes.get('5xx', 0))} responses)",
        f"clients:    {_n(summary['clients'])}, of which {_n(summary['clients_with_5xx'])}"
        f" got at least one 5xx ({summary['affected_ratio']:.2%} affected)",
        f"first 5xx:  {when(summary['first_5xx'])}",
        f"last 5xx:   {when(summary['last_5xx'])}",
    ]
    return "\n".join(out)
