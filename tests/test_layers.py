"""What flows up from probes/: `details` is display data. Above probes/, only the named
display function (recorder/display.py `shown`) reads it; everything else reads the typed
facts (probes/facts.py)."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

from tests.fixtures import parse_source

RECORDER = Path(__file__).resolve().parents[1] / "recorder"
DISPLAY = (RECORDER / "display.py", "shown")


def _details_reads(path: Path) -> list[str]:
    """Every place in `path` that reads an observation's details: `x.details`,
    `getattr(x, "details")` and `x["details"]` / `x.get("details")` on its JSON, outside
    the display function."""
    tree = parse_source(path)
    allowed: set[int] = set()
    if path == DISPLAY[0]:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == DISPLAY[1]:
                allowed |= {id(n) for n in ast.walk(node)}
    return _key_reads(path, tree, ("details",), allowed, attribute=True)


def _key_reads(
    path: Path, tree: ast.Module, keys: tuple[str, ...], allowed: set[int], attribute: bool
) -> list[str]:
    """Where `path` reads one of `keys` by string (`x["k"]`, `x.get("k")`, `x.pop("k")`,
    `x.setdefault("k")`, `getattr(x, "k")`), and as an attribute (`x.k`) when `attribute`."""
    found = []
    for node in ast.walk(tree):
        if id(node) in allowed:
            continue
        hit = (
            (attribute and isinstance(node, ast.Attribute) and node.attr in keys)
            or (
                isinstance(node, ast.Subscript)
                and isinstance(node.slice, ast.Constant)
                and node.slice.value in keys
            )
            or (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("get", "pop", "setdefault")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and node.args[0].value in keys
            )
            or (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "getattr"
                and len(node.args) > 1
                and isinstance(node.args[1], ast.Constant)
                and node.args[1].value in keys
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
        "    return a, b, row.get('details'), getattr(obs, 'details', {})\n"
    )
    assert len(_details_reads(sample)) == 4


# The engine and the drafter read facts and faults, never a probe by its name (#15): a
# new probe that states the same facts is read the same way, and touches neither. The
# same holds for everything else that reads observations or incidents (the metrics, the
# daemon, `incidents show`, the web pages, notifications). Left out: the lab (it writes
# the config that names the probes) and modules where "config" is the configuration.
NOT_READERS = ("lab/", "cli.py", "config.py", "maintenance.py", "yamlfile.py")
READERS = tuple(
    path
    for path in sorted(RECORDER.rglob("*.py"))
    if not str(path.relative_to(RECORDER)).startswith(NOT_READERS)
)


def _probe_names_in(path: Path) -> list[str]:
    """String constants naming a probe: the name itself ("upstreams"), or an evidence term
    or the head of one built in an f-string ("upstreams:upstream-down", f"error_rate:{f}")."""
    from probes.base import Fault
    from probes.registry import PROBES

    after = {"", "ok", *(str(f) for f in Fault)}
    tree = parse_source(path)
    named = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and (
            node.value in PROBES
            or (node.value.partition(":")[0] in PROBES and node.value.partition(":")[2] in after)
        )
    ]
    named.sort(key=lambda node: (node.lineno, node.col_offset))
    return [f"{path.name}:{node.lineno}: {node.value!r}" for node in named]


def test_nothing_that_reads_observations_names_a_probe() -> None:
    assert RECORDER / "incidents.py" in READERS and RECORDER / "metrics.py" in READERS
    assert [hit for path in READERS for hit in _probe_names_in(path)] == []


def test_the_probe_name_check_sees_a_name(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        'latest.get((host, "upstreams"))\n'
        'terms["upstreams:upstream-down"]\n'
        'term = f"error_rate:{fault}"\n'
        'url = "http://" + "config: " + "sites:x"\n'
    )
    assert _probe_names_in(sample) == [
        "sample.py:1: 'upstreams'",
        "sample.py:2: 'upstreams:upstream-down'",
        "sample.py:3: 'error_rate:'",
    ]


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


def test_the_fill_in_marker_is_taken_from_its_own_module() -> None:
    """The marker lives below runbooks, drafter, lint and the web pages (recorder/fillin.py,
    #15): each takes it from there, not through another of them. The postmortem package
    re-exports it as part of its public names."""
    reexport = RECORDER / "postmortem" / "__init__.py"
    found = [
        f"{path.relative_to(RECORDER.parent)} from {node.module}"
        for path in sorted(RECORDER.rglob("*.py"))
        if path != reexport
        for node in ast.walk(parse_source(path))
        if isinstance(node, ast.ImportFrom)
        and node.module != "recorder.fillin"
        and {a.name for a in node.names} & {"PLACEHOLDER_MARK", "fill_in"}
    ]
    assert found == []


# An incident's signals are typed records (recorder/model.py SignalRecord, SignalState),
# not dicts whose "state" strings run a second state machine beside the detector's (#15).
# Only the store reads their rows' JSON (model.py's record converts itself). cli.py's
# `r["state"]` is a notification delivery's column, not a signal's.
SIGNAL_ROWS = ("store.py", "model.py", "cli.py")


def _signal_key_reads(path: Path) -> list[str]:
    return _key_reads(path, parse_source(path), ("signals", "state"), set(), attribute=False)


# An incident's bookkeeping in its JSON column (`Incident.data`) is read and written
# through the model's named properties (planned, seen_terms, top_fault, ...), which only
# model.py defines; the store moves the column, and old signals out of it, as a whole.
DATA_KEEPERS = ("model.py", "store.py")


def _data_key_reads(path: Path) -> list[str]:
    """`x.data["k"]`, `x.data.get(...)`, `.setdefault(...)`, `.pop(...)` in `path`."""
    found = []
    for node in ast.walk(parse_source(path)):
        target = (
            node.value
            if isinstance(node, ast.Subscript)
            else node.func.value
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("get", "pop", "setdefault")
            else None
        )
        if isinstance(target, ast.Attribute) and target.attr == "data":
            found.append(f"{path.name}:{getattr(node, 'lineno', '?')}")
    return found


def _reads_above(keepers: tuple[str, ...], find: Callable[[Path], list[str]]) -> list[str]:
    paths = [p for p in sorted(RECORDER.rglob("*.py")) if p.name not in keepers]
    assert RECORDER / "incidents.py" in paths and RECORDER / "show.py" in paths
    return [r for path in paths for r in find(path)]


def test_signals_are_read_as_records_above_the_store() -> None:
    reads = _reads_above(SIGNAL_ROWS, _signal_key_reads)
    assert reads == [], "read the SignalRecord's fields (sig.firing, sig.state), not its JSON"


def test_incident_bookkeeping_is_read_by_name() -> None:
    reads = _reads_above(DATA_KEEPERS, _data_key_reads)
    assert reads == [], "add a named property on recorder.model.Incident"


def test_the_signal_and_bookkeeping_checks_see_a_key(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def f(incident, sig, data):\n"
        "    a = incident.data.get('signals', {})\n"
        "    b = sig['state'] == 'firing' or data.get('x') or data['y']\n"
        "    incident.data['planned'] = sig.get('state')\n"
        "    return a, b, sig.state, incident.data.setdefault('ruled_out', [])\n"
    )
    assert sorted(Path(r).name for r in _signal_key_reads(sample)) == [
        "sample.py:2",
        "sample.py:3",
        "sample.py:4",
    ]
    assert sorted(_data_key_reads(sample)) == ["sample.py:2", "sample.py:4", "sample.py:5"]
