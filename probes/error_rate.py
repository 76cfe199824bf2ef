"""Error-rate probe: 5xx share and affected clients from the access log, tailed.

Each call reads only the bytes appended since the previous call (through the host:
`stat`, then `read_range` in 4 MiB pieces) and keeps a sliding window of `window` seconds
measured by the log's own timestamps, in per-second buckets (counts by status class, the
set of clients, the set of clients that got a 5xx), so memory is bounded by the window,
not by the file.

State. Following the file (where reading resumes, rotation, truncation, the saved
position) is probes/follow.py's. What one call learned of a log (its position, the window,
the counters, the baseline) is a `LogState`, owned by the caller: the scheduler gives each
job its own and keeps it between runs, so a new `LogState` is a restarted recorder. Its
lock keeps two calls for the same log from interleaving. The position, the cumulative
counters and the rate baseline are also saved to `state_dir` (JSON, mode 0600, written
atomically), so a restarted recorder continues counting where it stopped: the window is
then rebuilt from the bytes before the saved offset, which are not counted again. On
first sight of a log, lines older than the window go straight to the history below, so
the first call already knows the log's usual 5xx share and request rate. Bytes skipped
after a long pause are reported in details["skipped_bytes"], rotations in
details["rotations"]; a missing log is an `error` observation (we could not look). Lines
that do not parse are counted and skipped.

Sudden rise. The window's share reacts slowly to a partial failure: a backend failing
15% of requests needs a third of a 30 s window before the share passes 5%. So the last
few seconds are also judged on their own (every stretch of the last 1 to 5 seconds of
the log): a stretch fails when its 5xx share is above the threshold and chance cannot
explain it. Chance is judged against what came before: the window's earlier seconds plus
a longer history (the seconds that left the window, fading with a half-life of 10
minutes of log time, so a few thousand requests at 20 req/s; seconds that were in the
window of a failing verdict are left out). The test is Fisher's
(hypergeometric: of all the 5xx, before and in the stretch, how unlikely that so many
fell in the stretch), which carries the uncertainty of a short history instead of
trusting its share; a stretch fails below 1e-6. A site that always returns a few 5xx is
compared with its own share and does not flap; a healthy site that starts failing 15%
of requests at 20 req/s fails within one or two seconds.

Clients over longer than the window. Every line read (new, older than the window, or
re-read after a restart to rebuild it) also lands in a per-call table by its second: the
observation's `ClientHarm.seconds` carries, per second, the clients seen and those that
got a 5xx as sketches of hashed addresses (probes/facts.py), which the engine merges over
a whole incident. Merging is a union, so a second read twice counts once.

Rate baseline: an exponentially weighted mean (weight 0.2 per call) of the window's
request rate, updated only by calls that do not fail, so an incident does not raise its
own baseline. A failing window whose rate exceeds `capacity_factor` times the baseline
is reported as `capacity` (too much traffic) rather than `http-5xx` (the servers broke).
Until a call has succeeded there is no such mean: a one-off `recorder probe`, or a
daemon started during a spike. Then the baseline is the history's own rate (its fading
request count over the fading count of seconds it spans), provided the log held at
least a window's worth of seconds before the window; otherwise there is none and a
failing window is `http-5xx`. A baseline worth fewer than `min_requests` a window (a
site that was idle) is none either.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from itertools import compress
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from probes.accesslog import (
    CLASSES,
    MASK_5XX,
    Lines,
    LogFormat,
    LogFormatError,
    TimeCache,
    clients_with_5xx,
    compile_format,
    drop_untimed,
    duration_seconds,
    iso,
    odd_durations,
    parse_chunk,
    slow_mask,
)
from probes.base import (
    Fault,
    Host,
    HostUnreachable,
    Observation,
    Status,
    error_observation,
)
from probes.durations import Duration
from probes.facts import (
    ABOVE_BASELINE,
    ClientHarm,
    ClientSecond,
    ClientSketch,
    Facts,
    LogCounters,
    Subjects,
    client_id,
)
from probes.follow import STATE_VERSION, Follower, Position
from probes.follow import load_state as load_state
from probes.follow import save_state as save_state
from probes.follow import state_path as state_path
from probes.nginxcli import serving_files

NAME = "error_rate"
BASELINE_WEIGHT = 0.2
SUDDEN_SECONDS = 5  # the longest recent stretch judged on its own
SUDDEN_EVIDENCE = 13.8  # -ln(p-value) a stretch needs: e^-13.8 is about 1e-6
HISTORY_HALF_LIFE = 600.0  # seconds of log time: how fast the longer history fades
STATUS_DIGITS = (b"1", b"2", b"3", b"4", b"5")  # the first digit of each of CLASSES
LOCK_WAIT = 30.0  # seconds to wait for a previous call on the same log
clock = time.time  # the wall clock (tests replace it)


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    log: str = "/var/log/nginx/access.log"
    window: Duration = 60.0
    threshold: float = Field(0.05, ge=0.0, le=1.0)  # 5xx share above this fails
    min_requests: int = Field(10, ge=1)  # fewer requests in the window never fail
    log_format: str | None = None  # an nginx log_format string; None is "combined"
    # its escape= (accesslog.ESCAPES): default and json read `\"` inside a quoted value
    log_escape: Literal["default", "json", "none"] = "default"
    capacity_factor: float = Field(3.0, gt=1.0)  # rate above factor x baseline is capacity
    # A response that took longer than this is slow (with $request_time or
    # $upstream_response_time in the log_format). Unset, the recorder's config takes the
    # http probe's `slow` of the same check; this default is that probe's own.
    slow: Duration = 2.0
    state_dir: str | None = None  # set by the engine: where offsets survive restarts
    max_catchup: int = Field(32 << 20, ge=1 << 20)  # bytes read per call at most
    # nginx's command line for naming the file of the server blocks writing the log
    # (`nginx -T`); unset, the recorder's config takes the check's config probe's.
    nginx: str = "nginx"
    conf: str = "/etc/nginx/nginx.conf"
    prefix: str | None = None
    # Read before that lookup: no pid in it, nginx is down (the process probe says so),
    # and `nginx -T` would leave an empty pid file behind (nginx creates it to test it
    # can), which the process probe, reading it at the same moment, would report as
    # "holds no pid" instead of a missing one. The process probe's pid_file.
    pid_file: str = "/run/nginx.pid"

    @field_validator("log_format")
    @classmethod
    def _format(cls, value: str | None) -> str | None:
        if value is not None:
            compile_format(value)  # LogFormatError is a ValueError: a config error
        return value

    @field_validator("window")
    @classmethod
    def _window(cls, value: float) -> float:
        if value < 1:
            raise ValueError("must be at least 1s")
        return value


@dataclass
class Second:
    """One second of the log: responses by class, clients, clients that got a 5xx."""

    counts: list[int] = field(default_factory=lambda: [0, 0, 0, 0, 0])
    clients: set[bytes] = field(default_factory=set)
    failed: set[bytes] = field(default_factory=set)
    slow: set[bytes] = field(default_factory=set)  # clients that got a slow response
    # When the earliest slow response of this second began (epoch second): see
    # `_slow_began`.
    slow_began: int | None = None
    # In the window of a failing verdict: kept out of the history, so that an incident's
    # errors do not make the next one look like noise.
    failing: bool = False


@dataclass
class Tail(Position):
    """Where one log is read (its `Position`), and what the window holds."""

    log_format: str = ""
    lines_total: int = 0
    malformed_lines: int = 0
    untimed_lines: int = 0
    # Lines whose duration nginx could not have written (`odd_durations`): still read,
    # their duration unknown.
    odd_durations: int = 0
    # The recorder's own requests (probes/http.py's User-Agent): read, never counted in
    # the window's requests or clients (accesslog.OWN_AGENT).
    self_requests: int = 0
    # Every counted line with a status, by class (1xx..5xx): what nginx answered.
    responses: list[int] = field(default_factory=lambda: [0, 0, 0, 0, 0])
    baseline_rate: float | None = None
    # Seconds that left the window, summed with a fading weight (see "Sudden rise").
    history_requests: float = 0.0
    history_errors: float = 0.0
    history_second: int | None = None  # the newest second folded into the history
    history_span: float = 0.0  # the seconds the history covers, fading like its counts
    first_second: int | None = None  # the earliest second the window could hold
    latest: int | None = None  # the newest second seen
    clock_offset: float | None = None  # our clock minus the log's, when lines last came
    buckets: dict[int, Second] = field(default_factory=dict)
    times: TimeCache | None = None

    def persisted(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            **self.position(),
            "log_format": self.log_format,
            "lines_total": self.lines_total,
            "malformed_lines": self.malformed_lines,
            "untimed_lines": self.untimed_lines,
            "odd_durations": self.odd_durations,
            "self_requests": self.self_requests,
            "responses": list(self.responses),
            "baseline_rate": self.baseline_rate,
            "history": [self.history_requests, self.history_errors, self.history_second],
            "history_span": self.history_span,
        }


class LogState:
    """What the probe remembers of one log between calls: its `Tail`, and the lock that
    keeps two calls for it from interleaving. The caller owns it (the scheduler keeps one
    per job); a new one is a restarted recorder, which continues from the saved state."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.key: tuple[str, str, str] | None = None  # (host, log, log format) of the tail
        self.tail: Tail | None = None


# ---- persistence ------------------------------------------------------------------------


def _restore(data: dict[str, Any]) -> Tail:
    tail = Tail()
    tail.restore_position(data)
    for name in (
        "lines_total",
        "malformed_lines",
        "untimed_lines",
        "odd_durations",
        "self_requests",
    ):
        value = data.get(name)
        if isinstance(value, int) and value >= 0:
            setattr(tail, name, value)
    responses = data.get("responses")
    if (
        isinstance(responses, list)
        and len(responses) == len(CLASSES)
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in responses)
    ):
        tail.responses = list(responses)
    tail.log_format = str(data.get("log_format") or "")
    rate = data.get("baseline_rate")
    tail.baseline_rate = float(rate) if isinstance(rate, int | float) and rate >= 0 else None
    history = data.get("history")
    if (
        isinstance(history, list)
        and len(history) == 3
        and all(isinstance(v, int | float) and v >= 0 for v in history[:2])
        and history[1] <= history[0]
        and isinstance(history[2], int)
    ):
        tail.history_requests, tail.history_errors = float(history[0]), float(history[1])
        tail.history_second = history[2]
        # Absent in a state saved before it was kept: the counts are then of an unknown
        # span, so no rate is taken from them (the saved baseline_rate still serves).
        span = data.get("history_span")
        known = isinstance(span, int | float) and math.isfinite(span) and span >= 0
        tail.history_span = float(span) if known and isinstance(span, int | float) else -1.0
    return tail


# ---- reading ----------------------------------------------------------------------------


class _Reader:
    """One call's lines of one log into its Tail: the window, the counters, the clients
    (probes/follow.py's `Sink`)."""

    def __init__(self, config: Config, fmt: LogFormat, tail: Tail) -> None:
        self.config, self.fmt, self.tail = config, fmt, tail
        # Per second of the log read by this call: the clients seen, those with a 5xx and
        # those with a slow response (the observation's `ClientHarm.seconds`, merged over
        # an incident by the engine).
        self.clients: dict[int, tuple[set[bytes], set[bytes], set[bytes]]] = {}
        # Whether lines older than the window count there too: yes when catching up after
        # a pause or re-reading after a restart (an incident open meanwhile needs them);
        # not on first sight, whose history no incident can have been counting.
        self.older_clients = True
        if tail.times is None:
            tail.times = TimeCache(fmt.time_var)
        self.times: TimeCache = tail.times

    def first_sight(self) -> None:
        self.older_clients = False

    def long_line(self, *, counted: bool) -> None:
        if counted:
            self.tail.lines_total += 1
            self.tail.malformed_lines += 1

    def add(self, chunk: bytes, *, counted: bool) -> None:
        lines = parse_chunk(self.fmt, chunk)
        seconds = self.times.many(lines.distinct_times())
        if counted:
            self.tail.lines_total += lines.lines
            self.tail.malformed_lines += lines.malformed
            responses = self.tail.responses
            for i, first in enumerate(STATUS_DIGITS):
                # Every response nginx logged, the recorder's own included: nginx's count.
                responses[i] += lines.digits.count(first) + lines.own_digits.count(first)
            self.tail.self_requests += lines.own
            self.tail.odd_durations += odd_durations(lines)
        untimed = drop_untimed(lines, seconds)
        if counted:
            self.tail.untimed_lines += untimed
        stamps = [s for s in seconds.values() if s is not None]
        if not stamps:
            return
        tail = self.tail
        newest = max(stamps)
        tail.latest = newest if tail.latest is None else max(tail.latest, newest)
        oldest_kept = tail.latest - int(self.config.window) + 1
        if tail.first_second is None:
            tail.first_second = min(stamps)
        keep = {raw: s for raw, s in seconds.items() if s is not None and s >= oldest_kept}
        times = lines.full_times()
        # Catching up after a pause, or re-reading after a restart, every line's client
        # counts (an incident open meanwhile needs them, whatever the window); on first
        # sight those of the window's lines only.
        everything = self.older_clients and len(keep) < len(stamps)
        if everything:
            pairs, failed_pairs, slow_pairs = _client_pairs(times, lines, self.config.slow)
            self.note_clients(seconds, pairs, failed_pairs, slow_pairs)
        if len(keep) < len(stamps):
            self.fold_older(times, lines.digits, seconds, oldest_kept)
        if not keep:
            return
        if len(keep) < len(seconds):
            mask = [t in keep for t in times]
            lines.keep(mask)
            times = list(compress(times, mask))
        buckets = tail.buckets
        for (raw, digit), n in Counter(zip(times, lines.digits, strict=True)).items():
            bucket = buckets.get(keep[raw])
            if bucket is None:
                bucket = buckets[keep[raw]] = Second()
            if 0x31 <= digit <= 0x35:  # b"1".."5"
                bucket.counts[digit - 0x31] += n
        for raw, began in _slow_began(times, lines, self.config.slow, keep).items():
            bucket = buckets[keep[raw]]
            if bucket.slow_began is None or began < bucket.slow_began:
                bucket.slow_began = began
        if everything:
            for raw, client in pairs:
                sec = keep.get(raw)
                if sec is not None:
                    buckets[sec].clients.add(client)
            for raw, client in failed_pairs:
                sec = keep.get(raw)
                if sec is not None:
                    buckets[sec].failed.add(client)
            for raw, client in slow_pairs:
                sec = keep.get(raw)
                if sec is not None:
                    buckets[sec].slow.add(client)
            return
        # Only the window's lines: into its buckets and this call's clients in one pass.
        pairs, failed_pairs, slow_pairs = _client_pairs(times, lines, self.config.slow)
        got = self.clients
        for raw, client in pairs:
            sec = keep[raw]
            buckets[sec].clients.add(client)
            entry = got.get(sec)
            if entry is None:
                entry = got[sec] = (set(), set(), set())
            entry[0].add(client)
        for raw, client in failed_pairs:
            sec = keep[raw]
            buckets[sec].failed.add(client)
            got[sec][1].add(client)
        for raw, client in slow_pairs:
            sec = keep[raw]
            buckets[sec].slow.add(client)
            got[sec][2].add(client)

    def note_clients(
        self,
        seconds: Mapping[bytes, int | None],
        pairs: set[tuple[bytes, bytes]],
        failed_pairs: set[tuple[bytes, bytes]],
        slow_pairs: set[tuple[bytes, bytes]],
    ) -> None:
        """The clients of the lines read, by second: what an incident longer than the
        window counts its clients from."""
        got = self.clients
        for raw, client in pairs:
            sec = seconds.get(raw)
            if sec is not None:
                entry = got.get(sec)
                if entry is None:
                    entry = got[sec] = (set(), set(), set())
                entry[0].add(client)
        for raw, client in failed_pairs:
            sec = seconds.get(raw)
            if sec is not None:
                got[sec][1].add(client)
        for raw, client in slow_pairs:
            sec = seconds.get(raw)
            if sec is not None:
                got[sec][2].add(client)

    def fold_older(
        self,
        times: list[bytes],
        digits: bytes,
        seconds: dict[bytes, int | None],
        oldest_kept: int,
    ) -> None:
        """Lines older than the window go to the history instead of being dropped: on
        first sight (or after a long pause) the log's earlier minutes are what a sudden
        rise and the rate are compared with. The window's own buckets that this chunk
        pushed out are folded with them, in order of time (`fold_into_history` passes
        over the seconds the history already holds)."""
        tail = self.tail
        older: dict[int, Second] = {}
        for (raw, digit), n in Counter(zip(times, digits, strict=True)).items():
            sec = seconds[raw]
            if sec is None or sec >= oldest_kept:
                continue
            bucket = older.get(sec)
            if bucket is None:
                bucket = older[sec] = Second()
            if 0x31 <= digit <= 0x35:  # b"1".."5"
                bucket.counts[digit - 0x31] += n
        for sec in [s for s in tail.buckets if s < oldest_kept]:
            bucket = tail.buckets.pop(sec)
            extra = older.get(sec)
            if extra is not None:
                bucket.counts = [a + b for a, b in zip(bucket.counts, extra.counts, strict=True)]
            older[sec] = bucket
        for sec in sorted(older):
            fold_into_history(tail, sec, older[sec])


Pairs = set[tuple[bytes, bytes]]


def _client_pairs(times: list[bytes], lines: Lines, slow: float) -> tuple[Pairs, Pairs, Pairs]:
    """(time, client) of every line, of the lines with a 5xx, and of those that took
    longer than `slow` seconds (none when the log has no durations)."""
    failed = lines.digits.translate(MASK_5XX)
    slow_pairs: Pairs = set()
    if lines.durations is not None:
        mask = slow_mask(lines, slow)
        slow_pairs = set(zip(compress(times, mask), compress(lines.clients, mask), strict=True))
    return (
        set(zip(times, lines.clients, strict=True)),
        set(zip(compress(times, failed), clients_with_5xx(lines), strict=True)),
        slow_pairs,
    )


def _slow_began(
    times: list[bytes], lines: Lines, above: float, seconds: Mapping[bytes, int]
) -> dict[bytes, int]:
    """By logged time, when the earliest slow response of that time began (epoch
    second): the log line's time minus the request's duration. nginx writes the line
    when the response is finished, so a response that took 10 s was hurting its user
    from 10 s before its line: that is when harm began for them, and what an incident
    counting its clients from the harm's start must reach back to (the finish time
    would start the count after the user had already waited). Rounded down, as the
    line's time is (its second, not its instant). Empty when the log has no durations."""
    if lines.durations is None:
        return {}
    began: dict[bytes, int] = {}
    # Each distinct logged value converted once, as `slow_mask` does.
    took_of = {raw: duration_seconds(raw) for raw in set(lines.durations)}
    for raw, duration, digit in zip(times, lines.durations, lines.digits, strict=True):
        took = took_of[duration]
        # A 1xx is never slow (see `slow_mask`).
        if took is None or took <= above or raw not in seconds or digit == 0x31:
            continue
        at = math.floor(seconds[raw] - took)
        if raw not in began or at < began[raw]:
            began[raw] = at
    return began


def _advance(host: Host, config: Config, fmt: LogFormat, tail: Tail) -> tuple[_Reader, int]:
    """Bring the tail up to date with the log; returns the reader (the clients read) and
    the bytes read."""
    reader = _Reader(config, fmt, tail)
    follower = Follower(host, config.log, tail, reader, config.max_catchup)
    follower.advance(rebuilding=tail.latest is None)  # the window is empty
    return reader, follower.bytes_read


# ---- the window -------------------------------------------------------------------------


def note_clock(tail: Tail, window: float, now: float) -> None:
    """After reading new lines: how far the log's clock trails ours (write delay plus
    clock skew). A newest line older than the window means the log is idle, not skewed."""
    if tail.latest is None:
        return
    lag = now - tail.latest
    tail.clock_offset = lag if lag <= window else 0.0


def window_end(tail: Tail, now: float) -> int | None:
    """The newest second of the window, in the log's time: the newest line, or, when
    the log has gone quiet, now (shifted by the log's clock offset), so old errors leave
    the window even without new traffic."""
    if tail.latest is None:
        return None
    if tail.clock_offset is None:
        return tail.latest
    return max(tail.latest, int(now - tail.clock_offset))


def window_stats(tail: Tail, window: float, now: float) -> dict[str, Any]:
    """Totals over the last `window` seconds (by the log's timestamps)."""
    counts = [0, 0, 0, 0, 0]
    clients: set[bytes] = set()
    failed: set[bytes] = set()
    slow: set[bytes] = set()
    first_5xx = last_5xx = first_slow = None
    span = int(window)
    end = window_end(tail, now)
    first: int | None = None
    if end is not None:
        start = end - span + 1
        for sec in sorted(s for s in tail.buckets if s < start):
            fold_into_history(tail, sec, tail.buckets.pop(sec))
        for sec in sorted(tail.buckets):
            b = tail.buckets[sec]
            counts = [a + n for a, n in zip(counts, b.counts, strict=True)]
            clients |= b.clients
            failed |= b.failed
            slow |= b.slow
            if b.counts[4]:
                first_5xx = sec if first_5xx is None else first_5xx
                last_5xx = sec
            if b.slow_began is not None and (first_slow is None or b.slow_began < first_slow):
                first_slow = b.slow_began
        if tail.first_second is not None:
            span = max(1, min(span, end - tail.first_second + 1))
        first = end - span + 1
    requests = sum(counts)
    return {
        "requests": requests,
        "status_classes": dict(zip(CLASSES, counts, strict=True)),
        "error_ratio": round(counts[4] / requests, 6) if requests else 0.0,
        "clients": len(clients),
        "clients_with_5xx": len(failed),
        "affected_ratio": round(len(failed) / len(clients), 6) if clients else 0.0,
        "clients_slow": len(slow),
        "first_5xx": iso(first_5xx),
        "last_5xx": iso(last_5xx),
        "first_slow": iso(first_slow),
        "rate": round(requests / span, 3),
        "window_seconds": span,
        "window_start": iso(first),
        "window_end": iso(end),
        "newest_line": iso(tail.latest),
    }


def fold_into_history(tail: Tail, second: int, bucket: Second) -> None:
    """Add a second that leaves the window to the fading history.

    A second not newer than the history's newest is already in it: a restarted recorder
    rebuilds its window from bytes it had read before, and those seconds leave the
    window again (or a late line's second, which the history had passed). The span grows
    by the seconds since the previous one folded, quiet ones included (they had no bucket
    but belong to the rate), each weighted by its own fade as the counts are; this
    second is left out of it when it is left out with its requests (`failing`)."""
    if tail.history_second is not None and second <= tail.history_second:
        return
    elapsed = 1 if tail.history_second is None else second - tail.history_second
    fade = 0.5 ** (elapsed / HISTORY_HALF_LIFE)
    tail.history_requests *= fade
    tail.history_errors *= fade
    gap = faded_seconds(elapsed)
    if bucket.failing:
        gap -= 1
    else:
        tail.history_requests += sum(bucket.counts)
        tail.history_errors += bucket.counts[4]
    if tail.history_span >= 0:  # negative: unknown (a state saved before it was kept)
        tail.history_span = tail.history_span * fade + gap
    tail.history_second = second


def faded_seconds(n: float) -> float:
    """The weight in the history of `n` consecutive seconds up to the newest: 1 for the
    newest, fading with the half-life before it."""
    return (1 - math.pow(0.5, n / HISTORY_HALF_LIFE)) / (1 - math.pow(0.5, 1 / HISTORY_HALF_LIFE))


def history_rate(tail: Tail, window: float) -> float | None:
    """Requests per second over the history, once it spans at least a window's worth of
    seconds (as faded as the counts are)."""
    if tail.history_span < faded_seconds(max(1.0, window)) * (1 - 1e-9):
        return None
    return tail.history_requests / tail.history_span


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def surprise(n: int, k: int, before_n: int, before_k: int) -> float:
    """-ln of the one-sided Fisher p-value: with `before_k` 5xx in `before_n` earlier
    requests and `k` in the `n` recent ones, how unlikely at least `k` of all the
    5xx are to fall among the recent requests by chance (hypergeometric tail). For
    k/n above the earlier share the terms fall from the k-th on; where the sum would be
    long, the binomial Chernoff bound with the pooled share, which is never larger."""
    total, bad = n + before_n, k + before_k
    top = min(n, bad)
    log_term = _log_choose(bad, k) + _log_choose(total - bad, n - k) - _log_choose(total, n)
    acc, ratio = 1.0, 1.0  # the sum, in units of the k-th term
    for i in range(k, min(top, k + 2000)):
        ratio *= (bad - i) * (n - i) / ((i + 1) * (total - bad - n + i + 1))
        acc += ratio
        if ratio < 1e-12 * acc:
            break
    else:
        if top > k + 2000:
            q, p = k / n, bad / total
            return n * (q * math.log(q / p) + (1 - q) * math.log((1 - q) / (1 - p)))
    return -(log_term + math.log(acc))


def sudden_rise(tail: Tail, end: int | None, config: Config) -> dict[str, Any] | None:
    """The most convincing recent stretch whose 5xx share rose past the threshold, or
    None (see "Sudden rise" above). Reads the window's buckets as they are."""
    if end is None:
        return None
    recent_start = end - SUDDEN_SECONDS + 1
    prior_n, prior_k = round(tail.history_requests), round(tail.history_errors)
    recent: dict[int, tuple[int, int]] = {}
    for sec, b in tail.buckets.items():
        n, k = sum(b.counts), b.counts[4]
        if sec < recent_start:
            prior_n, prior_k = prior_n + n, prior_k + k
        elif sec <= end:
            recent[sec] = (n, k)
    before = prior_k / prior_n if prior_n else None
    best: dict[str, Any] | None = None
    n = k = 0
    for seconds in range(1, SUDDEN_SECONDS + 1):
        got = recent.get(end - seconds + 1)
        if got:
            n, k = n + got[0], k + got[1]
        # Recent seconds that are not in the stretch are left out of the comparison.
        if n < config.min_requests or k / n <= config.threshold:
            continue
        if before is not None and k / n <= before:
            continue
        evidence = surprise(n, k, prior_n, prior_k)
        if evidence >= SUDDEN_EVIDENCE and (best is None or evidence > best["evidence"]):
            best = {
                "seconds": seconds,
                "requests": n,
                "errors": k,
                "error_ratio": round(k / n, 6),
                "before_ratio": round(before, 6) if before is not None else None,
                "before_requests": prior_n,
                "evidence": round(evidence, 2),
                "rate": round(n / seconds, 3),
            }
    return best


def judge(
    tail: Tail, config: Config, now: float
) -> tuple[dict[str, Any], dict[str, Any] | None, bool]:
    """The window's totals, the sudden rise if any, and whether the log fails: its 5xx
    share over the window, or a sudden rise. The seconds of a failing window are marked
    so they stay out of the history."""
    stats = window_stats(tail, config.window, now)
    sudden = sudden_rise(tail, window_end(tail, now), config)
    failing = (
        stats["requests"] >= config.min_requests and stats["error_ratio"] > config.threshold
    ) or sudden is not None
    if failing:
        for bucket in tail.buckets.values():
            bucket.failing = True
    return stats, sudden, failing


def probe(host: Host, config: Config, state: LogState | None = None) -> Observation:
    """The 5xx share and affected clients of `config.log` on `host`. `state`: what earlier
    calls learned of the log (the scheduler's job keeps one); without it, a one-off call
    that continues from the state saved under `state_dir`, if any."""
    start = time.perf_counter()
    obs = _check(host, config, state if state is not None else LogState())
    return replace(obs, duration=time.perf_counter() - start)


def _check(host: Host, config: Config, state: LogState) -> Observation:
    try:
        fmt = compile_format(config.log_format, config.log_escape)
    except LogFormatError as exc:
        return error_observation(host, NAME, exc)
    if not state.lock.acquire(timeout=LOCK_WAIT):
        return error_observation(
            host, NAME, HostUnreachable(f"a previous read of {config.log} is still running")
        )
    try:
        obs = _locked_check(host, config, fmt, state)
    finally:
        state.lock.release()
    if obs.status is not Status.FAIL or not _nginx_running(host, config.pid_file):
        return obs
    # The file of the server blocks writing this log: where a task says to change the log
    # format or add a limit. Only on a failure (it runs nginx -T, cached and bounded
    # short), and outside the log's lock: the next call never waits on it.
    files = serving_files(
        host, log=config.log, nginx=config.nginx, conf=config.conf, prefix=config.prefix
    )
    return replace(obs, facts=replace(obs.facts, subjects=Subjects(file=files)))


def _nginx_running(host: Host, pid_file: str) -> bool:
    """Whether the pid file names a pid (nginx likely up); cheap: one small read."""
    try:
        return host.read_text(pid_file, limit=64).strip().isdigit()
    except (HostUnreachable, OSError):
        return False


def _locked_check(host: Host, config: Config, fmt: LogFormat, state: LogState) -> Observation:
    path = state_path(config.state_dir, host.name, config.log) if config.state_dir else None
    key = (host.name, config.log, fmt.text)
    tail = state.tail
    if tail is None or state.key != key:
        saved = load_state(path) if path else None
        tail = _restore(saved) if saved and saved.get("log_format") == fmt.text else Tail()
        tail.log_format = fmt.text
        state.tail, state.key = tail, key
    lines_before = tail.lines_total
    try:
        reader, bytes_read = _advance(host, config, fmt, tail)
    except FileNotFoundError:
        obs = error_observation(
            host, NAME, FileNotFoundError(2, f"access log {config.log} missing", config.log)
        )
        obs.details.update(_counters(tail))
        return replace(obs, facts=replace(obs.facts, counters=_log_counters(tail)))
    except (HostUnreachable, OSError) as exc:
        return error_observation(host, NAME, exc)
    now = clock()
    if tail.lines_total > lines_before or tail.clock_offset is None:
        note_clock(tail, config.window, now)
    stats, sudden, failing = judge(tail, config, now)
    timed = fmt.duration is not None  # the log says how long each request took
    if not timed:
        stats["clients_slow"] = None  # unknown, not none
    baseline = tail.baseline_rate
    baseline_from = "calls"
    if baseline is None:
        baseline = history_rate(tail, config.window)
        baseline_from = "history"
    if baseline is not None and baseline * config.window < config.min_requests:
        # Fewer than min_requests a window is a site that was (nearly) idle: the mean of
        # an idle site decays toward 0, and any traffic was then "10^35 times the
        # baseline", so a backend failing under its first users was named capacity. Too
        # little traffic to judge a window is too little to learn a rate from: no
        # baseline, as before any call, and a failing window is http-5xx.
        baseline = None
    # A spike shows in the recent stretch before it lifts the whole window's rate.
    rate = max(float(stats["rate"]), float(sudden["rate"]) if sudden else 0.0)
    capacity = (
        failing
        and baseline is not None
        and baseline > 0
        and rate > config.capacity_factor * baseline
    )
    if not failing:
        window_rate = float(stats["rate"])
        tail.baseline_rate = (
            window_rate
            if tail.baseline_rate is None
            else tail.baseline_rate + BASELINE_WEIGHT * (window_rate - tail.baseline_rate)
        )
    details: dict[str, Any] = {
        "log": config.log,
        **stats,
        "baseline_rate": round(baseline, 3) if baseline is not None else None,
        "baseline_from": baseline_from if baseline is not None else None,
        "threshold": config.threshold,
        "slow_above": config.slow if timed else None,
        "sudden": sudden,
        **_counters(tail),
        "bytes_read": bytes_read,
        "offset": tail.offset,
        "log_format": fmt.name,
    }
    if path:
        try:
            save_state(path, tail.persisted())
        except OSError as exc:
            details["state_error"] = f"cannot save offset to {path}: {exc.strerror or exc}"
    summary = _summary(stats, config)
    if sudden:
        summary += (
            f"; {sudden['errors']:,} of {sudden['requests']:,} requests in the last"
            f" {sudden['seconds']}s were 5xx ({sudden['error_ratio']:.1%}"
            + (
                f", {sudden['before_ratio']:.1%} before)"
                if sudden["before_ratio"] is not None
                else ")"
            )
        )
    terms: dict[str, str] = {}
    if capacity:
        assert baseline is not None
        # The ranking's `rate:above-baseline`, decided here with this probe's own factor.
        terms[ABOVE_BASELINE] = f"{rate:.1f} requests/s against a baseline of {baseline:.1f}/s"
    facts = Facts(
        counters=_log_counters(tail),
        error_ratio=stats["error_ratio"],
        first_5xx=_moment(stats["first_5xx"]),
        first_slow=_moment(stats["first_slow"]),
        clients=ClientHarm(
            clients=stats["clients"],
            hurt=stats["clients_with_5xx"],
            window_start=_moment(stats["window_start"]),
            window_end=_moment(stats["window_end"]),
            seconds=_client_seconds(reader.clients, timed),
            slow=stats["clients_slow"],
            slow_above=config.slow if timed else None,
        ),
        terms=terms,
    )
    if not failing:
        return Observation(
            host=host.name,
            probe=NAME,
            status=Status.OK,
            summary=summary,
            details=details,
            facts=facts,
        )
    if capacity:
        assert baseline is not None
        summary += (
            f"; {rate:.1f} req/s is {rate / baseline:.1f}x"
            f" the baseline of {baseline:.1f} req/s"
            + (" (the log's earlier rate)" if baseline_from == "history" else "")
        )
    return Observation(
        host=host.name,
        probe=NAME,
        status=Status.FAIL,
        fault=Fault.CAPACITY if capacity else Fault.HTTP_5XX,
        summary=summary,
        details=details,
        facts=facts,
    )


def _client_seconds(
    read: dict[int, tuple[set[bytes], set[bytes], set[bytes]]], timed: bool
) -> tuple[ClientSecond, ...]:
    """The clients read, per second, as sketches of hashed addresses (those with a slow
    response only when the log says how long requests took: `timed`)."""
    ids: dict[bytes, int] = {}

    def id_of(client: bytes) -> int:
        found = ids.get(client)
        if found is None:
            found = ids[client] = client_id(client)
        return found

    return tuple(
        ClientSecond(
            sec,
            ClientSketch(map(id_of, seen)),
            ClientSketch(map(id_of, hurt)),
            ClientSketch(map(id_of, slow)) if timed else None,
        )
        for sec, (seen, hurt, slow) in sorted(read.items())
    )


def _moment(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:  # not a moment `iso` writes: none to tell
        return None


def _log_counters(tail: Tail) -> LogCounters:
    r = tail.responses
    return LogCounters(
        lines=tail.lines_total, rotations=tail.rotations, responses=(r[0], r[1], r[2], r[3], r[4])
    )


def _counters(tail: Tail) -> dict[str, Any]:
    return {
        "lines_total": tail.lines_total,
        "malformed_lines": tail.malformed_lines,
        "untimed_lines": tail.untimed_lines,
        "odd_durations": tail.odd_durations,
        "self_requests": tail.self_requests,
        "rotations": tail.rotations,
        "skipped_bytes": tail.skipped_bytes,
    }


def _summary(stats: dict[str, Any], config: Config) -> str:
    window = f"{config.window:g}s"
    requests = stats["requests"]
    if not requests:
        return f"no requests in the last {window} of the log"
    text = (
        f"{stats['error_ratio']:.1%} of {requests:,} requests were 5xx in the last {window};"
        f" {stats['clients_with_5xx']:,} of {stats['clients']:,} clients got at least one"
    )
    if stats["clients_slow"]:
        text += f"; {stats['clients_slow']:,} got a response slower than {config.slow:g}s"
    if requests < config.min_requests:
        text += f" (fewer than {config.min_requests} requests: not judged)"
    return text
