"""Runbooks: one per fault kind, every section present and non-empty, every problem in a
runbook file refused with its field path, and task templates that render to tasks `lint`
accepts as specific."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from probes.base import Fault
from recorder.postmortem.lint import PLACEHOLDER_MARK, is_specific_task, lint_text
from recorder.resources import data_path
from recorder.runbooks import (
    PLACEHOLDERS,
    Runbook,
    RunbookError,
    is_known_term,
    load_runbooks,
    parse_runbook,
)
from tests.fixtures import parse_source

SHIPPED = data_path("runbooks")
SECTIONS = [
    "title",
    "symptoms",
    "users_experience",
    "causes",
    "resolution",
    "misleading",
    "improvements",
    "tasks",
]
FULL_CONTEXT = {
    "host": "lb-01",
    "site": "example",
    "file": "/etc/nginx/sites-available/example",
    "line": "12",
    "service": "web",
    "url": "http://lb-01/",
    "backend": "10.0.0.12:80",
    "version": "4.12.0",
}


def test_every_fault_kind_has_a_runbook_with_every_section() -> None:
    runbooks = load_runbooks()
    assert set(runbooks) == set(Fault)
    for fault, book in runbooks.items():
        assert book.fault is fault
        assert (SHIPPED / f"{fault}.yml").is_file()
        raw = yaml.safe_load((SHIPPED / f"{fault}.yml").read_text(encoding="utf-8"))
        for section in SECTIONS:
            value = raw.get(section)
            assert value, f"{fault}: section {section} is missing or empty"
            if isinstance(value, list):
                assert all(isinstance(v, str) and v.strip() for v in value), (fault, section)


def test_runbooks_read_as_expert_advice() -> None:
    # Thin runbooks are the failure this guards against: the knowledge is what we ship.
    for fault, book in load_runbooks().items():
        assert len(book.causes.split()) >= 60, fault
        assert len(book.resolution) >= 4, fault
        assert len(book.misleading) >= 3, fault
        assert len(book.improvements) >= 2, fault
        assert len(book.tasks) >= 4, fault
        assert book.users_experience.endswith("."), fault
        # The runbook's own alert always counts for its fault.
        assert f"alert:{fault}" in book.symptoms.requires, fault


def test_rendered_tasks_are_specific_enough_for_lint() -> None:
    for fault, book in load_runbooks().items():
        for task in book.render_tasks(FULL_CONTEXT):
            assert PLACEHOLDER_MARK not in task and "{" not in task.replace("{}", ""), task
            assert is_specific_task(task), f"{fault}: lint would call this vague: {task}"


def test_missing_context_becomes_a_marker_lint_reports() -> None:
    book = load_runbooks()[Fault.MISSING_SYMLINK]
    tasks = book.render_tasks({"host": "lb-01", "site": ""})
    assert tasks[0] == (
        "Restore the link on lb-01: ln -s /etc/nginx/sites-available/[[FILL IN: site]] "
        "/etc/nginx/sites-enabled/[[FILL IN: site]]"
    )
    doc = "## Corrective and preventative measures\n\n" + "\n".join(f"- {t}" for t in tasks)
    messages = [g.message for g in lint_text(doc) if g.section.startswith("Corrective")]
    assert "placeholder left: [[FILL IN: site]]" in messages
    assert "placeholder left: [[FILL IN: url]]" in messages


def test_values_are_not_reinterpreted_as_templates() -> None:
    book = load_runbooks()[Fault.MISSING_SYMLINK]
    task = book.render_tasks({**FULL_CONTEXT, "host": "{site}", "site": "a{b}c"})[0]
    assert task.startswith("Restore the link on {site}: ln -s /etc/nginx/sites-available/a{b}c")


def test_loading_is_cached_per_directory(tmp_path: Path) -> None:
    assert load_runbooks() == load_runbooks(SHIPPED)
    copy = tmp_path / "runbooks"
    shutil.copytree(SHIPPED, copy)
    first = load_runbooks(copy)
    (copy / "port-closed.yml").unlink()  # the cache must not read the directory again
    assert load_runbooks(copy) == first


def test_a_fault_kind_without_a_runbook_is_refused(tmp_path: Path) -> None:
    shutil.copytree(SHIPPED, tmp_path / "rb")
    (tmp_path / "rb" / "capacity.yml").unlink()
    with pytest.raises(RunbookError) as err:
        load_runbooks(tmp_path / "rb")
    assert err.value.errors == ["no runbook for fault kinds: capacity"]


def _valid() -> dict[str, Any]:
    data = yaml.safe_load((SHIPPED / "nginx-down.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _with(path: str, value: Any) -> dict[str, Any]:
    data = _valid()
    *parents, last = path.split(".")
    node: Any = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node[int(last)] = value
    elif value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return data


_DELETE = object()

# Each broken runbook with the exact error it must produce (the first one, by field path).
INVALID = [
    ("misleading", _DELETE, "misleading: Field required"),
    ("misleading", [], "misleading: List should have at least 1 item after validation, not 0"),
    ("causes", "   ", "causes: must not be empty"),
    ("resolution", ["Start nginx.", " "], "resolution: must not be empty"),
    ("runbook_url", "http://x", "runbook_url: Extra inputs are not permitted"),
    (
        "fault",
        "nginx-crash",
        "fault: Input should be 'port-closed', 'nginx-down', 'missing-symlink', "
        "'dangling-symlink', 'config-syntax', 'upstream-down', 'http-5xx', 'slow-responses', "
        "'capacity', 'bad-deploy' or 'unexpected-status'",
    ),
    (
        "users_experience",
        "Refused.\nAll of them.",
        "users_experience: must be one sentence on one line",
    ),
    ("symptoms.supports.0.weight", 1.0, "symptoms.supports.0.weight: Input should be less than 1"),
    ("symptoms.supports.0.weight", 0, "symptoms.supports.0.weight: Input should be greater than 0"),
    (
        "symptoms.supports.0.term",
        "process:crashed",
        "symptoms.supports.0.term: unknown evidence term 'process:crashed'",
    ),
    (
        "symptoms.requires",
        ["nginx:down"],
        "symptoms.requires: unknown evidence terms ['nginx:down']",
    ),
    (
        "symptoms.requires",
        [],
        "symptoms.requires: List should have at least 1 item after validation, not 0",
    ),
    (
        "symptoms.requires",
        ["process:nginx-down", "sites:missing-symlink"],
        "symptoms: requires terms without a weight in supports: ['sites:missing-symlink']",
    ),
    (
        "symptoms.contradicts",
        [{"term": "process:nginx-down", "weight": 0.5}],
        "symptoms: terms both support and contradict: ['process:nginx-down']",
    ),
    (
        "tasks",
        ["Start nginx on {hostname}"],
        "tasks: 'Start nginx on {hostname}': unknown "
        "placeholders ['hostname'] (known: {backend}, {file}, {host}, {line}, {service}, {site}, "
        "{url}, {version})",
    ),
    (
        "tasks",
        ["Start nginx on {host"],
        "tasks: 'Start nginx on {host': expected '}' before end of string",
    ),
]


@pytest.mark.parametrize(("path", "value", "error"), INVALID, ids=[i[0] for i in INVALID])
def test_invalid_runbooks_are_refused_with_their_field_path(
    path: str, value: Any, error: str
) -> None:
    with pytest.raises(RunbookError) as err:
        parse_runbook(_with(path, value), "nginx-down.yml")
    assert err.value.errors[0] == error
    assert str(err.value).startswith("nginx-down.yml: ")


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("- just\n- a list\n", "the file must hold a YAML mapping at the top level"),
        ("fault: [unclosed\n", "not valid YAML at line 2"),
        (b"\xff\xfe\x00garbage", "not UTF-8 text"),
    ],
)
def test_unreadable_runbook_files_are_refused(
    tmp_path: Path, content: str | bytes, error: str
) -> None:
    shutil.copytree(SHIPPED, tmp_path / "rb")
    target = tmp_path / "rb" / "nginx-down.yml"
    if isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content, encoding="utf-8")
    with pytest.raises(RunbookError) as err:
        load_runbooks(tmp_path / "rb")
    assert err.value.errors[0] == f"nginx-down.yml: {error}"


def test_a_runbook_in_the_wrong_file_is_refused(tmp_path: Path) -> None:
    shutil.copytree(SHIPPED, tmp_path / "rb")
    (tmp_path / "rb" / "nginx-down.yml").write_text(
        (SHIPPED / "port-closed.yml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    with pytest.raises(RunbookError) as err:
        load_runbooks(tmp_path / "rb")
    assert err.value.errors == [
        "nginx-down.yml: fault port-closed does not match the file name",
        "no runbook for fault kinds: nginx-down",
    ]


def test_the_directory_must_exist(tmp_path: Path) -> None:
    with pytest.raises(RunbookError, match="not a directory"):
        load_runbooks(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("term", "known"),
    [
        ("sites:missing-symlink", True),
        ("http:ok", True),
        ("error_rate:capacity", True),
        ("alert:bad-deploy", True),
        ("deploy:recent", True),
        ("rate:above-baseline", True),
        ("alert:ok", False),  # an alert names a fault, never health
        ("ssh:ok", False),
        ("http:down", False),
        ("deploy:old", False),
        ("http", False),
    ],
)
def test_evidence_terms(term: str, known: bool) -> None:
    assert is_known_term(term) is known


def test_placeholders_cover_what_the_templates_use() -> None:
    used = {
        name
        for book in load_runbooks().values()
        for task in book.tasks
        for name in PLACEHOLDERS
        if "{" + name + "}" in task
    }
    assert used == PLACEHOLDERS  # no placeholder is declared for nothing


def test_model_is_frozen() -> None:
    book = load_runbooks()[Fault.HTTP_5XX]
    assert isinstance(book, Runbook)
    with pytest.raises(ValueError):
        book.title = "changed"  # type: ignore[misc]


def test_runbooks_import_nothing_from_the_postmortem_package() -> None:
    """The FILL IN marker sits below both (recorder/fillin.py): no import runs upward."""
    import ast

    import recorder.runbooks

    tree = parse_source(Path(recorder.runbooks.__file__))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not [m for m in imported if m and m.startswith("recorder.postmortem")]


def test_runbooks_and_the_config_share_one_yaml_reader(tmp_path: Path) -> None:
    """One reader (recorder/yamlfile.py, #15): a runbook nested too deeply is refused the
    way the config is, not a RecursionError out of the ranking."""
    shutil.copytree(SHIPPED, tmp_path / "rb")
    (tmp_path / "rb" / "nginx-down.yml").write_text("fault: " + "[" * 100_000 + "\n")
    with pytest.raises(RunbookError) as err:
        load_runbooks(tmp_path / "rb")
    assert err.value.errors[0] == "nginx-down.yml: not a usable runbook: nested too deeply"
    config = tmp_path / "recorder.yml"
    config.write_text("hosts: " + "[" * 100_000 + "\n")
    from recorder.config import ConfigError, load_config

    with pytest.raises(ConfigError) as bad:
        load_config(config)
    assert bad.value.errors == ["not a usable config: nested too deeply"]
