"""The affected share of slow responses, from the real lab against the lab's truth.

slow-backend delays the answers of web-01 to some clients (a client is delayed when its
hashed bucket is below the rate). The lab's nginx logs `$request_time`, so lb-01's access
log says which clients waited longer than the http probe's `slow`: the incident's affected
share is the distinct clients that got at least one slow response over those seen. The
truth is what the traffic generator measured, client by client (`clients_slow`).

With a log_format that has no request time (many operators' logs), the share is not 0%
but unknown, and the incident, the draft and the notification say why.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recorder.config import Config, load_config
from recorder.detector import Detector
from recorder.incidents import SLOW_METHOD, IncidentBook
from recorder.lab.core import Lab
from recorder.model import Incident
from recorder.postmortem.draft import render_draft
from recorder.receivers import Delivery
from recorder.scheduler import sweep
from recorder.store import Store
from tests.test_draft_lab import feed

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")

CLIENTS, RPS, SECONDS = 24, 8.0, 6.0  # two requests per client: either may reach web-01
DELAY, RATE = 2.0, 0.5  # above the lab's 1 s bar, for half the clients


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(tmp_path_factory.mktemp("slowlab") / "lab")
    lab.up()
    try:
        yield lab
    finally:
        lab.down()


def slow_incident(lab: Lab, config: Config, state: Path) -> tuple[Incident, dict[str, Any]]:
    """Break slow-backend, open the incident, send traffic while sweeping, fix, resolve.
    Returns the stored incident and the traffic's report (the truth)."""
    store = Store(state)
    book = IncidentBook(config, store)
    detector = Detector()
    feed(book, detector, sweep(config))  # healthy: nothing opens
    assert not book.open_incidents()
    lab.break_("slow-backend", rate=RATE, delay=DELAY)
    report: dict[str, Any] = {}
    try:
        for _ in range(5):  # the http probe sees it once round robin reaches web-01
            feed(book, detector, sweep(config))
            if book.open_incidents():
                break
        assert book.open_incidents(), "slow-backend opened no incident"
        # Every request of the traffic is made (and logged) after the incident opened and
        # before it resolves, so its clients are exactly the incident's.
        time.sleep(1.1)
        sender = threading.Thread(
            target=lambda: report.update(lab.traffic(clients=CLIENTS, rps=RPS, seconds=SECONDS))
        )
        sender.start()
        deadline = time.monotonic() + SECONDS + 30
        while sender.is_alive() and time.monotonic() < deadline:
            feed(book, detector, sweep(config))
        sender.join(timeout=max(0.0, deadline - time.monotonic()))
        time.sleep(1.1)  # the last lines' second is over
        feed(book, detector, sweep(config))
    finally:
        lab.fix()
    for _ in range(3):
        feed(book, detector, sweep(config))
        if not book.open_incidents():
            break
    (listed,) = store.list()
    incident = store.get(listed.id)
    store.close()
    assert incident is not None
    return incident, report


def test_slow_share_matches_the_labs_truth(lab: Lab, tmp_path: Path) -> None:
    config = load_config(str(lab.config_path))
    incident, report = slow_incident(lab, config, tmp_path / "state")
    assert incident.status == "resolved", incident.to_json()
    assert incident.fault == "slow-responses"
    truth = report["clients_slow"] / report["clients"]
    assert report["clients"] == CLIENTS and 0 < report["clients_slow"] < CLIENTS, report
    affected = incident.affected
    assert affected.method == SLOW_METHOD, affected
    assert affected.ratio == pytest.approx(truth, abs=0.05), (affected, report)
    assert (
        f"{report['clients_slow']} of {CLIENTS} distinct clients got at least one response"
        " slower than 1s" in affected.evidence
    ), affected
    text = render_draft(incident, config)
    assert f"method `{SLOW_METHOD}`" in text


def test_slow_share_without_request_time_is_unknown(lab: Lab, tmp_path: Path) -> None:
    """The same fault read with the plain combined format: nothing says how long a
    request took, so the share is unknown (not 0%)."""
    config = load_config(str(lab.config_path))
    for check in config.checks:
        rate = check.probes["error_rate"]
        check.probes["error_rate"] = rate.model_copy(update={"log_format": None})
    incident, report = slow_incident(lab, config, tmp_path / "state")
    assert report["clients_slow"] > 0, report
    assert incident.fault == "slow-responses"
    affected = incident.affected
    assert affected.ratio is None, affected
    assert affected.method == SLOW_METHOD
    assert affected.evidence.startswith("share unknown: log has no request time"), affected
    text = render_draft(incident, config)
    assert "share unknown: log has no request time" in text
    assert "0.0% of users" not in text and "0% of users" not in text
    snapshot = {"incident": incident.to_json(), "text": ""}
    line = Delivery("d", "r", "opened", snapshot, "http://x/").affected_line
    assert line.startswith("Affected: share unknown: log has no request time"), line
