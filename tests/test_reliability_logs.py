"""Access logs as they are in the wild: truncated, binary, very long, non-UTF-8 lines,
escaped quotes, IPv6 clients, through the log reader (property tests) and the error_rate
probe (real files); rotation by rename-and-create, copytruncate, and delete-and-recreate
while traffic is written; a log that stops growing. Every line is counted; a bad one is
counted and skipped, never a crash.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probes.accesslog import compile_format, parse_chunk
from probes.base import Observation, Status
from probes.error_rate import Config as ErrorRateConfig
from probes.error_rate import LogState
from probes.error_rate import probe as error_rate
from recorder.hosts.local import LocalHost

FAST = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
COMBINED = compile_format(None)


def stamp(at: datetime | None = None) -> str:
    return (at or datetime.now(UTC)).strftime("%d/%b/%Y:%H:%M:%S +0000")


def line(
    client: str = "203.0.113.7",
    status: int = 200,
    at: str | None = None,
    request: str = "GET / HTTP/1.1",
    agent: str = "curl/8.0",
) -> bytes:
    """A combined-format line as nginx writes it (a `"` inside a value is `\\x22`)."""
    text = f'{client} - - [{at or stamp()}] "{request}" {status} 612 "-" "{agent}"'
    return text.encode("utf-8", "surrogateescape")


# ---- the reader, fuzzed --------------------------------------------------------------------

IPV4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
IPV6 = st.lists(st.integers(0, 0xFFFF), min_size=8, max_size=8).map(
    lambda parts: ":".join(f"{p:x}" for p in parts)
)
CLIENTS = st.one_of(IPV4, IPV6, st.sampled_from(["::1", "fe80::1%eth0", "2001:db8::42"]))
SAFE_TEXT = st.text(
    alphabet=st.characters(exclude_characters='"\n\r', exclude_categories=["Cs"]),
    max_size=60,
)


@st.composite
def valid_lines(draw: st.DrawFn) -> tuple[bytes, bytes, int]:
    """(line, client, status) for a line nginx could have written."""
    client = draw(CLIENTS)
    status = draw(st.integers(100, 599))
    request = draw(SAFE_TEXT).replace("\\", "\\x5C") + " \\x22quoted\\x22"
    agent = draw(SAFE_TEXT) + draw(st.sampled_from(["", "\\x22", "é", "\\xFF"]))
    return line(client, status, request=request, agent=agent), client.encode(), status


BROKEN = st.one_of(
    st.binary(max_size=80).filter(lambda b: b"\n" not in b),
    st.sampled_from(
        [
            b"",
            b"\x00\x00\x00",
            b"\xff\xfe\xfd garbage",
            b'203.0.113.7 - - [not a time at all here!!!!!] "GET /" 200 1 "-" "-"',
            b"203.0.113.7 - - [",
            b"- - - - - - -",
            b"\r",
        ]
    ),
)


@FAST
@given(
    rows=st.lists(
        st.one_of(
            valid_lines().map(lambda v: ("valid", v)),
            BROKEN.map(lambda b: ("broken", (b, b"", 0))),
            valid_lines().map(lambda v: ("cut", v)),
        ),
        max_size=150,
    ),
    cuts=st.lists(st.integers(1, 60), min_size=150, max_size=150),
)
def test_any_mix_of_lines_is_counted_and_bad_ones_skipped(
    rows: list[tuple[str, tuple[bytes, bytes, int]]], cuts: list[int]
) -> None:
    lines: list[bytes] = []
    for (kind, (text, _, _)), cut in zip(rows, cuts, strict=False):
        # A cut line ends inside its first 60 bytes: before the status, always broken.
        lines.append(text[:cut] if kind == "cut" else text)
    parsed = parse_chunk(COMBINED, b"\n" + b"\n".join(lines)) if lines else None
    if parsed is None:
        return
    valid = [v for kind, v in rows if kind == "valid"]
    assert parsed.lines == len(lines)
    assert parsed.matched + parsed.malformed == len(lines)
    # Every line nginx could have written is read; the rest may match only by chance
    # (random bytes that look like a line), never the other way round.
    assert parsed.matched >= len(valid)
    got = sorted(zip(parsed.clients, parsed.digits, strict=True))
    for _, client, status in valid:
        assert (client, str(status)[0].encode()[0]) in got


def test_hand_written_hostile_lines_in_one_chunk() -> None:
    lines = [
        line("2001:db8::1", 503),
        line("::ffff:192.0.2.1", 200, agent="Mozilla \\x22quoted\\x22 \\xC3\\xA9"),
        line("198.51.100.1", 500, agent="a" * 1_000_000),  # a 1 MB user agent
        b"x" * 1_000_000,  # a 1 MB line of nothing
        line("198.51.100.2", 200)[:40],  # truncated mid-write
        bytes(range(256)).replace(b"\n", b""),  # binary
        '203.0.113.9 - - [é] "GET /" 200 1 "-" "-"'.encode("latin-1"),  # not UTF-8
        line("198.51.100.3", 404, request='GET /"raw"quote HTTP/1.1'),  # not nginx's escaping
        b"",
    ]
    parsed = parse_chunk(COMBINED, b"\n" + b"\n".join(lines))
    assert parsed.lines == len(lines)
    assert parsed.clients[:3] == [b"2001:db8::1", b"::ffff:192.0.2.1", b"198.51.100.1"]
    assert parsed.digits[:3] == b"525"
    assert parsed.malformed >= 4


# ---- the probe over real files -------------------------------------------------------------


def _probe(host: LocalHost, log: Path, state: Path | None = None) -> Observation:
    config = ErrorRateConfig(
        log=str(log), window=60.0, threshold=0.5, state_dir=str(state) if state else None
    )
    # What the probe's scheduler job keeps between runs: one per host (a host per test).
    memory = _memory.setdefault(host.name, LogState())
    return error_rate(host, config, memory)


_memory: dict[str, LogState] = {}


def _host() -> LocalHost:
    return LocalHost(f"logs-{uuid.uuid4().hex[:8]}")


def test_hostile_log_file_counts_every_line(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    host = _host()
    log.write_bytes(b"")
    assert _probe(host, log).status is Status.OK
    good = [line(f"2001:db8::{i:x}", 200 if i % 4 else 503) for i in range(40)]
    bad = [
        b"x" * 1_000_000,
        b"\xff\xfe\x00\x01 binary",
        line()[:30],
        b"\x00" * 100,
        'caf\xe9 - - [x] "GET /" 200 1'.encode("latin-1"),
    ]
    with open(log, "ab") as f:
        for i, text in enumerate(good):
            f.write(text + b"\n")
            if i < len(bad):
                f.write(bad[i] + b"\n")
        f.write(line("192.0.2.99")[:25])  # a partial last line: nginx mid-write
    obs = _probe(host, log)
    assert obs.status is not Status.ERROR, obs.summary
    d = obs.details
    assert d["lines_total"] == len(good) + len(bad), d
    assert d["malformed_lines"] + d.get("untimed_lines", 0) == len(bad), d
    assert d["requests"] == len(good)
    assert d["clients"] == len(good)  # IPv6 clients, each distinct
    assert d["status_classes"]["5xx"] == 10
    # The partial line is counted once it is complete.
    with open(log, "ab") as f:
        f.write(line("192.0.2.99")[25:] + b"\n")
    assert _probe(host, log).details["lines_total"] == len(good) + len(bad) + 1


def test_a_line_longer_than_a_read_is_counted_as_malformed(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    host = _host()
    log.write_bytes(line() + b"\n")  # known (not empty) before the long line comes
    assert _probe(host, log).details["lines_total"] == 1
    with open(log, "ab") as f:
        f.write(b"z" * (9 << 20) + b"\n" + line() + b"\n")
    d = _probe(host, log).details
    assert (d["lines_total"], d["malformed_lines"], d["requests"]) == (3, 1, 2), d


# ---- rotation while traffic is written ---------------------------------------------------------


@dataclass
class Traffic:
    """A writer appending access-log lines at a steady pace, as nginx does; rotations are
    done under its lock, the way nginx's reopen (USR1) orders them with its writes."""

    log: Path
    written: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.handle = open(self.log, "ab", buffering=0)  # noqa: SIM115 (closed in close())
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self.stop.wait(0.002):
            with self.lock:
                # A few lines at a time, 5xx now and then, distinct clients.
                batch = b"".join(
                    line(
                        f"10.{(i + k) // 65536 % 256}.{(i + k) // 256 % 256}.{(i + k) % 256}",
                        503 if (i + k) % 10 == 0 else 200,
                    )
                    + b"\n"
                    for k in range(3)
                )
                self.handle.write(batch)
                self.written += 3
                i += 3

    def reopen(self) -> None:
        self.handle.close()
        self.handle = open(self.log, "ab", buffering=0)  # noqa: SIM115

    def close(self) -> None:
        self.stop.set()
        if self.thread.ident is not None:
            self.thread.join(5)
        self.handle.close()


def rotate(traffic: Traffic, how: str) -> None:
    log = traffic.log
    with traffic.lock:
        if how == "rename-and-create":
            os.replace(log, log.with_name(log.name + ".1"))
            traffic.reopen()  # nginx reopens on USR1: the new file is created
        elif how == "copytruncate":
            shutil.copyfile(log, log.with_name(log.name + ".1"))
            os.truncate(log, 0)  # nginx keeps writing through the same descriptor
        elif how == "delete-and-recreate":
            log.unlink()
            traffic.reopen()
        else:
            raise ValueError(how)


@pytest.fixture
def traffic(tmp_path: Path) -> Iterator[Traffic]:
    log = tmp_path / "access.log"
    log.write_bytes(b"")
    t = Traffic(log)
    yield t
    t.close()


@pytest.mark.parametrize("how", ["rename-and-create", "copytruncate"])
def test_rotation_while_traffic_runs_loses_no_line(
    traffic: Traffic, how: str, tmp_path: Path
) -> None:
    host = _host()
    assert _probe(host, traffic.log, tmp_path / "state").status is Status.OK
    traffic.thread.start()
    observations: list[Observation] = []
    for _ in range(4):
        for _ in range(5):
            time.sleep(0.05)
            observations.append(_probe(host, traffic.log, tmp_path / "state"))
        rotate(traffic, how)  # LOG.1 replaced each time, as logrotate's `rotate 1`
    time.sleep(0.1)
    traffic.close()
    final = _probe(host, traffic.log, tmp_path / "state")
    observations.append(final)
    assert all(o.status is not Status.ERROR for o in observations), [
        o.summary for o in observations if o.status is Status.ERROR
    ]
    assert final.details["rotations"] == 4, final.details
    assert final.details["lines_total"] == traffic.written, (
        f"{how}: counted {final.details['lines_total']} of {traffic.written} lines written"
    )
    assert final.details["malformed_lines"] == 0


def test_log_deleted_and_recreated(traffic: Traffic) -> None:
    host = _host()
    _probe(host, traffic.log)
    traffic.thread.start()
    time.sleep(0.2)
    with traffic.lock:
        # Read up to the last line written to the old file, then it is gone. The writer
        # stays paused until the new file exists: a line written to the unlinked file in
        # between would be lost for real (nginx loses those too until its reopen), and
        # `written` would count a line no reader can see.
        before = traffic.written
        assert _probe(host, traffic.log).details["lines_total"] == before
        traffic.log.unlink()
        missing = _probe(host, traffic.log)
        assert missing.status is Status.ERROR and "missing" in missing.summary, missing.summary
        traffic.reopen()
    time.sleep(0.2)
    traffic.close()
    final = _probe(host, traffic.log)
    assert final.status is not Status.ERROR, final.summary
    assert final.details["lines_total"] == traffic.written
    assert final.details["rotations"] == 1


def test_a_log_that_stops_growing(traffic: Traffic) -> None:
    host = _host()
    _probe(host, traffic.log)
    traffic.thread.start()
    time.sleep(0.3)
    traffic.close()
    first = _probe(host, traffic.log)
    assert first.details["lines_total"] == traffic.written
    for _ in range(5):
        again = _probe(host, traffic.log)
        assert again.status is first.status
        assert again.details["lines_total"] == traffic.written
        assert again.details["bytes_read"] == 0
