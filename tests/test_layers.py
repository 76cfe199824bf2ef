"""What flows up from probes/: `details` is display data. Above probes/, only the named
display function (recorder/display.py `shown`) reads it; everything else reads the typed
facts (probes/facts.py)."""

from __future__ import annotations

import ast
from pathlib import Path

RECORDER = Path(__file__).resolve().parents[1] / "recorder"
DISPLAY = (RECORDER / "display.py", "shown")


def _details_reads(path: Path) -> list[str]:
    """Every place in `path` that reads an observation's details: `x.details` and
    `x["details"]` / `x.get("details")` on its JSON, outside the display function."""
    tree = ast.parse(path.read_text(), filename=str(path))
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
