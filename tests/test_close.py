"""`recorder close`: refuses while the postmortem has gaps, closes a complete one, and never
rewrites a final postmortem. A real store in tmp_path; the incidents are the lab faults
of test_draft."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from recorder.cli import main
from recorder.config import Config
from recorder.model import Incident
from recorder.postmortem.close import (
    CloseError,
    close_incident,
    document_tasks,
    draft_path,
    edit_in_editor,
    final_path,
    write_draft,
)
from recorder.postmortem.draft import render_draft
from recorder.postmortem.lint import PLACEHOLDER_MARK, lint_file
from recorder.store import Store
from tests.fixtures import lab_config, lab_config_data
from tests.test_draft import CLOSE_FLAGS, LAB_FAULTS, build_incident

CLOSED_AT = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
NO_FLAGS: dict[str, Any] = {
    "root_cause": None,
    "resolution": None,
    "misleading": [],
    "escalated_to": None,
    "tasks": [],
    "affected": None,
}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return lab_config(tmp_path / "state")


@pytest.fixture
def store(config: Config) -> Iterator[Store]:
    s = Store(config.state_path)
    yield s
    s.close()


def recorded(store: Store, config: Config, fault: str = "missing-symlink") -> Incident:
    return store.create_incident(build_incident(LAB_FAULTS[fault], config))


def flags(**changes: Any) -> dict[str, Any]:
    given = dict(CLOSE_FLAGS)
    given.setdefault("affected", None)
    given.update(changes)
    return given


def test_refuses_a_draft_with_placeholders_listing_gaps_by_section(
    store: Store, config: Config
) -> None:
    incident = recorded(store, config)
    result = close_incident(store, config, incident.id, **NO_FLAGS, now=CLOSED_AT)
    assert not result.ok and result.path is None
    sections = [gap.split(":", 1)[0] for gap in result.gaps]
    assert sections == sorted(
        sections,
        key=[
            "Issue summary",
            "Timeline",
            "Root cause and resolution",
            "Corrective and preventative measures",
        ].index,
    )
    assert "Issue summary: placeholder left: [[FILL IN: confirm the root cause]]" in result.gaps
    assert "Timeline: placeholder left: [[FILL IN: who was paged and when]]" in result.gaps, (
        result.gaps
    )
    assert any(g.startswith("Root cause and resolution: placeholder left") for g in result.gaps)
    # Beside each gap, the flag that fills it; a time goes with its line's flag.
    fills = dict(zip(result.gaps, result.fills, strict=True))
    assert fills["Issue summary: placeholder left: [[FILL IN: confirm the root cause]]"] == (
        "--root-cause"
    )
    assert fills["Timeline: placeholder left: [[FILL IN: who was paged and when]]"] == (
        "--escalated-to"
    )
    assert "--escalated-to" in fills["Timeline: placeholder left: [[FILL IN: time]]"]
    assert (
        fills[
            "Root cause and resolution: placeholder left: [[FILL IN: how it was fixed, in "
            "detail: what was changed, where and by whom]]"
        ]
        == "--resolution"
    )
    # Each hint names each option once, and --edit only where no flag fills the gap (#16).
    for gap, hint in fills.items():
        options = hint.split(" or ")
        assert len(options) == len(set(options)), (gap, hint)
        assert "," not in hint, (gap, hint)
    misled = "Timeline: no misleading investigation or debugging path"
    (gap,) = [g for g in fills if g.startswith(misled)]
    assert fills[gap] == "--misleading"
    actions = "Timeline: placeholder left: [[FILL IN: what people investigated or changed, and "
    (gap,) = [g for g in fills if g.startswith(actions)]
    assert fills[gap] == f"`recorder note {incident.id} --kind action TEXT`"
    # Nothing changed: still resolved, no final file.
    again = store.get(incident.id)
    assert again is not None and again.status == "resolved" and again.closed_at is None
    assert not final_path(config, incident.id).exists()


def test_refuses_while_one_placeholder_remains(store: Store, config: Config) -> None:
    incident = recorded(store, config)
    result = close_incident(store, config, incident.id, **flags(escalated_to=None), now=CLOSED_AT)
    assert not result.ok
    # Only the escalation is missing: every gap is that timeline bullet's.
    assert "Timeline: placeholder left: [[FILL IN: time]]" in result.gaps
    assert "Timeline: placeholder left: [[FILL IN: who was paged and when]]" in result.gaps
    assert all(g.startswith("Timeline: ") for g in result.gaps), result.gaps


def test_closes_a_completed_postmortem(store: Store, config: Config) -> None:
    incident = recorded(store, config)
    result = close_incident(store, config, incident.id, **flags(), now=CLOSED_AT)
    assert result.ok, result.gaps
    assert result.path == config.state_path / "postmortems" / f"INC-{incident.id}.md"
    assert lint_file(result.path) == []
    text = result.path.read_text()
    assert PLACEHOLDER_MARK not in text
    assert mode(result.path) == 0o600 and mode(result.path.parent) == 0o700
    closed = store.get(incident.id)
    assert closed is not None
    assert closed.status == "closed" and closed.closed_at == CLOSED_AT
    assert closed.postmortem["root_cause"] == CLOSE_FLAGS["root_cause"]
    assert closed.postmortem["path"] == str(result.path)
    assert closed.tasks[0].text == CLOSE_FLAGS["tasks"][0]
    assert [t.text for t in closed.tasks] == document_tasks(text)
    # The final document is what the draft shows with the flags, without the guidance.
    assert text == render_draft(incident, config, overrides=flags(), final=True)


def test_an_open_incident_needs_force(store: Store, config: Config) -> None:
    incident = build_incident(LAB_FAULTS["nginx-down"], config)
    incident.status, incident.resolved_at = "open", None
    incident.timeline = [e for e in incident.timeline if e.kind != "resolution"]
    incident = store.create_incident(incident)
    with pytest.raises(CloseError, match="still open.*--force") as refused:
        close_incident(store, config, incident.id, **flags(), now=CLOSED_AT)
    assert refused.value.exit_code == 1
    # With force the placeholder for the end time still stops it: a person must say when.
    result = close_incident(store, config, incident.id, **flags(), force=True, now=CLOSED_AT)
    assert not result.ok
    assert "Issue summary: placeholder left: [[FILL IN: end time]]" in result.gaps
    edited = (
        render_draft(incident, config, overrides=flags(), final=True)
        .replace("still open, from", "38 min, from")
        .replace("[[FILL IN: end time]]", "2026-11-23 15:08:00 EAT")
        .replace(
            "- [[FILL IN: time]] - [[FILL IN: how the incident was resolved]] (still open: the "
            "recorder has not seen every signal recover)",
            "- 2026-11-23 15:08:00 EAT - Resolved: started nginx on lb-01 by hand",
        )
        .replace(
            "[[FILL IN: how it was fixed, in detail: what was changed, where and by whom]] "
            "(the incident is still open)",
            "Started nginx on lb-01 by hand with systemctl start nginx after checking nginx -t;"
            " the recorder's probe saw it healthy within a minute.",
        )
    )
    result = close_incident(
        store, config, incident.id, **NO_FLAGS, edited_text=edited, force=True, now=CLOSED_AT
    )
    assert result.ok, result.gaps
    closed = store.get(incident.id)
    assert closed is not None and closed.status == "closed"
    assert closed.postmortem["edited"] is True


def test_unknown_incident_is_exit_2(store: Store, config: Config) -> None:
    with pytest.raises(CloseError, match="no incident 99") as refused:
        close_incident(store, config, 99, **NO_FLAGS)
    assert refused.value.exit_code == 2


def test_never_silently_overwrites(store: Store, config: Config) -> None:
    incident = recorded(store, config)
    first = close_incident(store, config, incident.id, **flags(), now=CLOSED_AT)
    assert first.ok and first.path is not None
    written = first.path.read_text()
    # The same close again is a no-op (a retry after a crash), not an error.
    again = close_incident(store, config, incident.id, **flags(), now=CLOSED_AT)
    assert again.ok and again.path == first.path
    # Anything different is refused and leaves the file as it was.
    with pytest.raises(CloseError, match="already closed"):
        close_incident(
            store, config, incident.id, **flags(resolution="Something else entirely, " * 3)
        )
    assert first.path.read_text() == written

    # A file already at the target (someone else's, or a half-finished close) is kept.
    other = recorded(store, config, "nginx-down")
    target = final_path(config, other.id)
    target.write_text("# written by hand\n")
    with pytest.raises(CloseError, match="already exists and differs"):
        close_incident(store, config, other.id, **flags(), now=CLOSED_AT)
    assert target.read_text() == "# written by hand\n"
    still = store.get(other.id)
    assert still is not None and still.status == "resolved"


def test_output_elsewhere(store: Store, config: Config, tmp_path: Path) -> None:
    incident = recorded(store, config)
    out = tmp_path / "INC-final.md"
    result = close_incident(store, config, incident.id, **flags(), output=out, now=CLOSED_AT)
    assert result.ok and result.path == out
    assert mode(out) == 0o600 and lint_file(out) == []
    assert not final_path(config, incident.id).exists()


def test_edited_text_is_linted_like_any_other(store: Store, config: Config) -> None:
    incident = recorded(store, config)
    draft = render_draft(incident, config)
    result = close_incident(store, config, incident.id, **NO_FLAGS, edited_text=draft)
    assert not result.ok and any(PLACEHOLDER_MARK in g for g in result.gaps)
    with pytest.raises(CloseError, match="empty"):
        close_incident(store, config, incident.id, **NO_FLAGS, edited_text="  \n")


def test_edit_in_editor_reads_back_what_was_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "fake editor.py"  # a space: the path must stay one argument
    script.write_text(
        "import sys, pathlib\n"
        "p = pathlib.Path(sys.argv[-1])\n"
        "assert sys.argv[1] == '--flag'\n"
        "p.write_text(p.read_text().replace('DRAFT', 'FINAL'))\n"
    )
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", f"{sys.executable} '{script}' --flag")
    assert edit_in_editor("a DRAFT text\n") == "a FINAL text\n"
    monkeypatch.setenv("EDITOR", f"{sys.executable} -c 'import sys; sys.exit(3)'")
    with pytest.raises(CloseError, match="exited with status 3"):
        edit_in_editor("x")
    monkeypatch.setenv("EDITOR", str(tmp_path / "no-such-editor"))
    with pytest.raises(CloseError, match="cannot start the editor"):
        edit_in_editor("x")


def test_write_draft_keeps_a_private_current_copy(config: Config, store: Store) -> None:
    incident = recorded(store, config)
    path = write_draft(config, incident)
    assert path == draft_path(config, incident.id)
    assert path.read_text() == render_draft(incident, config)
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    incident.postmortem = {"root_cause": "Changed since the last write, said in enough words."}
    write_draft(config, incident)  # the draft is replaced, unlike the final postmortem
    assert "Changed since the last write" in path.read_text()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left


def test_cli_draft_and_close_end_to_end(tmp_path: Path, config: Config, store: Store) -> None:
    incident = recorded(store, config)
    config_file = tmp_path / "recorder.yml"
    config_file.write_text(yaml.safe_dump(lab_config_data(config.state_path)))
    runner = CliRunner()
    base = ["--config", str(config_file)]
    drafted = runner.invoke(main, [*base, "draft", str(incident.id)])
    assert drafted.exit_code == 0, drafted.output
    assert drafted.output == render_draft(incident, config)

    refused = runner.invoke(main, [*base, "close", str(incident.id)])
    assert refused.exit_code == 1, refused.output
    assert (
        "Timeline: placeholder left: [[FILL IN: who was paged and when]]  (fill with "
        "--escalated-to)" in refused.output
    )
    assert "kept for the next attempt" not in refused.output
    partly = runner.invoke(
        main, [*base, "close", str(incident.id), "--root-cause", CLOSE_FLAGS["root_cause"]]
    )
    assert partly.exit_code == 1, partly.output
    assert "kept for the next attempt: --root-cause" in partly.output
    assert "confirm the root cause]]" not in partly.output

    args = [*base, "close", f"INC-{incident.id}"]
    args += ["--root-cause", CLOSE_FLAGS["root_cause"], "--resolution", CLOSE_FLAGS["resolution"]]
    args += ["--escalated-to", CLOSE_FLAGS["escalated_to"]]
    args += ["--misleading", CLOSE_FLAGS["misleading"][0], "--task", CLOSE_FLAGS["tasks"][0]]
    closed = runner.invoke(main, args)
    assert closed.exit_code == 0, closed.output
    path = final_path(config, incident.id)
    assert str(path) in closed.output
    assert lint_file(path) == []
    assert os.stat(path).st_mode & 0o077 == 0
    assert "postmortem written to" in closed.output

    # Closing again writes nothing, and says so; a note can no longer reach the document.
    before = path.read_text()
    again = runner.invoke(main, args)
    assert again.exit_code == 0, again.output
    assert "already closed" in again.output and "unchanged" in again.output
    assert "written" not in again.output
    note = runner.invoke(main, [*base, "note", str(incident.id), "one more thing"])
    assert note.exit_code == 1, note.output
    assert "is closed" in note.output and str(path) in note.output
    assert path.read_text() == before
    stored = store.get(incident.id)
    assert stored is not None and all(e.text != "one more thing" for e in stored.timeline)
    # `draft` of a closed incident shows its final postmortem, not the draft (#16).
    shown = runner.invoke(main, [*base, "draft", str(incident.id)])
    assert shown.exit_code == 0, shown.output
    assert shown.stdout == before
    assert "Draft kept by the recorder" not in shown.stdout
    assert "is closed: this is its final postmortem" in shown.stderr
    html = runner.invoke(main, [*base, "draft", str(incident.id), "--format", "html"])
    assert html.exit_code == 0 and PLACEHOLDER_MARK not in html.stdout
    assert "Draft kept by the recorder" not in html.stdout


def test_a_one_word_root_cause_or_a_vague_task_is_refused(store: Store, config: Config) -> None:
    """The recorder's candidate beside a one-word --root-cause made the section long
    enough, and a vague --task beside the runbook's tasks passed (#16): each flag is held
    to the standard itself, and its hint names that flag."""
    incident = recorded(store, config)
    result = close_incident(
        store,
        config,
        incident.id,
        **flags(root_cause="nginx", resolution="fixed it", tasks=["Improve monitoring"]),
        now=CLOSED_AT,
    )
    assert not result.ok
    assert result.gaps == [
        "Root cause and resolution: --root-cause is not explained in detail (1 words; at least 20)",
        "Root cause and resolution: --resolution is not explained in detail (2 words; at least 20)",
        "Corrective and preventative measures: --task 'Improve monitoring' is too vague to "
        "act on (name an action and what it acts on: a host, file, command, tool or number)",
    ]
    assert result.fills == ["--root-cause", "--resolution", "--task"]
    stored = store.get(incident.id)
    assert stored is not None and "Improve monitoring" not in stored.postmortem.get("tasks", [])
    assert close_incident(store, config, incident.id, **flags(), now=CLOSED_AT).ok
