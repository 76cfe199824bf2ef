"""One private atomic write (issue 15): every private file the recorder writes goes through
`probes.private.write_private`, and no other module carries its own copy."""

from __future__ import annotations

import ast
import os
import stat
from pathlib import Path

import pytest

from probes.private import write_private
from tests.fixtures import parse_source

ROOT = Path(__file__).resolve().parent.parent


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_private_is_0600_whatever_the_umask_and_leaves_nothing_behind(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.json"
    old = os.umask(0)
    try:
        write_private(path, "one")
        write_private(path, b"two")
    finally:
        os.umask(old)
    assert path.read_text() == "two"
    assert mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_exclusive_write_never_replaces_a_file(tmp_path: Path) -> None:
    path = tmp_path / "INC-1.md"
    write_private(path, "first", exclusive=True)
    with pytest.raises(FileExistsError):
        write_private(path, "second", exclusive=True)
    assert path.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["INC-1.md"]


def _calls(tree: ast.AST) -> set[str]:
    """`os.fsync`, `os.replace`, `tempfile.mkstemp` ... called in a module."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            value = node.func.value
            if isinstance(value, ast.Name):
                found.add(f"{value.id}.{node.func.attr}")
        if isinstance(node, ast.Attribute) and node.attr == "O_EXCL":
            found.add("os.O_EXCL")
    return found


def test_no_module_has_its_own_copy_of_the_atomic_write() -> None:
    # The lab's non-private files (its state, pid files, nginx confs) are renamed into
    # place too, but need neither fsync nor mode 0600: only fsync and O_EXCL mark a copy.
    copies = {}
    for path in sorted([*ROOT.glob("recorder/**/*.py"), *ROOT.glob("probes/**/*.py")]):
        if path.name == "private.py":
            continue
        used = _calls(parse_source(path)) & {"os.fsync", "os.O_EXCL", "tempfile.mkstemp"}
        if used:
            copies[str(path.relative_to(ROOT))] = sorted(used)
    assert copies == {}
