"""Typed incident state: status, severity and timeline kinds are enums, the recorder's own
entries carry their step, ruled-out checks are a typed list that the drafter and
`incidents show` read (no regex over the timeline's prose, no guessing from keys), and a
store written before any of this reads the same."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from probes.base import Fault
from recorder.model import EntryKind, IncidentStatus, RuledOut, Severity, Step
from recorder.postmortem.draft import render_draft
from recorder.show import incident_lines
from recorder.store import Store
from tests.fixtures import MISSING_SYMLINK, Harness, store_at

BEFORE = Path(__file__).parent / "stores" / "before-typed-state.sql"


def record(h: Harness) -> None:
    """An outage with a flap, a second signal joining, and a recovery (the scenario the
    rows in tests/stores/before-typed-state.sql were written from)."""
    h.sweep({})
    h.sweep(MISSING_SYMLINK)
    h.sweep(MISSING_SYMLINK)
    h.sweep({})
    h.sweep(MISSING_SYMLINK)  # fails again within recover_after: a flap
    failing = dict(MISSING_SYMLINK)
    failing[("web-02", "process")] = (Fault.NGINX_DOWN, "nginx is not running on web-02", {})
    h.sweep(failing)  # joins
    for _ in range(8):
        h.sweep({})


def old_store(state: Path) -> Store:
    """The rows as the earlier version wrote them, at its schema (3), migrated."""
    store_at(state, 3, BEFORE)
    return Store(state)


def test_the_engine_writes_typed_state(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    record(h)
    inc = h.only_incident()
    assert inc.status is IncidentStatus.RESOLVED and inc.severity is Severity.OUTAGE
    assert all(isinstance(e.kind, EntryKind) for e in inc.timeline)
    steps = {e.step for e in inc.timeline}
    assert {Step.FAILED_AGAIN, Step.ALSO_FAILING, Step.RECOVERED} <= steps
    # Each step is recorded (in the timeline's own column), not read from the entry's key.
    with sqlite3.connect(h.store.path) as db:
        stored = {r[0] for r in db.execute("SELECT step FROM timeline WHERE step IS NOT NULL")}
    assert stored == {"flap", "join", "recovered"}
    ruled = inc.ruled_out
    assert RuledOut("web-01", "http", "http fine on web-01") in ruled
    assert all(isinstance(r, RuledOut) for r in ruled)
    keys = {e.key for e in inc.timeline}
    assert all(r.key in keys for r in ruled)


def test_a_store_written_before_reads_and_drafts_the_same(tmp_path: Path) -> None:
    now = Harness(tmp_path / "now")
    record(now)
    new = now.only_incident()
    old = old_store(tmp_path / "old").get(1)
    assert old is not None
    assert "steps" not in old.data and isinstance(old.data["ruled_out"][0], str)
    assert old.status is IncidentStatus.RESOLVED and old.severity is Severity.OUTAGE
    assert [(e.kind, e.step, e.key) for e in old.timeline] == [
        (e.kind, e.step, e.key) for e in new.timeline
    ]
    assert old.ruled_out == new.ruled_out
    config = now.config
    assert incident_lines(old, config) == incident_lines(new, config)
    assert render_draft(old, config) == render_draft(new, config)
    draft = render_draft(old, config)
    assert (
        "Checked web-01: passed, so ruled out: config (config fine on web-01)"
        " · error_rate (error_rate fine on web-01) · http (http fine on web-01)"
    ) in draft


def test_the_drafter_reads_the_typed_list_not_the_prose(tmp_path: Path) -> None:
    """An entry reading like a ruled-out check that is not in the typed list stays a plain
    bullet; the steps, not the keys' prefixes, say what recovered."""
    h = Harness(tmp_path)
    record(h)
    inc = h.only_incident()
    entry = next(e for e in inc.timeline if e.text.startswith("Checked http on web-01"))
    inc.data["ruled_out"] = [r.to_json() for r in inc.ruled_out if r.host != "web-01"]
    draft = render_draft(inc, h.config)
    assert "Checked web-01: passed" not in draft
    assert entry.text in draft
    shown = incident_lines(inc, h.config)
    assert any(entry.text in line for line in shown)
    assert not any("Ruled out on web-01" in line for line in shown)


def test_people_entries_have_no_step_and_unknown_kinds_read_as_notes(tmp_path: Path) -> None:
    store = old_store(tmp_path)
    with sqlite3.connect(store.path) as db:
        db.execute(
            "INSERT INTO timeline (incident_id, key, at, kind, text, source)"
            " VALUES (1, 'recovered-by-hand', '2026-11-23T12:00:09.000+00:00', 'later-kind',"
            " 'a kind from a newer version', 'cli')"
        )
    inc = store.get(1)
    assert inc is not None
    entry = next(e for e in inc.timeline if e.key == "recovered-by-hand")
    assert entry.kind is EntryKind.NOTE and entry.step is None


def test_the_drafter_reads_steps_not_key_prefixes(tmp_path: Path) -> None:
    """An entry's key only makes writing it idempotent: keys that no longer begin with
    the step's name ("flap:", "join:", "recovered:") draft the same, and a key that
    begins with one names no step."""
    h = Harness(tmp_path)
    record(h)
    inc = h.only_incident()
    before = render_draft(inc, h.config)
    assert "[[FILL IN: what fixed it]]" in before  # the resolution the recovery leads to
    stepped = [e for e in inc.timeline if e.step is not None]
    assert {e.step for e in stepped} == {Step.FAILED_AGAIN, Step.ALSO_FAILING, Step.RECOVERED}
    for n, entry in enumerate(stepped):
        entry.key = f"entry-{n}"
    assert render_draft(inc, h.config) == before
    for entry in stepped:
        entry.step = None
        entry.key = f"recovered:{entry.key}"
    assert render_draft(inc, h.config) != before
