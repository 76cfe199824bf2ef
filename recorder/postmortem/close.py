"""Finalizing a postmortem (`recorder close`), and the draft file the daemon keeps current.

Closing renders the final document from the incident and what people said (flags), or
takes the text they wrote in their editor, and holds it to the postmortem standard
(docs/postmortem-standard.md) with `lint`. While a gap or a FILL IN marker remains it
refuses and lists every gap by section. Once closed,
the final Markdown is written beside the store (0600, atomically) and is never replaced:
a second close that would write something different is refused.
"""

from __future__ import annotations

import os
import re
import shlex
import sqlite3
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from probes.private import write_private
from recorder.config import Config
from recorder.fillin import PLACEHOLDER_MARK
from recorder.model import Incident, IncidentStatus, Notice, Task, utcnow
from recorder.postmortem.document import MEASURES, ROOT
from recorder.postmortem.draft import one_line, render_draft
from recorder.postmortem.lint import (
    DOCUMENT,
    MIN_EXPLANATION_WORDS,
    is_specific_task,
    lint_text,
)
from recorder.store import Store, StoreError, ensure_private_dir


class CloseError(Exception):
    """Closing cannot go ahead; `exit_code` is what the CLI exits with (2: no such
    incident, 1: refused)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class CloseResult:
    ok: bool
    gaps: list[str] = field(default_factory=list)  # "Section: what is missing", by section
    path: Path | None = None
    # Beside each gap, what fills it ("--resolution", "--edit", ...): same order as gaps.
    fills: list[str] = field(default_factory=list)
    unchanged: bool = False  # already closed with this very text: nothing was written


# ---- files ----------------------------------------------------------------------------------


def draft_path(config: Config, incident_id: int) -> Path:
    return config.state_path / "drafts" / f"INC-{incident_id}.md"


def final_path(config: Config, incident_id: int) -> Path:
    return config.state_path / "postmortems" / f"INC-{incident_id}.md"


def atomic_write(path: Path, text: str, *, exclusive: bool = False) -> None:
    """Write `text` to `path` with mode 0600 so a reader sees the old file or the new one,
    never half of it. `exclusive`: fail with FileExistsError rather than replace a file
    (two closes racing cannot both write, nor replace a postmortem written earlier)."""
    write_private(path, text, exclusive=exclusive)


def write_draft(config: Config, incident: Incident) -> Path:
    """Render the incident's draft into `<state_dir>/drafts/INC-<id>.md` (the daemon calls
    this whenever an open incident changes and when it resolves)."""
    path = draft_path(config, incident.id)
    ensure_private_dir(path.parent)
    text = render_draft(incident, config, "md")
    if not _same_text(path, text):  # most ticks change nothing: no write, no fsync
        atomic_write(path, text)
    return path


# ---- the editor -----------------------------------------------------------------------------


def edit_in_editor(text: str) -> str:
    """Open `text` in $VISUAL or $EDITOR (default vi) and return what was saved, the way
    `git commit` does. The editor command is split like a shell would, never run by one."""
    command = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise CloseError(f"cannot read $EDITOR {command!r}: {exc}") from None
    if not argv:
        raise CloseError("$EDITOR is empty; set it to an editor command")
    with tempfile.TemporaryDirectory(prefix="recorder-close-") as directory:
        path = Path(directory) / "POSTMORTEM.md"
        atomic_write(path, text)
        try:
            done = subprocess.run([*argv, str(path)], check=False)
        except OSError as exc:
            raise CloseError(
                f"cannot start the editor {argv[0]!r}: {exc.strerror or exc}"
            ) from None
        if done.returncode != 0:
            raise CloseError(f"the editor exited with status {done.returncode}; not closed")
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CloseError(f"cannot read back what the editor saved: {exc}") from None


# ---- closing ------------------------------------------------------------------------------------


def merge_postmortem(
    stored: Mapping[str, Any],
    *,
    root_cause: str | None = None,
    resolution: str | None = None,
    misleading: Sequence[str] = (),
    escalated_to: str | None = None,
    tasks: Sequence[str] = (),
    affected: str | None = None,
) -> dict[str, Any]:
    """What was stored, with the flags given now: a text flag replaces, a list flag adds."""
    merged = dict(stored)
    for key, value in (
        ("root_cause", root_cause),
        ("resolution", resolution),
        ("escalated_to", escalated_to),
        ("affected", affected),
    ):
        if value is not None and value.strip():
            merged[key] = value.strip()
    for key, values in (("misleading", misleading), ("tasks", tasks)):
        have = [str(v) for v in merged.get(key) or []]
        for value in values:
            if value.strip() and value.strip() not in have:
                have.append(value.strip())
        if have:
            merged[key] = have
    return merged


_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$|^\s*<h[1-6][^>]*>(.*?)</h[1-6]>", re.I)
_BULLET = re.compile(r"^\s*(?:[-*+]|o|\d+[.)])\s+(?:\[[ xX]\]\s+)?(.+)$")


def document_tasks(text: str) -> list[str]:
    """The bullets under the document's Tasks heading: what the store keeps as tasks."""
    tasks: list[str] = []
    inside = False
    for line in text.splitlines():
        heading = _HEADING.match(line)
        if heading:
            inside = "task" in (heading.group(1) or heading.group(2) or "").lower()
            continue
        bullet = _BULLET.match(line) if inside else None
        if bullet:
            tasks.append(one_line(bullet.group(1)))
    return tasks


# Which `close` flag fills each placeholder the drafter writes (draft.py's fill_in texts).
# Anything else (an end time, a broad improvement, a section rewritten by hand) is
# filled in the editor.
_FILLED_BY = {
    "confirm the root cause": "--root-cause",
    "the root cause in a sentence or two": "--root-cause",
    "confirm the root cause, explained in detail": "--root-cause",
    "what fixed it": "--resolution",
    "how the incident was resolved": "--resolution",
    "how it was fixed, in detail: what was changed, where and by whom": "--resolution",
    "who was paged and when": "--escalated-to",
    'misleading paths taken, or "none"': "--misleading",
    "the share of users affected, as a percentage": "--affected",
    "specific corrective tasks, one per line": "--task",
    # What people did is recorded as it happens; `close` has no flag for it.
    "what people investigated or changed, and what they assumed the cause was": (
        "`recorder note ID --kind action TEXT`"
    ),
}
# The timeline parts lint finds missing (lint's _COVERAGE messages) that a flag adds.
_COVERED_BY = {
    "no misleading investigation": "--misleading",
    "no entry says how the incident was resolved": "--resolution",
    "no entry describes the actions taken": "`recorder note ID --kind action TEXT`",
    "no escalation": "--escalated-to",
}
_PLACEHOLDER_GAP = re.compile(r"placeholder left: \[\[FILL IN: (?P<what>.*?)\]\]")
_PLACEHOLDER = re.compile(r"\[\[FILL IN: (?P<what>.*?)\]\]")
_EDIT = "--edit"


def fill_hint(gap: str, text: str, section_tasks: Sequence[str] = ()) -> str:
    """The flag that fills `gap` (a line of `_gaps`) in the document `text`.

    A `time` placeholder belongs to its timeline line: it is filled by the flag of the
    other placeholder on that line (`--escalated-to` gives the escalation and its time).
    A runbook task still missing a value is replaced by giving tasks of your own."""
    for given in ("--root-cause", "--resolution", "--task"):
        if f": {given} " in gap:  # a flag given too short or too vague: give it again
            return given
    for start, option in _COVERED_BY.items():
        if start in gap:
            return option
    match = _PLACEHOLDER_GAP.search(gap)
    if match is None:
        return _EDIT
    what = match.group("what")
    if what in _FILLED_BY:
        return _FILLED_BY[what]
    if what == "time":
        flags: list[str] = []
        for line in text.splitlines():
            if "[[FILL IN: time]]" not in line:
                continue
            for other in _PLACEHOLDER.finditer(line):
                flag = _FILLED_BY.get(other.group("what"))
                if flag and flag not in flags:
                    flags.append(flag)
        return " or ".join(flags) if flags else _EDIT
    if gap.startswith("Corrective") or any(f"[[FILL IN: {what}]]" in t for t in section_tasks):
        return "--task"
    return _EDIT


def short_flags(merged: Mapping[str, Any]) -> list[str]:
    """The root cause and resolution people gave, each held to the standard's length on
    its own: in the rendered section the recorder's candidate and evidence stand beside
    them, so lint's count of the section passed a one-word `--root-cause`."""
    gaps: list[str] = []
    for key, flag in (("root_cause", "--root-cause"), ("resolution", "--resolution")):
        value = str(merged.get(key) or "")
        n = len(value.split())
        if value and n < MIN_EXPLANATION_WORDS:
            gaps.append(
                f"{ROOT}: {flag} is not explained in detail ({n} words; at least "
                f"{MIN_EXPLANATION_WORDS})"
            )
    return gaps


def _gaps(text: str, name: str) -> list[str]:
    """Every gap `lint` finds, one line each, in the document's section order."""
    lines: list[str] = []
    for gap in lint_text(text, name):  # already in section order
        line = f"{gap.section}: {gap.message}"
        if line not in lines:
            lines.append(line)
    if not lines and PLACEHOLDER_MARK in text:
        # lint reports placeholders itself; this only guards the rule that none survives.
        lines.append(f"{DOCUMENT}: a {PLACEHOLDER_MARK} placeholder remains")
    return lines


def close_incident(
    store: Store,
    config: Config,
    incident_id: int,
    *,
    root_cause: str | None,
    resolution: str | None,
    misleading: Sequence[str],
    escalated_to: str | None,
    tasks: Sequence[str],
    affected: str | None,
    edited_text: str | None = None,
    force: bool = False,
    output: Path | None = None,
    now: datetime | None = None,
) -> CloseResult:
    """Finalize the postmortem of `incident_id`.

    Returns ok=False with the gaps when the document would fail `lint` (nothing is written
    then); raises CloseError when closing cannot go ahead at all (no such incident, still
    open without `force`, a different final postmortem already written, a write failed).
    """
    incident = store.get(incident_id)
    if incident is None:
        raise CloseError(f"no incident {incident_id} in {config.state_path}", exit_code=2)
    ref = incident.ref
    if incident.status == IncidentStatus.OPEN and not force:
        raise CloseError(
            f"{ref} is still open: the recorder has not seen every signal recover. "
            "Close it anyway with --force once the outage is over."
        )
    # A vague --task is refused before it is stored: tasks add up over attempts, and a
    # kept "improve monitoring" could then only be removed in the editor.
    vague = [t.strip() for t in tasks if t.strip() and not is_specific_task(t)]
    merged = merge_postmortem(
        incident.postmortem,
        root_cause=root_cause,
        resolution=resolution,
        misleading=misleading,
        escalated_to=escalated_to,
        tasks=[t for t in tasks if t.strip() not in vague],
        affected=affected,
    )
    if edited_text is not None:
        text = edited_text.replace("\r\n", "\n")
        if not text.strip():
            raise CloseError(f"the postmortem is empty; {ref} not closed")
        if not text.endswith("\n"):
            text += "\n"
    else:
        text = render_draft(incident, config, "md", overrides=merged, final=True)

    path = output or final_path(config, incident.id)
    if incident.status == IncidentStatus.CLOSED:
        # Only a retry that would write exactly what is there succeeds: a closed
        # postmortem is amended by editing its file, never by a second close.
        if _same_text(path, text):
            return CloseResult(ok=True, gaps=[], path=path, unchanged=True)
        raise CloseError(
            f"{ref} is already closed; its postmortem is not rewritten "
            f"(edit {incident.postmortem.get('path') or path} by hand instead)"
        )
    gaps = _gaps(text, str(path))
    if edited_text is None:
        gaps = (
            short_flags(merged)
            + gaps
            + [
                f"{MEASURES}: --task {one_line(t)!r} is too vague to act on (name an action and "
                "what it acts on: a host, file, command, tool or number)"
                for t in vague
            ]
        )
    if gaps:
        try:
            store.save_postmortem(incident.id, merged)  # the next attempt keeps these flags
        except (sqlite3.Error, StoreError):
            pass  # nothing is lost: the person still has the command line they typed
        tasks_now = document_tasks(text)
        fills = [
            fill_hint(gap, text, tasks_now).replace("note ID", f"note {incident.id}")
            for gap in gaps
        ]
        return CloseResult(ok=False, gaps=gaps, path=None, fills=fills)

    try:
        if output is None:
            ensure_private_dir(path.parent)
        atomic_write(path, text, exclusive=True)
    except FileExistsError:
        if not _same_text(path, text):
            raise CloseError(
                f"{path} already exists and differs from this postmortem; not overwritten "
                "(move it away, or write elsewhere with -o)"
            ) from None
    except OSError as exc:
        raise CloseError(f"cannot write {path}: {exc.strerror or exc}") from None

    merged["path"] = str(path)
    if edited_text is not None:
        merged["edited"] = True
    final_tasks = [Task(text=t) for t in document_tasks(text)]
    closed_at = now or utcnow()
    planned = incident.planned  # over inside its maintenance window: untold
    receivers = [] if planned else config.notify.receivers_for(incident.service, "closed")
    notices = [Notice("closed", "closed", closed_at, receivers, f"Postmortem written: {path.name}")]
    try:
        store.close_incident(
            incident.id, merged, final_tasks, closed_at, notices if receivers else []
        )
    except (sqlite3.Error, StoreError) as exc:
        # The file is written; a retry finds it identical and completes the close.
        raise CloseError(
            f"{path} written, but the store could not record the close: {exc}"
        ) from None
    return CloseResult(ok=True, gaps=[], path=path)


def _same_text(path: Path, text: str) -> bool:
    try:
        return path.read_text(encoding="utf-8") == text
    except (OSError, UnicodeDecodeError):
        return False
