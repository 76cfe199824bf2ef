"""A configuration that fails `nginx -t` is a risk, not harm, until a check measures harm.

From the real lab, through the engine's parts (as tests/test_draft_lab.py): the running
nginx keeps serving its last good configuration, so the incident (real: the next reload or
restart fails) must not say users were hurt: "Risk began", 0% affected with "no failed
user requests measured", in the timeline, the draft and the notification. When a later
check does measure harm (nginx stopped, and it cannot start again on that file), harm
begins at that moment.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from recorder.config import Config, load_config
from recorder.detector import Detector
from recorder.incidents import NO_HARM_METHOD, IncidentBook
from recorder.lab.core import Lab
from recorder.model import EntryKind, Incident, Notice
from recorder.postmortem.draft import render_draft
from recorder.receivers import Delivery
from recorder.scheduler import sweep
from recorder.store import Store, notice_snapshot
from tests.test_draft_lab import feed

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(tmp_path_factory.mktemp("risklab") / "lab")
    lab.up()
    try:
        yield lab
    finally:
        lab.down()


def stored(store: Store) -> Incident:
    (listed,) = store.list()
    incident = store.get(listed.id)
    assert incident is not None
    return incident


def began_line(incident: Incident) -> str:
    notice = Notice("opened", "opened", incident.detected_at, [])
    return Delivery("d", "r", "opened", notice_snapshot(incident, notice), "http://x/").began_line


# Both leave a configuration nginx -t refuses while the running nginx keeps serving.
RISKS = ("config-syntax", "dangling-symlink")


def broken(lab: Lab, state: Path, fault: str) -> tuple[Config, Store, IncidentBook, Detector]:
    """The engine's parts over a healthy sweep, then `fault` broken in the lab."""
    config = load_config(str(lab.config_path))
    store = Store(state)
    book, detector = IncidentBook(config, store), Detector()
    feed(book, detector, sweep(config))
    lab.break_(fault)
    return config, store, book, detector


@pytest.mark.parametrize("fault", RISKS)
def test_a_config_that_fails_nginx_t_is_a_risk_not_harm(
    lab: Lab, tmp_path: Path, fault: str
) -> None:
    config, store, book, detector = broken(lab, tmp_path / "state", fault)
    try:
        observations = sweep(config)
        served = [o for o in observations if o.probe == "http" and o.host == "lb-01"]
        assert served and served[0].status == "ok", served  # users are still served
        feed(book, detector, observations)
        feed(book, detector, sweep(config))
    finally:
        lab.fix()
    feed(book, detector, sweep(config))
    incident = stored(store)
    store.close()
    assert incident.status == "resolved" and incident.fault == fault
    assert incident.opened_on_risk and incident.harm_began is None
    assert incident.to_json()["harm_began_at"] is None
    texts = [e.text for e in incident.timeline]
    assert not [t for t in texts if "Harm began" in t or "of harm" in t], texts
    assert not [e for e in incident.timeline if e.kind == EntryKind.IMPACT_START]
    assert [t for t in texts if t.startswith("Risk began: ")], texts
    assert incident.affected.ratio == 0.0 and incident.affected.method == NO_HARM_METHOD
    assert incident.affected.evidence.startswith("no failed user requests measured")
    text = render_draft(incident, config)
    assert "Harm began" not in text and "after harm began" not in text
    assert "after the risk began (no failed user requests measured)" in text
    assert "0% of users (method `no-harm-measured`)" in text
    assert "Risk (no user harm measured) :active" in text and ":crit, harm" not in text
    assert began_line(incident).startswith("Risk began ")
    assert began_line(incident).endswith("(no failed user requests measured)")


@pytest.mark.parametrize("fault", RISKS)
def test_harm_begins_when_a_later_check_measures_it(lab: Lab, tmp_path: Path, fault: str) -> None:
    """nginx stopped while its configuration is broken cannot start again: the entry
    point answers no one, and that is when harm began."""
    config, store, book, detector = broken(lab, tmp_path / "state", fault)
    try:
        feed(book, detector, sweep(config))
        (opened,) = book.open_incidents()
        assert opened.opened_on_risk and opened.harm_began is None
        lab.break_("nginx-down", host="lb-01")
        down = sweep(config)
        feed(book, detector, down)
        feed(book, detector, sweep(config))
    finally:
        lab.fix(fault)
        lab.fix()
    feed(book, detector, sweep(config))
    incident = stored(store)
    store.close()
    assert incident.status == "resolved", incident.to_json()
    failed = [o for o in down if o.host == "lb-01" and o.fault in ("nginx-down", "port-closed")]
    assert failed, [(o.host, o.probe, o.status, o.fault) for o in down]
    harm = incident.harm_began
    assert harm is not None and incident.started_at < harm
    assert harm <= min(o.at for o in failed) + timedelta(seconds=1)
    starts = [e for e in incident.timeline if e.kind == EntryKind.IMPACT_START]
    assert len(starts) == 1 and starts[0].at == harm and starts[0].text.startswith("Harm began:")
    assert incident.affected.ratio == 1.0, incident.affected
    text = render_draft(incident, config)
    assert re.search(r"after the risk began; user harm began \d{4}-\d\d-\d\d", text), text
    assert "Risk :active, risk" in text and "Harm :crit, harm" in text
    assert began_line(incident).startswith("Risk began ") and ", harm began " in began_line(
        incident
    )


@pytest.mark.parametrize("fault", RISKS)
def test_clients_served_during_the_risk_are_not_harm(lab: Lab, tmp_path: Path, fault: str) -> None:
    """With traffic served while nginx -t fails, the access log has clients and no 5xx:
    the incident still says no harm measured, not "0 of N clients got a 5xx" (#15)."""
    config, store, book, detector = broken(lab, tmp_path / "state", fault)
    try:
        feed(book, detector, sweep(config))
        truth = lab.traffic(clients=20, rps=20, seconds=1)
        assert truth["status_classes"]["2xx"] > 0, truth  # served
        observations = sweep(config)
        logged = [
            o.facts.clients
            for o in observations
            if o.host == "lb-01" and o.facts.clients is not None
        ]
        assert logged and logged[0].clients > 0, logged  # the log does show the clients
        feed(book, detector, observations)
        feed(book, detector, sweep(config))
        (opened,) = book.open_incidents()
        assert opened.opened_on_risk and opened.harm_began is None
        assert opened.affected.method == NO_HARM_METHOD, opened.affected
        assert opened.affected.ratio == 0.0 and opened.affected_clients is None
    finally:
        lab.fix()
    feed(book, detector, sweep(config))
    incident = stored(store)
    store.close()
    assert incident.status == "resolved" and incident.harm_began is None
    assert incident.affected.method == NO_HARM_METHOD, incident.affected
    assert incident.affected.evidence.startswith("no failed user requests measured")
