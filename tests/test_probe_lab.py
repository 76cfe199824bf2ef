"""Every probe against the real nginx lab (recorder.lab), through the engine's own sweep
(what `recorder probe` runs): all ok when healthy, and each injected fault reported as
its fault kind, on the right host, by the right probes."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest

from probes import error_rate
from probes.base import Observation, Status
from recorder.config import load_config
from recorder.lab.core import Lab
from recorder.scheduler import sweep

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    error_rate.reset_state()
    lab = Lab(tmp_path_factory.mktemp("probelab") / "lab")
    lab.up()
    try:
        yield lab
    finally:
        lab.down()
        error_rate.reset_state()


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
        {("lb-01", "sites", "dangling-symlink"), ("lb-01", "config", "config-syntax")},
        "example -> /etc/nginx/sites-available/example",
    ),
    (
        "config-syntax",
        {("lb-01", "config", "config-syntax")},
        'invalid number of arguments in "proxy_pass" directive in /etc/nginx/sites-enabled/example',
    ),
    (
        "nginx-down",
        {("lb-01", "process", "nginx-down"), ("lb-01", "http", "port-closed")},
        "no pid file /run/nginx.pid",
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
        # A configuration nginx refuses has no upstreams to read: we could not look.
        unreadable = fault in ("dangling-symlink", "config-syntax")
        assert errors(observations) == ({("lb-01", "upstreams")} if unreadable else set())
        assert any(summary in o.summary for o in observations if o.status == Status.FAIL), [
            o.summary for o in observations if o.status == Status.FAIL
        ]
    finally:
        lab.fix()
    after = run_sweep(lab)
    assert failing(after) == set() and errors(after) == set()


def test_backend_5xx_share_of_clients(lab: Lab) -> None:
    """Runs last: its errors stay in the error_rate window for a while."""
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
