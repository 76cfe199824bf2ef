"""Every probe against the real nginx lab (recorder.lab), through the engine's own sweep
(what `recorder probe` runs): all ok when healthy, and each injected fault reported as
its fault kind, on the right host, by the right probes."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from probes.base import Observation, Status
from recorder.config import load_config
from recorder.lab.core import Lab
from recorder.scheduler import sweep

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(tmp_path_factory.mktemp("probelab") / "lab")
    lab.up()
    try:
        yield lab
    finally:
        lab.down()


def run_sweep(lab: Lab) -> list[Observation]:
    return sweep(load_config(str(lab.config_path)))


def errors(observations: list[Observation]) -> set[tuple[str, str]]:
    return {(o.host, o.probe) for o in observations if o.status == Status.ERROR}


def failing(observations: list[Observation]) -> set[tuple[str, str, str]]:
    """(host, probe, fault) of every failing observation but error_rate (which depends
    on traffic, checked on its own)."""
    return {
        (o.host, o.probe, str(o.fault))
        for o in observations
        if o.status == Status.FAIL and o.probe != "error_rate"
    }


FAULTS = [
    (
        "missing-symlink",
        {("lb-01", "sites", "missing-symlink"), ("lb-01", "http", "port-closed")},
        "sites-available/example is not linked in sites-enabled",
    ),
    (
        "dangling-symlink",
        {
            ("lb-01", "sites", "dangling-symlink"),
            ("lb-01", "config", "config-syntax"),
            # nginx -T refuses the same config: evidence, not an unreachable host
            ("lb-01", "upstreams", "config-syntax"),
        },
        "example -> /etc/nginx/sites-available/example",
    ),
    (
        "config-syntax",
        {("lb-01", "config", "config-syntax"), ("lb-01", "upstreams", "config-syntax")},
        'invalid number of arguments in "proxy_pass" directive in /etc/nginx/sites-enabled/example',
    ),
    (
        "nginx-down",
        {("lb-01", "process", "nginx-down"), ("lb-01", "http", "port-closed")},
        "no pid in /run/nginx.pid",
    ),
    (
        "upstream-down",
        {
            ("lb-01", "upstreams", "upstream-down"),
            ("web-02", "process", "nginx-down"),
            ("web-02", "http", "port-closed"),
        },
        "does not answer (50% of weight)",
    ),
]


def test_healthy_lab_is_all_ok(lab: Lab) -> None:
    lab.traffic(clients=20, rps=20, seconds=1)
    observations = run_sweep(lab)
    assert {o.probe for o in observations} >= {
        "http",
        "sites",
        "config",
        "process",
        "error_rate",
        "upstreams",
    }
    assert [o.summary for o in observations if o.status != Status.OK] == []
    assert errors(observations) == set()


@pytest.mark.parametrize(("fault", "expected", "summary"), FAULTS, ids=[f[0] for f in FAULTS])
def test_fault_is_reported(
    lab: Lab, fault: str, expected: set[tuple[str, str, str]], summary: str
) -> None:
    lab.break_(fault)
    try:
        observations = run_sweep(lab)
        assert failing(observations) == expected
        # A configuration nginx refuses has no upstreams to read, but the host answered:
        # no probe reports it could not look.
        assert errors(observations) == set()
        assert any(summary in o.summary for o in observations if o.status == Status.FAIL), [
            o.summary for o in observations if o.status == Status.FAIL
        ]
    finally:
        lab.fix()
    after = run_sweep(lab)
    assert failing(after) == set() and errors(after) == set()


def test_slow_backend_is_slow_responses(lab: Lab) -> None:
    lab.break_("slow-backend", delay=3)
    try:
        observations = run_sweep(lab)
    finally:
        lab.fix()
    # lb-01's own check is slow too when round robin happens to send it to web-01.
    assert (
        {("web-01", "http", "slow-responses")}
        <= failing(observations)
        <= {
            ("web-01", "http", "slow-responses"),
            ("lb-01", "http", "slow-responses"),
        }
    )
    web = next(o for o in observations if (o.host, o.probe) == ("web-01", "http"))
    assert "within 1s (slow above 1s)" in web.summary
    assert errors(observations) == set()


def test_backend_5xx_share_of_clients(lab: Lab) -> None:
    """Runs late: its errors stay in the error_rate window for a while."""
    lab.break_("backend-5xx", rate=0.5)
    try:
        time.sleep(1.1)  # the window starts on a fresh second
        truth = lab.traffic(clients=40, rps=40, seconds=2)
        time.sleep(0.2)  # nginx writes a log line just after its response
    finally:
        lab.fix()
    observations = {(o.host, o.probe): o for o in run_sweep(lab)}
    lb = observations[("lb-01", "error_rate")]
    assert lb.status == Status.FAIL and str(lb.fault) == "http-5xx", lb.summary
    # The LB saw every client of the burst; those the app failed are the truth's.
    assert lb.details["clients_with_5xx"] == truth["clients_with_5xx"]
    web = observations[("web-01", "error_rate")]
    assert str(web.fault) == "http-5xx", web.summary


def test_traffic_spike_is_capacity_on_first_sight(lab: Lab, tmp_path: Path) -> None:
    """Runs after the 5xx test (its 503s would be in that test's window).

    What `recorder probe` says during a spike: no earlier run to take a baseline from,
    so the rate is compared with the log's own history before the window (a 5 s window
    here, so a few seconds of ordinary traffic make that history)."""
    config = yaml.safe_load(lab.config_path.read_text())
    for check in config["checks"]:
        if "error_rate" in check["probes"]:
            check["probes"]["error_rate"]["window"] = "5s"
    path = tmp_path / "recorder.yml"
    path.write_text(yaml.safe_dump(config))
    lab.traffic(clients=20, rps=10, seconds=7)
    lab.break_("traffic-spike", rps=250, seconds=6)
    try:
        time.sleep(2.5)  # the burst is under way, and its seconds are in the log
        # Each sweep is a one-off: error_rate sees the log for the first time.
        observations = {(o.host, o.probe): o for o in sweep(load_config(str(path)))}
    finally:
        lab.fix()
    lb = observations[("lb-01", "error_rate")]
    assert lb.status == Status.FAIL and str(lb.fault) == "capacity", lb.summary
    assert lb.details["baseline_from"] == "history"
    assert "(the log's earlier rate)" in lb.summary


def test_the_recorder_is_not_counted_as_a_client(lab: Lab, tmp_path: Path) -> None:
    """Its own http probe goes through lb-01's access log (issue 16: 41 clients where the
    truth was 40): it says `recorder/VERSION`, and error_rate counts it apart. The lab's
    users are 127.100.0.1 and up, the recorder's probe comes from 127.0.0.1. A 3 s window,
    begun after the lab's own requests (start-up and fix checks come from 127.0.0.1 too,
    without a User-Agent). Runs last: its quiet first sweep lowers the rate baseline."""
    config = yaml.safe_load(lab.config_path.read_text())
    for check in config["checks"]:
        if "error_rate" in check["probes"]:
            check["probes"]["error_rate"]["window"] = "3s"
    path = tmp_path / "recorder.yml"
    path.write_text(yaml.safe_dump(config))
    time.sleep(3.1)
    sweep(load_config(str(path)))  # the http probes' requests are in the log now
    truth = lab.traffic(clients=40, rps=40, seconds=1)
    time.sleep(0.2)  # nginx writes a log line just after its response
    observations = {(o.host, o.probe): o for o in sweep(load_config(str(path)))}
    lb = observations[("lb-01", "error_rate")]
    assert lb.details["clients"] == truth["clients"] == 40, lb.details
    assert lb.details["self_requests"] >= 1, lb.details
