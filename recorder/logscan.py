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
    Lines,
    LogFormat,
    TimeCache,
    class_counts,
    clients_with_5xx,
    compile_format,
    iso,
    parse_chunk,
    times_with_5xx,
)

CHUNK = 1 << 20  # bytes per read: large enough to amortize, small enough to stay in cache
_GZIP_MAGIC = b"\x1f\x8b"


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
    """Running totals over every chunk of every file."""

    def __init__(self, time_var: str, since: int | None, until: int | None) -> None:
        self.times = TimeCache(time_var)
        self.since, self.until = since, until
        self.lines = 0
        self.malformed = 0
        self.out_of_range = 0
        self.untimed = 0  # well-formed lines whose time does not parse
        self.classes = dict.fromkeys(CLASSES, 0)
        self.clients: set[bytes] = set()
        self.clients_5xx: set[bytes] = set()
        self.first_5xx: int | None = None
        self.last_5xx: int | None = None

    def add(self, chunk: Lines) -> tuple[int, int]:
        """Count one parsed chunk; returns (requests counted, malformed lines)."""
        self.lines += chunk.lines
        self.malformed += chunk.malformed
        seconds = self.times.many(chunk.distinct_times())
        ranged = self.since is not None or self.until is not None
        if ranged:
            self._keep_in_range(chunk, seconds)
        elif None in seconds.values():
            self.untimed += sum(1 for t in chunk.full_times() if seconds[t] is None)
        for name, n in class_counts(chunk.digits).items():
            self.classes[name] += n
        self.clients.update(chunk.clients)
        self.clients_5xx.update(clients_with_5xx(chunk))
        stamps = [s for s in map(seconds.__getitem__, times_with_5xx(chunk)) if s is not None]
        if stamps:
            lo, hi = min(stamps), max(stamps)
            self.first_5xx = lo if self.first_5xx is None else min(self.first_5xx, lo)
            self.last_5xx = hi if self.last_5xx is None else max(self.last_5xx, hi)
        return len(chunk.digits), chunk.malformed

    def _keep_in_range(self, chunk: Lines, seconds: dict[bytes, int | None]) -> None:
        """Drop the lines outside [since, until) (and those whose time does not parse)."""
        lo = self.since if self.since is not None else -(1 << 62)
        hi = self.until if self.until is not None else 1 << 62
        inside = {raw: s is not None and lo <= s < hi for raw, s in seconds.items()}
        if all(inside.values()):
            return
        before = len(chunk.digits)
        if any(s is None for s in seconds.values()):
            self.untimed += sum(1 for t in chunk.full_times() if seconds[t] is None)
        chunk.keep(map(inside.__getitem__, chunk.full_times()))
        self.out_of_range += before - len(chunk.digits)

    def to_json(self) -> dict[str, Any]:
        requests = sum(self.classes.values())
        clients = len(self.clients)
        return {
            "requests": requests,
            "status_classes": dict(self.classes),
            "error_ratio": round(self.classes["5xx"] / requests, 6) if requests else 0.0,
            "clients": clients,
            "clients_with_5xx": len(self.clients_5xx),
            "affected_ratio": round(len(self.clients_5xx) / clients, 6) if clients else 0.0,
            "first_5xx": iso(self.first_5xx),
            "last_5xx": iso(self.last_5xx),
            "lines": self.lines,
            "malformed_lines": self.malformed,
            "out_of_range_lines": self.out_of_range,
            "untimed_lines": self.untimed,
        }


def scan(
    paths: Sequence[str],
    since: datetime | None = None,
    until: datetime | None = None,
    log_format: str | None = None,
) -> dict[str, Any]:
    """Summarize access logs (plain or gzip): requests, status classes, 5xx share,
    distinct clients, clients that got a 5xx, affected share, first and last 5xx (UTC),
    malformed lines. `since` is inclusive, `until` exclusive; both need a zone."""
    fmt = compile_format(log_format)
    for bound in (since, until):
        if bound is not None and bound.tzinfo is None:
            raise ValueError("since/until need a time zone")
    summary = Summary(
        fmt.time_var,
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
    return result


def _scan_file(path: str, fmt: LogFormat, summary: Summary) -> dict[str, Any]:
    lines = requests = malformed = 0
    compressed = False
    with open(path, "rb") as raw:
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        source: IO[bytes] = (
            gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw  # type: ignore[assignment]
        )
        try:
            pending = b""  # the start of a line cut by the previous read
            while True:
                try:
                    data = source.read(CHUNK)
                except (EOFError, gzip.BadGzipFile) as exc:
                    raise ValueError(f"{path}: damaged gzip file ({exc})") from None
                if not data:
                    break
                first = data.find(b"\n")
                if first < 0:
                    pending += data
                    continue
                # The line cut by the previous read, completed; then the lines of this
                # read, parsed in place (from its first newline to its last).
                parts = [parse_chunk(fmt, b"\n" + pending + data[:first])]
                last = data.rfind(b"\n")
                if last > first:
                    parts.append(parse_chunk(fmt, data, first, last))
                pending = data[last + 1 :]
                for parsed in parts:
                    lines += parsed.lines
                    counted, bad = summary.add(parsed)
                    requests += counted
                    malformed += bad
            if pending:  # a last line without its newline still counts
                parsed = parse_chunk(fmt, b"\n" + pending)
                lines += parsed.lines
                counted, bad = summary.add(parsed)
                requests += counted
                malformed += bad
        finally:
            if source is not raw:
                source.close()
    return {
        "path": path,
        "compressed": compressed,
        "lines": lines,
        "requests": requests,
        "malformed_lines": malformed,
    }


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
    out += [
        f"requests:   {_n(summary['requests'])}",
        "classes:    " + ", ".join(f"{k} {_n(v)}" for k, v in classes.items()),
        f"5xx share:  {summary['error_ratio']:.2%} ({_n(classes.get('5xx', 0))} responses)",
        f"clients:    {_n(summary['clients'])}, of which {_n(summary['clients_with_5xx'])}"
        f" got at least one 5xx ({summary['affected_ratio']:.2%} affected)",
        f"first 5xx:  {when(summary['first_5xx'])}",
        f"last 5xx:   {when(summary['last_5xx'])}",
    ]
    return "\n".join(out)
