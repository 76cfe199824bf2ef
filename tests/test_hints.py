"""Every command the CLI, the lab and the demo tell a person to type runs as printed.

The hints are collected from what is really printed (`recorder lab up`'s output, the header
of the recorder.yml it writes, the lab's refusals, the `say` lines of scripts/demo.sh),
then each is run. A hint that would start something long-lived (the daemon, a lab, lab
traffic) is run with `--help` appended: click still parses every option before it, so an
option the command does not take fails the same way.
"""

from __future__ import annotations

import re
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from recorder.cli import main
from recorder.config import load_config
from recorder.lab import Lab
from recorder.store import Store
from tests.test_draft import LAB_FAULTS, build_incident

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")

DEMO = Path(__file__).parent.parent / "scripts" / "demo.sh"
# Commands that would keep running: checked with --help instead.
LONG_RUNNING = (("run",), ("lab", "up"), ("lab", "traffic"))
# Words a hint leaves for the reader to fill in, and what the tests fill in.
PLACEHOLDERS = {"FAULT": "missing-symlink"}


def hints_in(text: str) -> list[str]:
    """The commands a text tells its reader to type: `recorder ...` in backticks, or
    `recorder ...` after a colon up to the end of the line (a trailing "(...)" is a
    comment, not part of the command)."""
    found = re.findall(r"`(recorder [^`]+)`", text)
    for line in text.splitlines():
        match = re.search(r":\s+(recorder\s[^`]*?)\s*(?:\([^)]*\))?\s*$", line)
        if match:
            found.append(match.group(1))
    return found


def run_hint(hint: str) -> Result:
    words = [PLACEHOLDERS.get(w, w) for w in shlex.split(hint)]
    assert words[0] == "recorder", hint
    args = words[1:]
    if any(tuple(args[: len(c)]) == c for c in LONG_RUNNING):
        args.append("--help")
    # Neither the environment's config nor a previous hint may stand in for the one given.
    return CliRunner().invoke(main, args, env={"RECORDER_CONFIG": None})


def assert_runs(hint: str) -> None:
    result = run_hint(hint)
    assert result.exit_code == 0, f"{hint!r} failed ({result.exit_code}):\n{result.output}"


@pytest.fixture(scope="module")
def lab_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, str]]:
    directory = tmp_path_factory.mktemp("hints") / "lab"
    lab = Lab(directory)
    try:
        result = CliRunner().invoke(main, ["lab", "up", "--dir", str(directory)])
        assert result.exit_code == 0, result.output
        # An incident in its store, for the hints that name one.
        config = load_config(lab.config_path)
        store = Store(config.state_path)
        try:
            store.create_incident(build_incident(LAB_FAULTS["missing-symlink"], config))
        finally:
            store.close()
        yield lab, result.output
    finally:
        lab.down()


@pytest.fixture
def lab(lab_up: tuple[Lab, str]) -> Iterator[Lab]:
    yield lab_up[0]
    if lab_up[0].faults:
        lab_up[0].fix()


def test_hints_finds_the_commands_and_leaves_prose() -> None:
    text = (
        "watch it:        recorder run --config /x/r.yml\n"
        "no lab in /x (run `recorder lab up` first)\n"
        "waiting: for recorder to open an incident\n"
        "say: recorder run --config /c (background, log in /l)\n"
    )
    assert hints_in(text) == [
        "recorder lab up",
        "recorder run --config /x/r.yml",
        "recorder run --config /c",
    ]


def test_lab_up_hints_run_as_printed(lab_up: tuple[Lab, str], lab: Lab) -> None:
    hints = hints_in(lab_up[1])
    assert any(h.startswith("recorder run ") for h in hints), lab_up[1]
    assert any(h.startswith("recorder lab break ") for h in hints), lab_up[1]
    for hint in hints:
        assert_runs(hint)


def test_generated_config_header_hints_run_as_printed(lab: Lab) -> None:
    header = "\n".join(
        line for line in lab.config_path.read_text().splitlines() if line.startswith("#")
    )
    hints = hints_in(header)
    assert any(h.startswith("recorder run ") for h in hints), header
    for hint in hints:
        assert_runs(hint)


def test_lab_refusal_hints_run_as_printed(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["lab", "fix", "--dir", str(tmp_path / "nolab")])
    assert result.exit_code == 2
    hints = hints_in(result.output)
    assert hints, result.output
    for hint in hints:
        assert_runs(hint)
        # `lab up` runs with --help here: the directory is what says it is the right lab
        # (a bare `recorder lab up` starts one in ./lab).
        assert shlex.split(hint)[-2:] == ["--dir", str(tmp_path / "nolab")], hint


def test_missing_config_hint_runs_as_printed(lab: Lab) -> None:
    result = CliRunner().invoke(main, ["incidents", "list"], env={"RECORDER_CONFIG": None})
    assert result.exit_code == 2 and "give --config FILE" in result.output
    # The hint names the option; used as it says, after the command, it works.
    assert_runs(f"recorder incidents list --config {lab.config_path}")


def demo_hints(lab: Lab) -> list[str]:
    """The commands scripts/demo.sh prints (its `say` lines naming a command), with the
    script's variables as the demo would have them for this lab."""
    values = {
        "$LAB": str(lab.dir),
        "$CONFIG": str(lab.config_path),
        "$id": "1",
        "$traffic_seconds": "330",
        "${args[*]}": f"missing-symlink --dir {lab.dir}",
    }
    found = []
    for said in re.findall(r'^\s*say "(.*)"\s*$', DEMO.read_text(), re.MULTILINE):
        for name, value in values.items():
            said = said.replace(name, value)
        found += hints_in(f"say: {said}")
    return found


def test_demo_hints_run_as_printed(lab: Lab) -> None:
    hints = demo_hints(lab)
    commands = [" ".join(shlex.split(h)[1:3]) for h in hints]
    for expected in ("lab up", "run --config", "lab traffic", "lab break", "lab fix"):
        assert expected in commands, hints
    assert any(h.startswith("recorder incidents show") for h in hints), hints
    assert any(h.startswith("recorder draft") for h in hints), hints
    for hint in hints:
        assert "$" not in hint, f"a demo variable the test does not know: {hint}"
        assert_runs(hint)
