"""The error_rate probe tailing a log through a real LocalHost: incremental reads, both
kinds of rotation, truncation, partial and malformed lines, a missing file, restart from
the saved offset, the window, and capacity against the baseline."""

from __future__ import annotations

import json
import os
import random
import shutil
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from probes import error_rate, follow, http
from probes.base import Fault, Observation, Status
from probes.error_rate import Config
from recorder.hosts.local import LocalHost
from tests.nginx_fixture import NGINX, NginxHost

LOG = "/var/log/nginx/access.log"
T0 = datetime(2026, 11, 23, 14, 0, 0, tzinfo=UTC)


# What the probe remembers between runs, as the scheduler's job holds it.
_state: list[error_rate.LogState] = []


def forget_memory() -> None:
    """A restarted recorder: nothing in memory (the saved state remains)."""
    _state[:] = [error_rate.LogState()]


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    forget_memory()
    # The test logs are dated T0 onwards; "now" is T0, so they are never stale.
    monkeypatch.setattr(error_rate, "clock", T0.timestamp)
    yield
    _state.clear()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root/var/log/nginx").mkdir(parents=True)
    return tmp_path / "root"


def line(client: str, status: int, second: int = 0, agent: str = 'curl \\"x\\" y') -> str:
    when = (T0 + timedelta(seconds=second)).strftime("%d/%b/%Y:%H:%M:%S +0000")
    return f'{client} - - [{when}] "GET / HTTP/1.1" {status} 5 "-" "{agent}"\n'


def append(root: Path, text: str, path: str = LOG) -> None:
    with open(f"{root}{path}", "a", encoding="utf-8") as f:
        f.write(text)


def cfg(root: Path, **kw: object) -> Config:
    fields: dict[str, object] = {"log": LOG, "window": "60s", "state_dir": str(root.parent / "st")}
    fields.update(kw)
    return Config.model_validate(fields)


def run(root: Path, **kw: object) -> Observation:
    return error_rate.probe(LocalHost("web-01", prefix=str(root)), cfg(root, **kw), _state[0])


def test_reads_only_new_bytes_and_counts_exactly(root: Path) -> None:
    append(root, "".join(line(f"10.0.0.{i}", 200) for i in range(20)))
    first = run(root)
    assert first.status == Status.OK
    assert first.details["lines_total"] == 20
    size = os.path.getsize(f"{root}{LOG}")
    assert first.details["offset"] == size
    append(root, line("10.0.0.99", 200, 1))
    second = run(root)
    assert second.details["lines_total"] == 21
    # Only the new line (plus the 64-byte identity check) was read.
    assert second.details["bytes_read"] <= len(line("10.0.0.99", 200, 1)) + 64
    assert second.details["requests"] == 21 and second.details["clients"] == 21


def test_partial_last_line_waits_for_its_newline(root: Path) -> None:
    full = line("10.0.0.1", 502)
    append(root, full[:30])
    assert run(root).details["lines_total"] == 0
    append(root, full[30:-1])
    assert run(root).details["lines_total"] == 0
    append(root, "\n")
    obs = run(root)
    assert obs.details["lines_total"] == 1
    assert obs.details["status_classes"]["5xx"] == 1
    assert obs.details["malformed_lines"] == 0


def test_malformed_lines_are_counted_and_skipped(root: Path) -> None:
    append(
        root, line("10.0.0.1", 200) + "garbage\n\nnot a log line at all\n" + line("10.0.0.2", 200)
    )
    obs = run(root)
    assert obs.details["lines_total"] == 5
    assert obs.details["malformed_lines"] == 3
    assert obs.details["requests"] == 2


def test_rotation_by_rename_finishes_the_old_file(root: Path) -> None:
    append(root, "".join(line(f"10.0.0.{i}", 200) for i in range(5)))
    assert run(root).details["lines_total"] == 5
    append(root, line("10.0.0.50", 500, 1))  # written after our read, before the rename
    os.rename(f"{root}{LOG}", f"{root}{LOG}.1")
    append(root, line("10.0.0.51", 200, 2) + line("10.0.0.52", 200, 2))
    obs = run(root)
    assert obs.details["rotations"] == 1
    assert obs.details["lines_total"] == 8
    assert obs.details["status_classes"]["5xx"] == 1
    assert obs.details["offset"] == os.path.getsize(f"{root}{LOG}")


def test_copytruncate_starts_again_at_zero(root: Path) -> None:
    append(root, "".join(line(f"10.0.0.{i}", 200) for i in range(10)))
    assert run(root).details["lines_total"] == 10
    with open(f"{root}{LOG}", "w", encoding="utf-8") as f:  # truncate in place
        f.write(line("10.0.1.1", 503, 3))
    obs = run(root)
    assert obs.details["rotations"] == 1
    assert obs.details["lines_total"] == 11
    assert obs.details["offset"] == os.path.getsize(f"{root}{LOG}")


def test_truncated_then_rewritten_past_the_offset_is_noticed(root: Path) -> None:
    append(root, line("10.0.0.1", 200))
    assert run(root).details["lines_total"] == 1
    with open(f"{root}{LOG}", "w", encoding="utf-8") as f:
        f.write("".join(line(f"10.9.0.{i}", 200, 4) for i in range(3)))  # longer than before
    obs = run(root)
    assert obs.details["rotations"] == 1
    assert obs.details["lines_total"] == 4


def test_missing_log_is_an_error_then_recovers(root: Path) -> None:
    obs = run(root)
    assert obs.status == Status.ERROR
    assert f"access log {LOG} missing" in obs.summary
    assert obs.facts.reason and "missing" in obs.facts.reason  # a monitoring gap's title
    assert obs.facts.counters is not None
    append(root, line("10.0.0.1", 200))
    assert run(root).details["lines_total"] == 1


def test_restart_continues_from_the_saved_offset(root: Path) -> None:
    append(root, "".join(line(f"10.0.0.{i}", 500 if i < 4 else 200) for i in range(20)))
    before = run(root)
    assert before.details["lines_total"] == 20
    state_dir = root.parent / "st" / "error_rate"
    (saved,) = state_dir.iterdir()
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert json.loads(saved.read_text())["offset"] == before.details["offset"]
    assert not [p for p in state_dir.iterdir() if p.name.startswith(".tmp")]

    forget_memory()  # a restarted recorder: nothing in memory
    append(root, line("10.0.0.77", 200, 2))
    after = run(root)
    assert after.details["lines_total"] == 21  # continued, not re-counted
    assert after.details["requests"] == 21  # but the window was rebuilt
    assert after.details["clients_with_5xx"] == 4


def test_responses_by_class_are_cumulative_facts(root: Path) -> None:
    """Every line with a status counts in its class: untimed ones and ones older than the
    window too; a malformed line counts in none. The totals survive a restart."""
    append(root, "".join(line(f"10.0.0.{i}", s) for i, s in enumerate([200, 201, 304, 404, 502])))
    append(root, line("10.0.0.9", 503, -3600))  # an hour before the window
    append(root, line("10.0.0.9", 200).replace("23/Nov", "99/Nov"))  # no usable time
    append(root, "garbage\n")
    first = run(root)
    assert first.facts.counters is not None
    assert first.facts.counters.by_class() == {"1xx": 0, "2xx": 3, "3xx": 1, "4xx": 1, "5xx": 2}
    assert first.facts.counters.lines == 8
    assert first.to_json()["facts"]["counters"]["responses"]["5xx"] == 2
    forget_memory()  # a restarted recorder continues the totals
    append(root, line("10.0.0.1", 500, 1))
    again = run(root)
    assert again.facts.counters is not None
    assert again.facts.counters.responses == (0, 3, 1, 1, 3)


def test_first_sight_reads_recent_history_only(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(follow, "FIRST_SIGHT", 1000)
    text = "".join(line(f"10.0.{i // 250}.{i % 250}", 200) for i in range(100))
    append(root, text)
    obs = run(root)
    size = len(text.encode())
    tail = text.encode()[size - 1000 :]
    expected = tail.count(b"\n") - 1  # the first, cut, line is skipped
    assert obs.details["lines_total"] == expected
    assert obs.details["malformed_lines"] == 0


def test_far_behind_skips_and_says_so(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    append(root, line("10.0.0.1", 200))
    run(root)
    big = "".join(line(f"10.1.{i // 250}.{i % 250}", 200, 1) for i in range(14000))
    append(root, big)
    obs = run(root, max_catchup=1 << 20)
    assert obs.details["skipped_bytes"] == len(big.encode()) - (1 << 20)
    assert obs.details["malformed_lines"] == 0
    assert obs.details["offset"] == os.path.getsize(f"{root}{LOG}")


def test_window_by_log_time_and_affected_clients(root: Path) -> None:
    old = "".join(line(f"10.0.9.{i}", 500, 0) for i in range(50))  # 2 minutes before
    recent = [
        line(f"10.0.0.{i % 40}", 502 if i % 10 == 0 else 200, 120 + i % 30) for i in range(200)
    ]
    append(root, old + "".join(recent))
    obs = run(root, threshold=0.05)
    d = obs.details
    assert d["requests"] == 200  # the old minute is outside the 60s window
    assert d["status_classes"]["5xx"] == 20
    assert d["clients"] == 40 and d["clients_with_5xx"] == 4
    assert d["affected_ratio"] == 0.1
    assert d["first_5xx"] == "2026-11-23T14:02:00Z"
    assert d["last_5xx"] == "2026-11-23T14:02:20Z"
    assert obs.status == Status.FAIL and obs.fault == Fault.HTTP_5XX
    # The same, stated as facts: what the engine and the metrics read.
    assert obs.facts.error_ratio == 0.1
    assert obs.facts.first_5xx == datetime(2026, 11, 23, 14, 2, tzinfo=UTC)
    assert obs.facts.clients is not None and obs.facts.clients.hurt == 4
    assert obs.summary == (
        "10.0% of 200 requests were 5xx in the last 60s; 4 of 40 clients got at least one"
    )


def test_too_few_requests_never_fail(root: Path) -> None:
    append(root, line("10.0.0.1", 500) + line("10.0.0.2", 500))
    obs = run(root, min_requests=10)
    assert obs.status == Status.OK
    assert "not judged" in obs.summary


def test_capacity_when_rate_is_far_above_baseline(root: Path) -> None:
    # Healthy traffic: 1 request per second for a minute, seen over several calls.
    for minute_part in range(3):
        append(root, "".join(line("10.0.0.1", 200, minute_part * 20 + s) for s in range(20)))
        assert run(root).status == Status.OK
    baseline = run(root).details["baseline_rate"]
    assert baseline is not None and 0 < baseline < 2
    # Then a spike: 20 requests per second, a third of them 503.
    spike = [
        line(f"10.1.0.{i % 200}", 503 if i % 3 == 0 else 200, 61 + i // 20) for i in range(1200)
    ]
    append(root, "".join(spike))
    obs = run(root)
    assert obs.status == Status.FAIL
    assert obs.fault == Fault.CAPACITY
    assert "the baseline of" in obs.summary


def test_custom_log_format(root: Path) -> None:
    fmt = '$remote_addr [$time_iso8601] "$request" $status $request_time'
    append(root, '10.0.0.1 [2026-11-23T14:00:00+00:00] "GET / HTTP/1.1" 500 0.001\n')
    obs = run(root, log_format=fmt, min_requests=1)
    assert obs.details["requests"] == 1 and obs.fault == Fault.HTTP_5XX


def test_bad_log_format_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="no \\$status"):
        Config.model_validate({"log_format": "$remote_addr [$time_local]"})


def test_random_appends_match_a_reference(root: Path) -> None:
    """Lines written in random pieces (cut anywhere), probed between pieces: the totals
    equal what was written."""
    rnd = random.Random(7)
    lines = []
    for i in range(3000):
        if rnd.random() < 0.05:
            lines.append(rnd.choice(["junk\n", "\n", 'x - - [bad] "q" 2\n']))
        else:
            lines.append(
                line(f"10.{i % 3}.0.{rnd.randrange(200)}", rnd.choice([200, 404, 502]), i // 50)
            )
    text = "".join(lines)
    pos = 0
    while pos < len(text):
        step = rnd.randrange(1, 20000)
        append(root, text[pos : pos + step])
        pos += step
        run(root)
    obs = run(root)
    assert obs.details["lines_total"] == len(lines)
    assert obs.details["malformed_lines"] == sum(1 for x in lines if not x.startswith("10."))


def test_old_errors_leave_the_window_when_the_log_goes_quiet(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    append(root, "".join(line(f"10.0.0.{i}", 500, i // 4) for i in range(40)))
    monkeypatch.setattr(error_rate, "clock", lambda: T0.timestamp() + 11)
    assert run(root).fault == Fault.HTTP_5XX
    monkeypatch.setattr(error_rate, "clock", lambda: T0.timestamp() + 45)
    assert run(root).fault == Fault.HTTP_5XX  # still within the 60s window
    monkeypatch.setattr(error_rate, "clock", lambda: T0.timestamp() + 100)
    obs = run(root)
    assert obs.status == Status.OK
    assert obs.summary == "no requests in the last 60s of the log"
    assert obs.details["newest_line"] == "2026-11-23T14:00:09Z"


def test_copytruncate_reads_the_lines_left_in_the_copy(root: Path) -> None:
    append(root, "".join(line(f"10.0.0.{i}", 200) for i in range(5)))
    assert run(root).details["lines_total"] == 5
    append(root, line("10.0.0.60", 502, 1) + line("10.0.0.61", 200, 1))  # not read yet
    with open(f"{root}{LOG}", "rb") as f:
        copy = f.read()
    with open(f"{root}{LOG}.1", "wb") as f:  # logrotate's copytruncate: copy, then truncate
        f.write(copy)
    os.truncate(f"{root}{LOG}", 0)
    append(root, line("10.0.0.62", 200, 2))
    obs = run(root)
    assert obs.details["rotations"] == 1
    assert obs.details["lines_total"] == 8
    assert obs.details["status_classes"]["5xx"] == 1


def test_an_over_long_line_counts_once(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(follow, "READ_CHUNK", 4096)
    monkeypatch.setattr(follow, "MAX_LINE", 4096)
    append(root, line("10.0.0.1", 200))
    assert run(root).details["lines_total"] == 1
    append(root, "z" * 20000)  # still being written when we look
    assert run(root).details["malformed_lines"] == 1
    append(root, "z" * 5000 + "\n" + line("10.0.0.2", 200))
    obs = run(root)
    assert (obs.details["lines_total"], obs.details["malformed_lines"]) == (3, 1)
    assert obs.details["requests"] == 2


def test_a_line_past_the_limit_is_malformed_wherever_its_newline_falls(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Well formed but 6 KB with a 4 KB limit, its newline arriving in the read that takes
    it past the limit (it was read as a request) or in a later one: malformed, once."""
    monkeypatch.setattr(follow, "READ_CHUNK", 4096)
    monkeypatch.setattr(follow, "MAX_LINE", 4096)
    assert follow.READ_CHUNK <= follow.MAX_LINE
    long_agent = line("10.0.0.9", 500, agent="a" * 6000)
    append(root, line("10.0.0.1", 200) + long_agent + line("10.0.0.2", 200))
    obs = run(root)
    assert (obs.details["lines_total"], obs.details["malformed_lines"]) == (3, 1)
    assert obs.details["requests"] == 2 and obs.details["status_classes"]["5xx"] == 0
    append(root, long_agent + long_agent[:4000])  # a second one, still being written
    run(root)
    append(root, long_agent[4000:] + line("10.0.0.3", 200))
    obs = run(root)
    assert (obs.details["lines_total"], obs.details["malformed_lines"]) == (6, 3)
    assert obs.details["requests"] == 3


# ---- sudden rise: the last seconds judged on their own ---------------------------------------


def traffic(rnd: random.Random, seconds: range, per_second: int, error_share: float) -> str:
    """`per_second` requests in each second, from 100 clients, each a 500 with
    probability `error_share`."""
    return "".join(
        line(f"10.0.1.{rnd.randrange(100)}", 500 if rnd.random() < error_share else 200, s)
        for s in seconds
        for _ in range(per_second)
    )


def test_a_partial_failure_fails_within_two_seconds(root: Path) -> None:
    """15% of requests start failing on a site that had none: the 30s window's share
    stays under 5% for several seconds, the last two seconds alone are convincing."""
    rnd = random.Random(3)
    for second in range(30):  # a healthy half-minute, probed every second
        append(root, traffic(rnd, range(second, second + 1), 20, 0.0))
        assert run(root, window="30s").status == Status.OK
    outcomes = []
    for second in range(30, 33):
        errors = [500 if i % 20 in (0, 7, 13) else 200 for i in range(20)]  # 15%
        append(root, "".join(line(f"10.0.2.{i}", s, second) for i, s in enumerate(errors)))
        outcomes.append(run(root, window="30s"))
    first_fail = next(i for i, o in enumerate(outcomes) if o.status == Status.FAIL)
    assert first_fail <= 1, [o.summary for o in outcomes]
    failed = outcomes[first_fail]
    assert failed.fault == Fault.HTTP_5XX
    assert failed.details["error_ratio"] < 0.05  # the window alone would not have failed
    sudden = failed.details["sudden"]
    assert sudden["seconds"] <= 2 and sudden["error_ratio"] == 0.15
    assert sudden["before_ratio"] == 0.0
    assert "requests in the last" in failed.summary and "were 5xx (15.0%" in failed.summary


def test_a_site_that_always_has_a_few_5xx_does_not_flap(root: Path) -> None:
    """Random 5xx at 1% and 2% (under the threshold), probed every second for five
    minutes each: the recent seconds often hold a share far above 5%, never a convincing
    one."""
    for share in (0.01, 0.02):
        forget_memory()
        rnd = random.Random(11)
        failures = []
        for second in range(300):
            append(root, traffic(rnd, range(second, second + 1), 20, share))
            obs = run(root, window="30s")
            if obs.details.get("sudden"):
                failures.append((second, obs.summary))
        assert failures == []
        os.unlink(f"{root}{LOG}")


def test_a_noisy_site_that_gets_much_worse_fails_fast(root: Path) -> None:
    rnd = random.Random(5)
    for second in range(30):
        append(root, traffic(rnd, range(second, second + 1), 20, 0.03))
        run(root, window="30s")
    failed_at = None
    for second in range(30, 34):
        append(root, traffic(rnd, range(second, second + 1), 20, 0.4))
        obs = run(root, window="30s")
        if obs.status == Status.FAIL:
            failed_at = second
            break
    assert failed_at is not None and failed_at <= 31, obs.summary
    assert obs.details["sudden"]["before_ratio"] > 0


def test_a_sudden_spike_of_503s_is_capacity(root: Path) -> None:
    rnd = random.Random(9)
    for second in range(30):
        append(root, traffic(rnd, range(second, second + 1), 10, 0.0))
        run(root, window="30s")
    spike = "".join(
        line(f"10.3.{i // 250}.{i % 250}", 503 if i % 4 == 0 else 200, 30) for i in range(200)
    )
    append(root, spike)
    obs = run(root, window="30s")
    assert obs.status == Status.FAIL and obs.fault == Fault.CAPACITY, obs.summary


# ---- the baseline before any call has passed: the log's own earlier rate -----------------


def test_first_sight_of_a_spike_is_capacity_against_the_logs_earlier_rate(root: Path) -> None:
    """What `recorder probe` sees, or a daemon started in the middle of a spike: no call
    has passed yet, but the log holds ten quiet minutes before the window."""
    rnd = random.Random(21)
    append(root, traffic(rnd, range(0, 600), 2, 0.0))  # 2 req/s for ten minutes
    spike = "".join(
        line(f"10.4.{i // 250}.{i % 250}", 503 if i % 3 == 0 else 200, 600 + i // 60)
        for i in range(1800)  # then 60 req/s for 30 s, a third 503
    )
    append(root, spike)
    obs = run(root, window="30s")
    assert obs.status == Status.FAIL and obs.fault == Fault.CAPACITY, obs.summary
    assert obs.details["baseline_from"] == "history"
    assert obs.details["baseline_rate"] == pytest.approx(2.0, rel=0.02)
    assert "the baseline of 2.0 req/s (the log's earlier rate)" in obs.summary


def test_first_sight_without_history_has_no_baseline(root: Path) -> None:
    """Only the spike is in the log: nothing to compare with, so it is not called
    capacity (it may as well be the servers breaking under ordinary traffic)."""
    spike = "".join(
        line(f"10.4.0.{i % 250}", 503 if i % 3 == 0 else 200, i // 60) for i in range(1800)
    )
    append(root, spike)
    obs = run(root, window="30s")
    assert obs.status == Status.FAIL and obs.fault == Fault.HTTP_5XX, obs.summary
    assert obs.details["baseline_rate"] is None and obs.details["baseline_from"] is None


def test_an_idle_sites_baseline_is_no_baseline(root: Path) -> None:
    """A site that was idle (its passing calls saw a request now and then) then serves its
    first users with a backend failing: 5xx, not capacity. Before, the idle mean (here
    0.07 req/s, and towards 0 the longer it idles) made any traffic "N times the
    baseline" (2.3e35x on the lab) and the outage was ranked a capacity problem."""
    for second in range(0, 120, 20):
        append(root, line("10.0.0.1", 200, second))
        assert run(root, window="30s").status == Status.OK
    for _ in range(20):  # the daemon calls every interval, idle or not
        assert run(root, window="30s").status == Status.OK
    tail = _state[0].tail
    assert tail is not None and tail.baseline_rate is not None
    assert 0 < tail.baseline_rate < 10 / 30  # the learnt mean: under min_requests a window
    rnd = random.Random(23)
    append(root, traffic(rnd, range(120, 130), 10, 0.3))  # 10 req/s, 30% 500
    obs = run(root, window="30s")
    assert obs.status == Status.FAIL and obs.fault == Fault.HTTP_5XX, obs.summary
    assert obs.details["baseline_rate"] is None and "the baseline" not in obs.summary


def test_first_sight_of_ordinary_5xx_at_the_usual_rate_is_http_5xx(root: Path) -> None:
    rnd = random.Random(22)
    append(root, traffic(rnd, range(0, 600), 5, 0.0))
    append(root, traffic(rnd, range(600, 630), 5, 0.3))  # same rate, 30% 500
    obs = run(root, window="30s")
    assert obs.status == Status.FAIL and obs.fault == Fault.HTTP_5XX, obs.summary
    assert obs.details["baseline_rate"] == pytest.approx(5.0, rel=0.02)


def test_the_history_rate_counts_quiet_seconds() -> None:
    """One request every 10 s for 20 minutes is 0.1 req/s, not 1 req/s over the seconds
    that had a line; a second left out of the history (failing) leaves its span out too."""
    tail = error_rate.Tail()
    for second in range(0, 1200, 10):
        bucket = error_rate.Second()
        bucket.counts[1] = 1
        error_rate.fold_into_history(tail, second, bucket)
    assert error_rate.history_rate(tail, 60) == pytest.approx(0.1, rel=0.01)
    assert error_rate.history_rate(error_rate.Tail(), 60) is None  # no history, no rate
    short = error_rate.Tail()
    for second in range(30):
        bucket = error_rate.Second()
        bucket.counts[1] = 5
        error_rate.fold_into_history(short, second, bucket)
    assert error_rate.history_rate(short, 60) is None  # less than a window of history
    assert error_rate.history_rate(short, 30) == pytest.approx(5.0)
    failing = error_rate.Second(failing=True)
    failing.counts[4] = 500
    error_rate.fold_into_history(short, 30, failing)
    error_rate.fold_into_history(short, 31, bucket)
    assert error_rate.history_rate(short, 30) == pytest.approx(5.0)  # 500 and its second out
    late = error_rate.Second()
    late.counts[1] = 1000
    error_rate.fold_into_history(short, 12, late)  # a second the history has passed
    assert error_rate.history_rate(short, 30) == pytest.approx(5.0)


def test_a_quiet_hour_in_the_history_fades_like_the_counts() -> None:
    """10 req/s for ten minutes, an hour without a line, ten minutes more: the quiet
    seconds weigh as much as seconds of that age with traffic would (5.1 req/s). Counted
    unfaded they made it 1.9 req/s, and ordinary 5xx at the usual 10 req/s capacity."""
    tail = error_rate.Tail()
    for second in [*range(0, 600), *range(4200, 4800)]:
        bucket = error_rate.Second()
        bucket.counts[1] = 10
        error_rate.fold_into_history(tail, second, bucket)
    quiet_hour = sum(0.5 ** ((4799 - s) / error_rate.HISTORY_HALF_LIFE) for s in range(600, 4200))
    span = sum(0.5 ** ((4799 - s) / error_rate.HISTORY_HALF_LIFE) for s in range(4800))
    assert tail.history_span == pytest.approx(span, rel=1e-9)
    assert error_rate.history_rate(tail, 30) == pytest.approx(10 * (span - quiet_hour) / span)
    assert error_rate.history_rate(tail, 30) == pytest.approx(5.06, abs=0.01)


def test_the_history_span_survives_a_restart_and_old_states_load(root: Path) -> None:
    rnd = random.Random(23)
    append(root, traffic(rnd, range(0, 300), 2, 0.0))
    run(root, window="30s")
    path = error_rate.state_path(str(root.parent / "st"), "web-01", LOG)
    saved = json.loads(Path(path).read_text())
    # 270 seconds left the window, each fading with the half-life like the counts.
    faded = sum(0.5 ** (age / error_rate.HISTORY_HALF_LIFE) for age in range(270))
    assert saved["history_span"] == pytest.approx(faded, rel=1e-6)
    assert saved["history"][0] / saved["history_span"] == pytest.approx(2.0)
    assert error_rate._restore(saved).history_span == saved["history_span"]
    del saved["history_span"]  # a state written before the span was kept
    old = error_rate._restore(saved)
    assert old.history_requests > 0 and error_rate.history_rate(old, 30) is None
    for bad in (-1, "x", float("nan"), None):
        assert error_rate._restore({**saved, "history_span": bad}).history_span == -1.0
    # An unknown span stays unknown (its counts are of no known length) and is saved so.
    bucket = error_rate.Second()
    bucket.counts[1] = 2
    for second in range(300, 400):
        error_rate.fold_into_history(old, second, bucket)
    assert error_rate.history_rate(old, 30) is None
    assert error_rate._restore(old.persisted()).history_span == -1.0


def history_after(
    root: Path, monkeypatch: pytest.MonkeyPatch, restart: bool, quiet: bool
) -> tuple[float, float, float]:
    """Five minutes of 2 req/s, probed; optionally twenty quiet seconds probed too; a
    restart (or not); one more second of traffic, probed. The saved history."""
    rnd = random.Random(24)
    append(root, traffic(rnd, range(0, 300), 2, 0.0))
    monkeypatch.setattr(error_rate, "clock", lambda: T0.timestamp() + 300)
    run(root, window="30s")
    if quiet:
        monkeypatch.setattr(error_rate, "clock", lambda: T0.timestamp() + 320)
        run(root, window="30s")
    if restart:
        forget_memory()  # the daemon restarts; the saved state remains
    append(root, traffic(rnd, range(321, 322), 2, 0.0))
    monkeypatch.setattr(error_rate, "clock", lambda: T0.timestamp() + 322)
    run(root, window="30s")
    path = error_rate.state_path(str(root.parent / "st"), "web-01", LOG)
    saved = json.loads(Path(path).read_text())
    return saved["history"][0], saved["history"][1], saved["history_span"]


@pytest.mark.parametrize("read_chunk", [4 << 20, 4096], ids=["one-read", "many-reads"])
@pytest.mark.parametrize("quiet", [False, True], ids=["busy", "quiet-before"])
def test_a_restart_does_not_add_the_history_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read_chunk: int, quiet: bool
) -> None:
    """After a restart the window is rebuilt from the bytes before the saved offset (in
    many reads when it is big, and after a quiet spell some of those seconds have left
    the window already); the seconds the saved history holds are not added again, so the
    history is what it would have been without the restart."""
    monkeypatch.setattr(follow, "READ_CHUNK", read_chunk)
    histories = []
    for restart in (False, True):
        forget_memory()
        root = tmp_path / f"restart-{restart}" / "root"
        (root / "var/log/nginx").mkdir(parents=True)
        histories.append(history_after(root, monkeypatch, restart, quiet))
    assert histories[1] == pytest.approx(histories[0], rel=1e-9)


# ---- the recorder's own requests --------------------------------------------------------


def test_the_recorders_own_requests_are_left_out_and_counted_apart(root: Path) -> None:
    """Its http probes say `recorder/VERSION` (what probes/http.py sends, even when the
    site fails them): not a client, not in the error share, counted as self_requests,
    across a restart too."""
    own = http.USER_AGENT
    users = [line(f"10.0.0.{i}", 502 if i < 2 else 200, i % 30) for i in range(20)]
    probes = [line("127.0.0.1", 503, s, agent=own) for s in range(10)]
    append(root, "".join(users[:10] + probes + users[10:]))
    d = run(root, threshold=0.5).details
    assert d["requests"] == 20 and d["status_classes"]["5xx"] == 2
    assert d["clients"] == 20 and d["clients_with_5xx"] == 2
    assert d["error_ratio"] == 0.1 and d["affected_ratio"] == 0.1
    assert d["self_requests"] == 10 and d["lines_total"] == 30 and d["malformed_lines"] == 0
    forget_memory()  # a restart keeps the count
    append(root, line("127.0.0.1", 200, 31, agent=own) + line("10.0.0.1", 200, 31))
    d = run(root).details
    assert d["self_requests"] == 11 and d["requests"] == 21


def test_a_format_without_the_user_agent_counts_the_recorder_as_a_client(root: Path) -> None:
    """What CONFIGURATION.md says of a log_format without $http_user_agent."""
    fmt = '$remote_addr [$time_iso8601] "$request" $status'
    append(root, '127.0.0.1 [2026-11-23T14:00:00+00:00] "GET / HTTP/1.1" 200\n')
    d = run(root, log_format=fmt).details
    assert d["clients"] == 1 and d["self_requests"] == 0


def test_log_escape_reads_backslash_escaped_quotes(root: Path) -> None:
    """`log_escape` beside `log_format` (nginx's escape=): default and json read a `\\"`
    inside a quoted value; none takes the quote as the value's end."""
    quoted = line("10.0.0.1", 500).replace("GET / ", 'GET /\\"x ')  # "GET /\"x HTTP/1.1"
    append(root, quoted + line("10.0.0.2", 200))
    assert run(root, min_requests=1).details["requests"] == 2
    for escape, requests in (("json", 2), ("none", 1)):
        forget_memory()
        shutil.rmtree(root.parent / "st", ignore_errors=True)  # read it all again
        d = run(root, min_requests=1, log_escape=escape).details
        assert d["requests"] == requests and d["malformed_lines"] == 2 - requests
    with pytest.raises(ValueError, match="log_escape"):
        cfg(root, log_escape="xml")


TIMED = (
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
    '"$http_referer" "$http_user_agent" $request_time'
)


def test_clients_with_a_slow_response_when_the_log_says_how_long(root: Path) -> None:
    """With $request_time in the format, the window counts the clients that waited longer
    than `slow`, and each second's sketch of them goes up with the facts; without it the
    count is unknown (None), not zero."""
    text = "".join(
        line(f"10.0.0.{n}", 200, n % 3).rstrip("\n") + f" {took}\n"
        for n, took in ((1, "0.004"), (2, "2.500"), (3, "0.010"), (2, "0.003"), (4, "1.001"))
    )
    append(root, text)
    obs = run(root, log_format=TIMED, slow="1s")
    harm = obs.facts.clients
    assert harm is not None and (harm.clients, harm.slow, harm.slow_above) == (4, 2, 1.0)
    slow = [s.slow for s in harm.seconds]
    assert all(s is not None for s in slow)
    assert sum(s.count() for s in slow if s is not None) == 2
    assert "2 got a response slower than 1s" in obs.summary
    forget_memory()
    plain = error_rate.probe(
        LocalHost("web-02", prefix=str(root)), cfg(root, state_dir=None), _state[0]
    )
    harm = plain.facts.clients
    assert harm is not None and harm.clients == 4 and harm.slow is None
    assert all(s.slow is None for s in harm.seconds)


def test_names_the_file_only_while_nginx_runs(tmp_path: Path) -> None:
    """A failing window names the file of the server block writing the log (`nginx -T`,
    with the check's nginx), but not while nginx is down: `nginx -T` then would leave an
    empty pid file behind, which the process probe would misreport (#15)."""
    if not os.path.exists(NGINX):
        pytest.skip("nginx is not installed")
    site = NginxHost(tmp_path / "root")
    calls = tmp_path / "calls"
    binary = tmp_path / "nginx"
    binary.write_text(f'#!/bin/sh\necho run >> "{calls}"\nexec {NGINX} "$@"\n')
    binary.chmod(0o755)
    append(site.root, "".join(line(f"10.0.0.{i}", 502) for i in range(20)))
    config = cfg(site.root, nginx=str(binary))
    down = error_rate.probe(site.host(), config, error_rate.LogState())
    assert down.fault == Fault.HTTP_5XX
    assert down.facts.subjects.file == ()
    assert not calls.exists()
    assert not os.path.exists(site.real("/run/nginx.pid"))
    site.start()
    try:
        up = error_rate.probe(site.host(), config, error_rate.LogState())
    finally:
        site.stop()
    assert up.fault == Fault.HTTP_5XX
    assert up.facts.subjects.file == ("/etc/nginx/sites-enabled/default",)
    assert calls.read_text().splitlines() == ["run"]


def test_first_slow_is_when_the_first_slow_response_began(root: Path) -> None:
    """nginx logs a response when it is finished: the first slow one began its duration
    before its line (the second rounded down), and may be earlier than the first slow
    line (a longer request finished later). Fast lines and a log without durations say
    nothing."""
    text = "".join(
        line(f"10.0.0.{n}", 200, second).rstrip("\n") + f" {took}\n"
        for n, second, took in ((1, 3, "0.004"), (2, 4, "1.500"), (3, 5, "3.200"))
    )
    append(root, text)
    obs = run(root, log_format=TIMED, slow="1s")
    # 10.0.0.2: T0+4 - 1.5 s = T0+2.5; 10.0.0.3: T0+5 - 3.2 s = T0+1.8, so T0+1.
    assert obs.facts.first_slow == T0 + timedelta(seconds=1)
    assert obs.to_json()["facts"]["first_slow"] == (T0 + timedelta(seconds=1)).isoformat()
    forget_memory()
    plain = error_rate.probe(
        LocalHost("web-02", prefix=str(root)), cfg(root, state_dir=None), _state[0]
    )
    assert plain.facts.first_slow is None


@pytest.mark.parametrize(
    "bad",
    [
        "99999999999.000",  # began in the year -1142
        "9" * 400,  # infinity when summed
        "x",  # replaced below: a line cut before its duration, the next glued on
    ],
    ids=["huge", "400-digits", "glued"],
)
def test_a_duration_nginx_cannot_write_is_unknown_and_the_check_goes_on(
    root: Path, bad: str
) -> None:
    """Only the shapes nginx writes are durations: a value too large, not finite, or two
    lines run together by a cut write is unknown (the line still counts for its status
    and client). It used to put the slow response's start before year 1 (every check of
    the host raised until the line left the window) or raise while reading the chunk.
    A websocket's 101 is logged with the connection's whole life: never slow."""
    failing = "".join(line(f"10.0.0.{n}", 502, 2).rstrip("\n") + " 0.004\n" for n in range(1, 21))
    if bad == "x":  # cut right before its duration: the next line reads as it
        odd = line("10.0.1.1", 200, 3).rstrip("\n") + " " + line("10.0.1.2", 200, 3)
        odd = odd.rstrip("\n") + " 0.004\n"
    else:
        odd = line("10.0.1.1", 200, 3).rstrip("\n") + f" {bad}\n"
    websocket = line("10.0.1.3", 101, 4).rstrip("\n") + " 3600.000\n"
    append(root, failing + odd + websocket)
    obs = run(root, log_format=TIMED, slow="1s", threshold=0.05)
    assert obs.status == Status.FAIL and obs.fault == Fault.HTTP_5XX
    assert obs.details["requests"] == 22 and obs.details["clients"] == 22
    assert obs.details["clients_slow"] == 0 and obs.facts.first_slow is None
    assert obs.details["odd_durations"] == 1  # counted, as a malformed line is
    # The next check, with the line still in the window, reads on.
    append(root, line("10.0.0.1", 502, 5).rstrip("\n") + " 2.500\n")
    again = run(root, log_format=TIMED, slow="1s", threshold=0.05)
    assert again.status == Status.FAIL and again.details["clients_slow"] == 1
    assert again.facts.first_slow == T0 + timedelta(seconds=2)
    forget_memory()  # a restart keeps the count
    assert run(root, log_format=TIMED, slow="1s").details["odd_durations"] == 1
