"""`recorder logscan` over plain and gzipped logs, against a reference computed here with
shlex (a different parser from the reader's), plus time ranges and the text output."""

from __future__ import annotations

import gzip
import json
import random
import shlex
import socket
import subprocess
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from probes.accesslog import MAX_LINE
from recorder import logscan
from recorder.cli import main
from recorder.logscan import format_text, parse_time, scan

T0 = datetime(2026, 11, 23, 11, 0, 0, tzinfo=UTC)
EAT = ZoneInfo("Africa/Nairobi")


def make_lines(n: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    agents = ['Mozilla/5.0 (X11; \\"Linux\\")', "curl/8.5", 'a \\"b\\" c']
    out = []
    for i in range(n):
        if rnd.random() < 0.03:
            out.append(rnd.choice(["garbage", "", "half a line [23/Nov"]))
            continue
        client = rnd.choice([f"10.0.0.{rnd.randrange(60)}", f"2001:db8::{rnd.randrange(30):x}"])
        when = (T0 + timedelta(seconds=i // 4)).astimezone(timezone(timedelta(hours=3)))
        status = rnd.choice([200, 200, 200, 304, 404, 500, 502])
        out.append(
            f'{client} - - [{when.strftime("%d/%b/%Y:%H:%M:%S %z")}] "GET /p?{i} HTTP/1.1" '
            f'{status} {rnd.randrange(9999)} "-" "{rnd.choice(agents)}"'
        )
    return out


def reference(
    lines: list[str], lo: datetime | None = None, hi: datetime | None = None
) -> dict[str, Any]:
    classes = dict.fromkeys(["1xx", "2xx", "3xx", "4xx", "5xx"], 0)
    clients: set[str] = set()
    failed: set[str] = set()
    times_5xx: list[datetime] = []
    malformed = 0
    for text in lines:
        try:
            tok = shlex.split(text)
        except ValueError:
            tok = []
        ok = (
            len(tok) == 10
            and tok[1] == "-"
            and tok[3].startswith("[")
            and tok[4].endswith("]")
            and tok[6].isdigit()
            and len(tok[6]) == 3
        )
        if not ok:
            malformed += 1
            continue
        when = datetime.strptime(f"{tok[3][1:]} {tok[4][:-1]}", "%d/%b/%Y:%H:%M:%S %z")
        if (lo and when < lo) or (hi and when >= hi):
            continue
        classes[f"{tok[6][0]}xx"] += 1
        clients.add(tok[0])
        if tok[6][0] == "5":
            failed.add(tok[0])
            times_5xx.append(when)
    requests = sum(classes.values())
    return {
        "requests": requests,
        "status_classes": classes,
        "clients": len(clients),
        "clients_with_5xx": len(failed),
        "malformed_lines": malformed,
        "first_5xx": min(times_5xx).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "last_5xx": max(times_5xx).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "error_ratio": round(classes["5xx"] / requests, 6),
        "affected_ratio": round(len(failed) / len(clients), 6),
    }


def subset(summary: dict[str, Any], like: dict[str, Any]) -> dict[str, Any]:
    return {k: summary[k] for k in like}


@pytest.fixture
def logs(tmp_path: Path) -> tuple[list[str], list[str]]:
    """Two files: today's plain log (no newline at the end) and yesterday's gzipped."""
    first, second = make_lines(2500, 1), make_lines(3000, 2)
    old = tmp_path / "access.log.2.gz"
    with gzip.open(old, "wt", encoding="utf-8") as f:
        f.write("\n".join(first) + "\n")
    current = tmp_path / "access.log"
    current.write_text("\n".join(second))  # the last line has no newline yet
    return [str(old), str(current)], first + second


def test_counts_equal_the_reference(logs: tuple[list[str], list[str]]) -> None:
    paths, lines = logs
    summary = scan(paths, None, None)
    expected = reference(lines)
    assert subset(summary, expected) == expected
    assert summary["lines"] == len(lines)
    assert [f["compressed"] for f in summary["files"]] == [True, False]
    assert sum(f["lines"] for f in summary["files"]) == len(lines)
    assert summary["log_format"] == "combined"
    json.dumps(summary)


def test_time_range(logs: tuple[list[str], list[str]]) -> None:
    paths, lines = logs
    lo = T0 + timedelta(minutes=2)
    hi = T0 + timedelta(minutes=5)
    summary = scan(paths, lo, hi)
    expected = reference(lines, lo, hi)
    assert subset(summary, expected) == expected
    assert (
        summary["out_of_range_lines"]
        == summary["lines"] - summary["malformed_lines"] - summary["requests"]
    )
    assert summary["since"] == "2026-11-23T11:02:00+00:00"


def test_gzip_is_told_by_content_not_name(tmp_path: Path) -> None:
    lines = make_lines(100, 3)
    disguised = tmp_path / "access.log"
    disguised.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    plain = tmp_path / "plain.gz"
    plain.write_text("\n".join(lines) + "\n")
    a, b = scan([str(disguised)]), scan([str(plain)])
    assert a["requests"] == b["requests"] == reference(lines)["requests"]


def test_damaged_gzip_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.gz"
    bad.write_bytes(gzip.compress(b"1.2.3.4 - - x\n" * 100)[:40])
    with pytest.raises(ValueError, match="damaged gzip"):
        scan([str(bad)])


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        scan([str(tmp_path / "nope.log")])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-23 14:30", datetime(2026, 11, 23, 11, 30, tzinfo=UTC)),
        ("2026-11-23T14:30:05", datetime(2026, 11, 23, 11, 30, 5, tzinfo=UTC)),
        ("2026-11-23", datetime(2026, 11, 22, 21, 0, tzinfo=UTC)),
        ("2026-11-23T14:30:00+01:00", datetime(2026, 11, 23, 13, 30, tzinfo=UTC)),
        ("2026-11-23T14:30:00Z", datetime(2026, 11, 23, 14, 30, tzinfo=UTC)),
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    assert parse_time(text, EAT) == expected


@pytest.mark.parametrize("text", ["yesterday", "14:30", "2026-13-01 10:00", ""])
def test_parse_time_rejects_with_a_hint(text: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM-DD HH:MM"):
        parse_time(text, EAT)


def test_format_text_shows_counts_and_zone(logs: tuple[list[str], list[str]]) -> None:
    paths, _ = logs
    summary = scan(paths, None, None)
    text = format_text(summary, EAT)
    assert f"requests:   {summary['requests']:,}" in text
    assert "EAT" in text
    assert f"{summary['clients_with_5xx']:,} got at least one 5xx" in text
    assert "\n" in text and not text.endswith("\n")


def test_cli_json(logs: tuple[list[str], list[str]]) -> None:
    paths, lines = logs
    result = CliRunner().invoke(main, ["logscan", *paths, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # stderr warns: 3% of these lines are malformed
    for key in (
        "requests",
        "status_classes",
        "error_ratio",
        "clients",
        "clients_with_5xx",
        "affected_ratio",
        "first_5xx",
        "last_5xx",
        "malformed_lines",
    ):
        assert key in data
    assert data["requests"] == reference(lines)["requests"]


def test_chunk_boundaries_do_not_matter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = make_lines(700, 4)
    path = tmp_path / "access.log"
    path.write_text("\n".join(lines) + "\n")
    whole = scan([str(path)])
    monkeypatch.setattr(logscan, "CHUNK", 777)  # lines cut across reads everywhere
    assert scan([str(path)]) == whole


HEAVY = ("pydantic", "requests", "yaml", "recorder.config", "recorder.lab.core")


@pytest.mark.parametrize(
    "argv",
    [
        ["logscan", "{log}", "--json"],
        ["lint", "{log}"],
        ["logscan", "--help"],
    ],
)
def test_commands_that_read_no_config_import_no_config_or_lab(
    tmp_path: Path, argv: list[str]
) -> None:
    """Start-up was 0.7 s when every command imported pydantic, every probe and the lab.
    In a fresh interpreter, as the console script runs it. (The commands that read the
    config reach it through the CLI in test_config.py.)"""
    log = tmp_path / "access.log"
    log.write_text("\n".join(make_lines(50, seed=5)) + "\n")
    code = (
        "import sys\n"
        "from recorder.cli import main\n"
        "try:\n"
        f"    main({[a.format(log=log) for a in argv]!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print('loaded:', [m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "loaded: []" in run.stderr, run.stderr[-2000:]


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_an_over_long_line_counts_once_and_memory_stays_small(
    tmp_path: Path, compress: bool
) -> None:
    """A 'line' of 40 MiB without a newline (not something nginx writes) is one malformed
    line: it is not held whole, and the lines around it count as usual."""
    good = b'10.0.0.1 - - [23/Nov/2026:14:30:05 +0300] "GET / HTTP/1.1" 503 1 "-" "-"\n'
    body = good * 3 + b"x" * (40 << 20) + b"\n" + good * 2 + b"y" * (MAX_LINE + 1)
    path = tmp_path / ("huge.log.gz" if compress else "huge.log")
    path.write_bytes(gzip.compress(body, 1) if compress else body)
    tracemalloc.start()
    try:
        result = logscan.scan([str(path)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result["requests"] == 5 and result["status_classes"]["5xx"] == 5
    assert result["lines"] == 7 and result["malformed_lines"] == 2
    assert result["files"][0]["lines"] == 7 and result["files"][0]["malformed_lines"] == 2
    assert peak < 4 * MAX_LINE, peak  # a line over MAX_LINE is never held whole


def test_a_line_just_under_the_limit_is_read(tmp_path: Path) -> None:
    assert logscan.CHUNK <= MAX_LINE  # what the long-line check relies on
    head = b'10.0.0.1 - - [23/Nov/2026:14:30:05 +0300] "GET /'
    tail = b' HTTP/1.1" 200 1 "-" "-"'
    line = head + b"a" * (MAX_LINE - len(head) - len(tail)) + tail
    assert len(line) == MAX_LINE
    path = tmp_path / "edge.log"
    path.write_bytes(line + b"\n" + line + b"\n")
    result = logscan.scan([str(path)])
    assert result["requests"] == 2 and result["malformed_lines"] == 0


# ---- reading the wrong thing ---------------------------------------------------------------

GOOD = '10.0.0.{n} - - [23/Nov/2026:14:30:05 +0300] "GET / HTTP/1.1" {status} 1 "-" "curl/8"'
# The same request in another log_format (`$remote_addr [$time_iso8601] "$request" $status`).
OTHER = '10.0.0.{n} [2026-11-23T14:30:05+03:00] "GET /\x1b[31mred HTTP/1.1" {status}'


def run_logscan(*argv: str) -> Any:
    return CliRunner().invoke(main, ["logscan", *argv])


def test_a_binary_file_is_an_error_not_an_empty_log(tmp_path: Path) -> None:
    """A real binary (the Python interpreter) read as a log: no line parses, so the
    counts mean nothing; exit 1, saying why, with a sample line fit for a terminal."""
    path = tmp_path / "python.bin"
    path.write_bytes(Path(sys.executable).read_bytes()[:300_000])
    result = run_logscan(str(path))
    assert result.exit_code == 1, result.output
    assert "no line of the file parsed" in result.stderr
    assert "--format" in result.stderr and "likely cause" in result.stderr
    sample = result.stderr.split("first malformed line: ", 1)[1]
    assert sample[0] in "'\"" and not any(
        ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in sample.strip()
    )
    assert "requests:   0" in result.stdout  # the summary is still printed


def test_a_log_in_another_format_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_text("\n".join(OTHER.format(n=i, status=200) for i in range(30)) + "\n")
    result = run_logscan(str(path), "--json")
    assert result.exit_code == 1
    assert "no line of the file parsed (30 lines)" in result.stderr
    assert json.loads(result.stdout)["malformed_lines"] == 30
    # Read with the format it was written with, it is fine.
    fmt = '$remote_addr [$time_iso8601] "$request" $status'
    result = run_logscan(str(path), "--format", fmt)
    assert result.exit_code == 0 and result.stderr == ""


def test_a_mixed_file_warns_with_a_sample_and_the_likely_cause(tmp_path: Path) -> None:
    """A third of the lines in another format: counted as before, exit 0, a warning on
    stderr naming the share, the first such line (its escape byte dropped), the cause."""
    lines = []
    for i in range(90):
        template = OTHER if i % 3 == 2 else GOOD
        lines.append(template.format(n=i, status=500 if i % 2 else 200))
    path = tmp_path / "access.log"
    path.write_text("\n".join(lines) + "\n")
    result = run_logscan(str(path), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["requests"] == 60 and data["malformed_lines"] == 30
    assert data["malformed_sample"] == OTHER.format(n=2, status=200).replace("\x1b", "")
    warning = result.stderr
    assert warning.startswith("recorder: warning: 30 of 90 lines (33.3%) did not parse")
    assert "likely cause: the log was not written with the log format combined" in warning
    assert "GET /[31mred" in warning and "\x1b" not in warning
    assert warning.count("\n") == 1


def test_a_few_malformed_lines_are_no_warning(tmp_path: Path) -> None:
    lines = [GOOD.format(n=i % 50, status=200) for i in range(200)] + ["half a line [23/Nov"]
    path = tmp_path / "access.log"
    path.write_text("\n".join(lines) + "\n")
    result = run_logscan(str(path))
    assert result.exit_code == 0 and result.stderr == ""  # 1 of 201: under 1%
    path.write_text("\n".join(lines[:50]) + "\nhalf a line [23/Nov\n")
    result = run_logscan(str(path))
    assert result.exit_code == 0 and "1 of 51 lines (2.0%) did not parse" in result.stderr


def test_an_empty_file_is_no_error(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_bytes(b"")
    result = run_logscan(str(path))
    assert result.exit_code == 0 and result.stderr == ""


@pytest.mark.parametrize(
    ("since", "until"),
    [("2026-11-23 15:00", "2026-11-23 14:00"), ("2026-11-23 14:00", "2026-11-23T14:00:00Z")],
)
def test_since_not_before_until_is_a_clear_error(tmp_path: Path, since: str, until: str) -> None:
    path = tmp_path / "access.log"
    path.write_text(GOOD.format(n=1, status=200) + "\n")
    result = run_logscan(str(path), "--since", since, "--until", until)
    assert result.exit_code == 2
    assert "is not before --until" in result.stderr and "no request can be" in result.stderr
    assert result.stdout == ""


def test_times_without_a_zone_are_the_machines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 14:30:05 +03:00 is 11:30:05 UTC. On a machine in Nairobi (+03:00) `--since 14:30`
    # keeps the line; read as UTC (the old default) it would drop it.
    path = tmp_path / "access.log"
    path.write_text(GOOD.format(n=1, status=200) + "\n")
    monkeypatch.setenv("TZ", "Africa/Nairobi")
    result = run_logscan(str(path), "--since", "2026-11-23 14:30", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["requests"] == 1
    assert summary["since"] == "2026-11-23T11:30:00+00:00"
    shown = run_logscan(str(path), "--since", "2026-11-23 14:30")
    assert "2026-11-23 14:30:00 EAT" in shown.output


def test_the_recorders_own_requests_are_counted_apart(tmp_path: Path) -> None:
    """As the error_rate probe counts them: not requests, not clients, `self_requests`
    (inside the range only)."""
    own = GOOD.format(n=250, status=503).replace('"curl/8"', '"recorder/0.1.0"')
    lines = [GOOD.format(n=i, status=200) for i in range(10)] + [own] * 4
    path = tmp_path / "access.log"
    path.write_text("\n".join(lines) + "\n")
    summary = scan([str(path)])
    assert summary["requests"] == 10 and summary["clients"] == 10
    assert summary["status_classes"]["5xx"] == 0 and summary["self_requests"] == 4
    assert summary["malformed_lines"] == 0
    assert "requests:   10 (and 4 of the recorder's own, left out)" in format_text(summary)
    outside = scan([str(path)], since=T0 + timedelta(days=1), until=T0 + timedelta(days=2))
    assert outside["self_requests"] == 0 and outside["out_of_range_lines"] == 14


# ---- escaped quotes: a real nginx writing escape=json ----------------------------------


def test_a_real_nginx_log_written_with_escape_json(tmp_path: Path) -> None:
    """nginx writes `"` in a value as `\\"` with escape=json (as `\\x22` by default): read
    with --escape json (or default) every line counts; with --escape none the lines whose
    request or agent held a quote are malformed, and logscan says so."""
    from tests.nginx_fixture import NGINX, NginxHost

    if not Path(NGINX).exists():
        pytest.skip("nginx is not installed")
    host = NginxHost(tmp_path / "root")
    json_log = host.real("/var/log/nginx/json.log")
    conf = host.main_conf().replace(
        "http {\n",
        "http {\n    log_format cj escape=json '$remote_addr - $remote_user [$time_local]"
        ' "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"\';\n'
        f"    access_log {json_log} cj;\n",
    )
    host.write("/etc/nginx/nginx.conf", conf)
    host.start()
    try:
        for path, agent in [("/", "plain"), ('/q"uote', 'a "quoted" agent\\'), ("/broken", "x")]:
            with socket.create_connection(("127.0.0.1", host.port), timeout=5) as conn:
                conn.sendall(
                    f"GET {path} HTTP/1.1\r\nHost: a\r\nUser-Agent: {agent}\r\n"
                    "Connection: close\r\n\r\n".encode()
                )
                while conn.recv(4096):
                    pass
        time.sleep(0.2)  # nginx writes the line just after its response
    finally:
        host.stop()
    written = Path(json_log).read_bytes()
    assert b'\\"quoted\\" agent\\\\"' in written and b'/q\\"uote' in written
    for escape in ("json", "default"):
        result = CliRunner().invoke(main, ["logscan", json_log, "--escape", escape, "--json"])
        assert result.exit_code == 0 and result.stderr == "", result.output
        data = json.loads(result.stdout)
        assert data["requests"] == 3 and data["malformed_lines"] == 0
        assert data["status_classes"]["5xx"] == 1 and data["log_escape"] == escape
    result = CliRunner().invoke(main, ["logscan", json_log, "--escape", "none", "--json"])
    assert json.loads(result.stdout)["malformed_lines"] == 1
    assert "1 of 3 lines (33.3%) did not parse" in result.stderr
    default_log = host.real("/var/log/nginx/access.log")  # escape=default: `\x22`
    assert b"\\x22" in Path(default_log).read_bytes()
    for escape in ("default", "none"):
        data = scan([default_log], log_escape=escape)
        assert data["requests"] == 3 and data["malformed_lines"] == 0
