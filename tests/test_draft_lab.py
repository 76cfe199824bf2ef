"""Drafts from the real lab, end to end through the engine's parts: break a fault, run
every probe (the engine's own sweep), feed the observations through the detector, a real
IncidentBook and Store, fix it, feed the recovery, and render the stored incident's draft.

What a probe names (the dead backend, the file and line nginx rejects, the site whose link
is missing or dangles) must reach the draft's tasks: no `[[FILL IN: ...]]` is left for a
value the evidence holds."""

from __future__ import annotations

import os
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


# ---- golden drafts from real observations ------------------------------------------------
# The faults that one sweep shows (no traffic needed). Their drafts are rendered from what
# the real probes observed in the lab and compared with tests/golden/lab/<fault>.md after
# the run-specific parts (times, durations, ports, the lab's directory) are normalized.
# `UPDATE_GOLDEN=1 pytest tests/test_draft_lab.py` rewrites them: read the diff first.
GOLDEN_LAB = Path(__file__).parent / "golden" / "lab"
SWEEP_FAULTS = (
    "missing-symlink",
    "dangling-symlink",
    "config-syntax",
    "nginx-down",
    "upstream-down",
)
_NORMALIZE = (
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?"), "<time>"),
    (re.compile(r"\b\d\d:\d\d(?::\d\d)?\b"), "<hh:mm>"),
    (re.compile(r"\b\d+(?:\.\d+)? ?(?:ms|s|min)\b"), "<n> <unit>"),
    (re.compile(r"(127\.0\.0\.1|localhost):\d+"), r"\1:<port>"),
    (re.compile(r"\bpid \d+"), "pid <n>"),
)
_RULED_OUT = re.compile(r"(passed, so ruled out: )(.*)$", re.M)


def normalized(text: str, lab: Lab) -> str:
    text = text.replace(str(lab.dir), "<lab>")
    for pattern, repl in _NORMALIZE:
        text = pattern.sub(repl, text)
    # Probes of one sweep run in parallel: which answers first, and so the order of the
    # checks a host passed and of the timeline's entries of one sweep, varies by run.
    text = _RULED_OUT.sub(lambda m: m[1] + "; ".join(sorted(m[2].split("; "))), text)
    lines = text.splitlines(keepends=True)
    timed = [n for n, line in enumerate(lines) if line.startswith("- <time> ")]
    for n, line in zip(timed, sorted(lines[n] for n in timed), strict=True):
        lines[n] = line
    return "".join(lines)


@pytest.mark.parametrize("fault", SWEEP_FAULTS)
def test_lab_draft_matches_golden(lab: Lab, fault: str, tmp_path: Path) -> None:
    config = load_config(str(lab.config_path))
    incident = recorded(lab, fault, config, tmp_path / "state")
    text = normalized(render_draft(incident, config), lab)
    path = GOLDEN_LAB / f"{fault}.md"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing: run UPDATE_GOLDEN=1 pytest {__file__}"
    assert text == path.read_text(encoding="utf-8"), f"{path.name} differs; UPDATE_GOLDEN=1"
