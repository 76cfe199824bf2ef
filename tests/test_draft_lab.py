"""Drafts from the real lab, end to end through the engine's parts: break a fault, run
every probe (the engine's own sweep), feed the observations through the detector, a real
IncidentBook and Store, fix it, feed the recovery, and render the stored incident's draft.

What a probe names (the dead backend, the file and line nginx rejects, the site whose link
is missing or dangles) must reach the draft's tasks: no `[[FILL IN: ...]]` is left for a
value the evidence holds."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from probes.base import Observation
from recorder.config import Config, load_config
from recorder.detector import Detector
from recorder.incidents import IncidentBook
from recorder.lab.core import Lab
from recorder.model import Incident
from recorder.postmortem.draft import render_draft
from recorder.scheduler import sweep
from recorder.store import Store

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")

# The placeholders a probe can fill (probes/facts.py Subjects), and the host and url.
EVIDENCE_PLACEHOLDERS = ("site", "file", "line", "backend", "url", "host")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(tmp_path_factory.mktemp("draftlab") / "lab")
    lab.up()
    try:
        yield lab
    finally:
        lab.down()


def feed(book: IncidentBook, detector: Detector, observations: list[Observation]) -> None:
    """What the daemon's engine does with each observation (`for` and `recover_after` 0)."""
    for obs in observations:
        book.observe(obs)
        for sig in detector.observe(obs, 0.0, 0.0):
            book.on_signal(sig)


def recorded(lab: Lab, fault: str, config: Config, state: Path) -> Incident:
    store = Store(state)
    book = IncidentBook(config, store)
    detector = Detector()
    feed(book, detector, sweep(config))  # healthy: nothing opens
    lab.break_(fault)
    try:
        feed(book, detector, sweep(config))
        feed(book, detector, sweep(config))
    finally:
        lab.fix()
    feed(book, detector, sweep(config))
    (listed,) = store.list()
    incident = store.get(listed.id)
    store.close()
    assert incident is not None
    return incident


@pytest.mark.parametrize(
    ("fault", "filled"),
    [
        ("missing-symlink", {"site": "example", "host": "lb-01"}),
        ("dangling-symlink", {"file": "/etc/nginx/sites-enabled/example"}),
        ("config-syntax", {"file": "/etc/nginx/sites-enabled/example"}),
        ("upstream-down", {"backend": "127.0.0.1:", "file": "/etc/nginx/sites-enabled/example"}),
    ],
)
def test_draft_tasks_hold_what_the_probes_named(
    lab: Lab, fault: str, filled: dict[str, str], tmp_path: Path
) -> None:
    config = load_config(str(lab.config_path))
    incident = recorded(lab, fault, config, tmp_path / "state")
    assert incident.status == "resolved", incident.to_json()
    assert incident.root_causes[0].fault == fault
    text = render_draft(incident, config)
    tasks = text.split("## Corrective and Preventative Measures", 1)[1]
    left = re.findall(r"\[\[FILL IN: ([a-z]+)\]\]", tasks)
    assert not [name for name in left if name in EVIDENCE_PLACEHOLDERS], tasks
    for value in filled.values():
        assert value in tasks, tasks
    if fault == "config-syntax":
        assert re.search(r"Fix /etc/nginx/sites-enabled/example line \d+ on lb-01", tasks), tasks
