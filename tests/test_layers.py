"""What flows up from probes/: `details` is display data. Above probes/, only the named
display function (recorder/display.py `shown`) reads it; everything else reads the typed
facts (probes/facts.py)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.fixtures import parse_source

RECORDER = Path(__file__).resolve().parents[1] / "recorder"
DISPLAY = (RECORDER / "display.py", "shown")


def _details_reads(path: Path) -> list[str]:
    """Every place in `path` that reads an observation's details: `x.details` and
    `x["details"]` / `x.get("details")` on its JSON, outside the display function."""
    tree = parse_source(path)
    allowed: set[int] = set()
    if path == DISPLAY[0]:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == DISPLAY[1]:
                allowed |= {id(n) for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if id(node) in allowed:
            continue
        hit = (
            (isinstance(node, ast.Attribute) and node.attr == "details")
            or (
                isinstance(node, ast.Subscript)
                and isinstance(node.slice, ast.Constant)
                and node.slice.value == "details"
            )
            or (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and node.args[0].value == "details"
            )
        )
        if hit:
            where = path.relative_to(RECORDER.parent) if path.is_relative_to(RECORDER) else path
            found.append(f"{where}:{getattr(node, 'lineno', '?')}")
    return found


def test_details_are_read_only_by_the_display_function() -> None:
    reads = [r for path in sorted(RECORDER.rglob("*.py")) for r in _details_reads(path)]
    assert reads == [], "read facts instead, or go through recorder.display.shown"


def test_the_check_sees_a_details_read(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def f(obs, row):\n"
        "    a = obs.details.get('first_5xx')\n"
        "    b = row['details']['x']\n"
        "    return a, b, row.get('details')\n"
    )
    assert len(_details_reads(sample)) == 3


# The engine and the drafter read facts and faults, never a probe by its name (#15): a
# new probe that states the same facts is read the same way, and touches neither.
ENGINE = (RECORDER / "incidents.py", RECORDER / "postmortem" / "draft.py")


def _probe_names_in(path: Path) -> list[str]:
    from probes.registry import PROBES

    tree = parse_source(path)
    return [
        f"{path.name}:{node.lineno}: {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in PROBES
    ]


def test_the_engine_and_the_drafter_name_no_probe() -> None:
    assert [hit for path in ENGINE for hit in _probe_names_in(path)] == []


def test_the_probe_name_check_sees_a_name(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('latest.get((host, "upstreams"))\n')
    assert _probe_names_in(sample) == ["sample.py:1: 'upstreams'"]


def test_no_probe_imports_another_probe() -> None:
    """Probes share helpers through modules of their own (nginxcli, nginxconf, follow,
    accesslog ...), never through another probe's module (#15: upstreams imported six
    helpers from the config probe)."""
    from probes.registry import PROBES

    probes_dir = RECORDER.parent / "probes"
    found = []
    for name in PROBES:
        tree = parse_source(probes_dir / f"{name}.py")
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported = node.module.removeprefix("probes.")
                if node.module.startswith("probes.") and imported in PROBES:
                    found.append(f"{name} imports {node.module}")
                if node.module == "probes":
                    found += [
                        f"{name} imports probes.{a.name}" for a in node.names if a.name in PROBES
                    ]
    assert found == []
