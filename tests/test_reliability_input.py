"""Bad input: config files, CLI arguments and postmortem files given to `lint`.

Property tests (hypothesis, bounded so the file runs in seconds) and hand-written cases.
The contract under test is the same everywhere: a clear error or a counted skip, never a
traceback reaching the user and never a partial write.
"""

from __future__ import annotations

import copy
import math
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from probes.durations import MAX_DURATION, parse_duration
from recorder.cli import main
from recorder.config import Config, ConfigError, load_config, parse_config
from recorder.model import Incident, TimelineEntry
from recorder.postmortem.lint import Gap, lint_bytes, lint_file, lint_text
from recorder.store import Store

# Bounded so the whole file stays within a few seconds on a 2-core CI machine; the
# database is off so runs leave nothing behind and do not depend on earlier runs.
FAST = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SOME = settings(FAST, max_examples=40)

# A config using every section and every transport: the base the mutations start from.
BASE: dict[str, Any] = {
    "timezone": "Africa/Nairobi",
    "state_dir": "/var/lib/recorder-test",
    "listen": "127.0.0.1:9468",
    "defaults": {"interval": "10s", "for": "0s", "recover_after": "30s", "timeout": "5s"},
    "services": {"web": {"entrypoints": ["lb-01"], "hosts": ["web-01"], "escalation": "ops"}},
    "hosts": {
        "lb-01": {
            "ssh": {"address": "10.0.0.10", "user": "ops", "port": 22, "key": "/k"},
            "role": "lb",
        },
        "web-01": {"local": {"prefix": "/"}},
        "web-02": {"docker": {"container": "lab-web-02"}, "address": "127.0.0.1"},
    },
    "checks": [
        {
            "hosts": ["lb-01", "web-01"],
            "interval": "1s",
            "probes": {
                "http": {"url": "http://{address}:80/", "expect": [200, 301]},
                "sites": {"expect_enabled": ["default"]},
                "error_rate": {"window": "60s", "threshold": 0.05},
                "upstreams": {},
            },
        }
    ],
    "alertmanager": {"token_file": "/etc/recorder/token", "max_body": 1048576},
}


def test_base_config_is_valid() -> None:
    # The mutations below mean something only if the unmutated base passes.
    assert isinstance(parse_config(copy.deepcopy(BASE)), Config)


def _paths(node: Any, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Every path to a value inside node (mappings by key, lists by index)."""
    if prefix:
        yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*prefix, i))


PATHS = list(_paths(BASE))


def _at(data: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


# Where a new key can go: the mappings among PATHS (drawing lists and scalars only to
# reject them made Hypothesis give up now and then: "filter too much").
MAPPING_PATHS = [p for p in PATHS if isinstance(_at(BASE, p), dict)]

# What YAML can produce, including what it produces by accident: huge and non-finite
# numbers, nulls, booleans, dates-as-strings, control characters, nesting.
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["", "10", "10x", "-1s", "1e400", "99999d", "0s", "0", ".nan", "1m", "none"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=10), st.integers()), children, max_size=4),
    ),
    max_leaves=12,
)


def _set(data: Any, path: tuple[str | int, ...], value: Any) -> None:
    for part in path[:-1]:
        data = data[part]
    data[path[-1]] = value


def _error_path(line: str) -> str:
    return line.split(": ", 1)[0]


@FAST
@given(path=st.sampled_from(PATHS), value=VALUES)
def test_any_wrong_value_anywhere_is_a_config_error_naming_its_field(
    path: tuple[str | int, ...], value: Any
) -> None:
    data = copy.deepcopy(BASE)
    _set(data, path, value)
    try:
        parse_config(data, "r.yml")
    except ConfigError as exc:
        assert exc.errors, "a ConfigError must say what is wrong"
        for line in exc.errors:
            assert line.strip()
            assert ": " in line, f"no field path in {line!r}"
        # At least one error points at the field that was changed (or its parent, when
        # the parent is what became invalid, e.g. a host left with no transport).
        wanted = ".".join(str(p) for p in path[:2])
        named = [_error_path(line) for line in exc.errors]
        assert any(p.startswith(str(path[0])) for p in named), (path, exc.errors)
        if len(path) >= 2:
            assert any(p.startswith(wanted) or wanted.startswith(p) for p in named), (
                path,
                exc.errors,
            )


@FAST
@given(key=st.text(min_size=1, max_size=20), where=st.sampled_from(MAPPING_PATHS), value=SCALARS)
def test_unknown_keys_are_refused_with_their_path(
    key: str, where: tuple[str | int, ...], value: Any
) -> None:
    data = copy.deepcopy(BASE)
    parent: Any = data
    for part in where:
        parent = parent[part]
    assume(isinstance(parent, dict) and key not in parent)
    # Mappings keyed by user-chosen names (services, hosts, probes, host_map) accept new
    # keys, and a new key there is a new entry validated as such: still no crash.
    parent[key] = value
    try:
        parse_config(data)
    except ConfigError as exc:
        assert all(": " in line for line in exc.errors), exc.errors


@SOME
@given(data=st.dictionaries(st.text(max_size=12), VALUES, max_size=6))
def test_arbitrary_top_level_mappings_never_crash(data: dict[str, Any]) -> None:
    try:
        parse_config(data)
    except ConfigError as exc:
        assert exc.errors


@SOME
@given(data=VALUES)
def test_arbitrary_documents_never_crash(data: Any) -> None:
    try:
        parse_config(data)
    except ConfigError as exc:
        assert exc.errors


@FAST
@given(
    value=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(min_value=-(10**30), max_value=10**30),
        st.text(max_size=12),
        st.from_regex(r"\A\s*-?\d{1,30}(\.\d{0,20})?\s*(ms|s|m|h|d|y|)?\s*\Z"),
        st.none(),
        st.booleans(),
    )
)
def test_a_duration_is_finite_and_in_range_or_refused(value: Any) -> None:
    try:
        seconds = parse_duration(value)
    except ValueError:
        return
    assert math.isfinite(seconds), f"{value!r} became {seconds}"
    assert 0.0 <= seconds <= MAX_DURATION


@pytest.mark.parametrize("field", ["interval", "timeout", "recover_after", "for"])
@pytest.mark.parametrize("spelled", [".nan", ".NaN", ".inf", "-.inf"])
def test_non_finite_durations_are_refused(tmp_path: Path, field: str, spelled: str) -> None:
    # YAML spells NaN `.nan`; a NaN interval would poison the scheduler's heap (every
    # comparison with NaN is false) and a NaN timeout would never expire.
    path = tmp_path / "r.yml"
    path.write_text(f"hosts:\n  l: {{local: {{}}}}\ndefaults: {{{field}: {spelled}}}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert any(line.startswith(f"defaults.{field}: ") for line in caught.value.errors)


# ---- config files on disk ----------------------------------------------------------------

VALID_HEAD = "hosts:\n  l: {local: {}}\n"

HOSTILE_FILES: dict[str, bytes] = {
    "empty": b"",
    "only-comment": b"# nothing\n",
    "binary": bytes(range(256)) * 8,
    "nul-bytes": b"hosts:\x00\x00\n",
    "latin-1": "hosts:\n  caf\xe9: {local: {}}\n".encode("latin-1"),
    "utf-16": VALID_HEAD.encode("utf-16"),
    "a-list": b"- a\n- b\n",
    "a-scalar": b"42\n",
    "tabs": b"hosts:\n\tl: {local: {}}\n",
    "unclosed": b"hosts: {l: {local: {}\n",
    "python-tag": VALID_HEAD.encode() + b"x: !!python/object/apply:os.system ['true']\n",
    "unhashable-key": b"hosts:\n  ? [a]\n  : {local: {}}\n",
    "duplicate-anchor-bomb": VALID_HEAD.encode()
    + b"a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    + b"c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n",
    "deep-flow-nesting": b"hosts: " + b"[" * 3000 + b"]" * 3000 + b"\n",
    "deep-block-nesting": b"services:\n"
    + b"".join(b"  " * (i + 1) + b"a:\n" for i in range(1200))
    + VALID_HEAD.encode(),
    "integer-with-5000-digits": VALID_HEAD.encode() + b"defaults: {concurrency: "
    b"" + b"9" * 5000 + b"}\n",
    "huge-concurrency": VALID_HEAD.encode() + b"defaults: {concurrency: 99999999999999999999}\n",
    "huge-port": b"hosts:\n  s: {ssh: {address: a, user: u, port: 99999999999999999999}}\n",
    "huge-duration": VALID_HEAD.encode() + b"defaults: {interval: 1e308}\n",
    "long-string": VALID_HEAD.encode() + b"timezone: " + b"x" * 200_000 + b"\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_FILES))
def test_hostile_config_files_give_config_errors(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.yml"
    path.write_bytes(HOSTILE_FILES[name])
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.errors
    assert all(line.strip() for line in caught.value.errors)
    if name != "long-string":  # (that one quotes its 200 KB value back; see RELIABILITY.md)
        assert len(str(caught.value)) < 5000, str(caught.value)[:300]


@pytest.mark.parametrize("name", sorted(HOSTILE_FILES))
def test_config_check_exits_2_without_a_traceback(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.yml"
    path.write_bytes(HOSTILE_FILES[name])
    result = CliRunner().invoke(main, ["config", "check", str(path)])
    _assert_clean_exit(result, 2)
    assert "invalid" in result.output


def test_config_check_of_unreadable_paths(tmp_path: Path) -> None:
    for target, message in ((tmp_path, "is a directory"), (tmp_path / "absent.yml", "cannot read")):
        result = CliRunner().invoke(main, ["config", "check", str(target)])
        _assert_clean_exit(result, 2)
        assert message in result.output


def test_config_check_in_a_real_process_prints_no_traceback(tmp_path: Path) -> None:
    # CliRunner catches what escapes; a real process shows what an operator would see.
    path = tmp_path / "deep.yml"
    path.write_bytes(HOSTILE_FILES["deep-flow-nesting"])
    done = subprocess.run(
        [str(Path(sys.executable).parent / "recorder"), "config", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stdout + done.stderr, done.stderr[-2000:]


@SOME
@given(data=st.binary(max_size=2000))
def test_any_bytes_as_a_config_file(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.yml"
    path.write_bytes(data)
    try:
        load_config(path)
    except ConfigError as exc:
        assert exc.errors


@SOME
@given(text=st.text(alphabet=st.sampled_from(list("{}[]:,-?&*!|>'\"#%@` \n\tab1.")), max_size=300))
def test_any_yaml_punctuation_as_a_config_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.yml"
    path.write_text(text)
    try:
        load_config(path)
    except ConfigError as exc:
        assert exc.errors


def _assert_clean_exit(result: Result, code: int) -> None:
    """Exited with `code` by itself (SystemExit), not by an exception CliRunner caught."""
    escaped = result.exception if not isinstance(result.exception, SystemExit) else None
    assert escaped is None, f"{type(escaped).__name__}: {escaped}"
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output


# ---- CLI arguments: incident IDs -----------------------------------------------------------

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


class CliCase:
    """A real config in tmp and a real store holding one resolved incident, INC-1."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "state"
        self.config = root / "recorder.yml"
        self.config.write_text(
            f"timezone: UTC\nstate_dir: {self.state}\n"
            "services: {web: {entrypoints: [lb-01]}}\n"
            "hosts:\n  lb-01: {local: {}}\n"
        )
        store = Store(self.state)
        incident = Incident(
            id=0,
            status="resolved",
            title="web: site down",
            service="web",
            fault="missing-symlink",
            started_at=T0,
            detected_at=T0 + timedelta(seconds=5),
            resolved_at=T0 + timedelta(minutes=10),
            hosts=["lb-01"],
            timeline=[TimelineEntry(T0, "impact-start", "harm began", "http", key="impact-start")],
        )
        store.create_incident(incident)
        store.close()
        self.before = self.snapshot()

    def invoke(self, *args: str) -> Result:
        return CliRunner().invoke(main, ["--config", str(self.config), *args])

    def snapshot(self) -> set[str]:
        """Every file under the test's root (where an escaping ID would have written)."""
        return {str(p.relative_to(self.root)) for p in self.root.rglob("*")}


@pytest.fixture
def cli_case(tmp_path: Path) -> CliCase:
    return CliCase(tmp_path)


HOSTILE_IDS = [
    "",
    " ",
    "0",
    "-1",
    "2",
    "INC-",
    "INC-2",
    "inc-999999999999",
    "../x",
    "../../etc/passwd",
    "INC-../../x",
    "INC-1/../../x",
    "1/../2",
    "/etc/passwd",
    "1;touch x",
    "$(touch x)",
    "1\x00",
    "\x00",
    "9" * 13,
    "9" * 400,
    "1e3",
    "0x1",
    "1.0",
    "+1",
    "²",  # a digit to str.isdigit(), not to int()
    "١٢",  # Arabic-Indic digits
    "INC-³",
    "\u202e1",
    "%2e%2e%2f",
]

ID_COMMANDS: list[list[str]] = [
    ["incidents", "show", "{id}"],
    ["incidents", "show", "{id}", "--json"],
    ["note", "{id}", "checked the load balancer"],
    ["draft", "{id}"],
    ["close", "{id}", "--root-cause", "x"],
]


def _command(template: list[str], incident_id: str) -> list[str]:
    return [incident_id if word == "{id}" else word for word in template]


def _check_id_result(case: CliCase, result: Result, incident_id: str) -> None:
    escaped = result.exception if not isinstance(result.exception, SystemExit) else None
    assert escaped is None, f"{incident_id!r}: {type(escaped).__name__}: {escaped}"
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        # Our own refusal, or click's usage error for an ID that looks like an option.
        assert result.output.startswith("recorder: ") or (
            result.output.startswith("Usage:") and "Error: " in result.output
        ), result.output
        assert len(result.output) < 2000
    else:
        # Only an ID that means INC-1 may get past the check: then the command worked
        # (0) or refused on the merits (1: close of a document with gaps).
        assert result.exit_code in (0, 1), (incident_id, result.output)
        assert "INC-1" in result.output or "web: site down" in result.output, result.output
    new = case.snapshot() - case.before
    allowed = {n for n in new if n.startswith("state/")}
    assert new == allowed, f"{incident_id!r} wrote outside the state dir: {new - allowed}"


@pytest.mark.parametrize("template", ID_COMMANDS, ids=lambda t: " ".join(t[:2]))
@pytest.mark.parametrize("incident_id", HOSTILE_IDS)
def test_hostile_incident_ids_exit_2_with_a_message(
    cli_case: CliCase, template: list[str], incident_id: str
) -> None:
    result = cli_case.invoke(*_command(template, incident_id))
    _check_id_result(cli_case, result, incident_id)
    assert result.exit_code == 2, (incident_id, result.output)


@SOME
@given(incident_id=st.text(max_size=30), template=st.sampled_from(ID_COMMANDS))
def test_any_incident_id_is_refused_cleanly_or_means_an_incident(
    tmp_path_factory: pytest.TempPathFactory, incident_id: str, template: list[str]
) -> None:
    case = _shared_case(tmp_path_factory)
    result = case.invoke(*_command(template, incident_id))
    _check_id_result(case, result, incident_id)


_CASES: dict[int, CliCase] = {}


def _shared_case(factory: pytest.TempPathFactory) -> CliCase:
    # One store for all examples of a property: building one per example costs more than
    # the example itself. Notes add timeline entries to INC-1, which the checks allow.
    key = id(factory)
    if key not in _CASES:
        _CASES[key] = CliCase(factory.mktemp("cli-ids"))
    return _CASES[key]


def test_known_incident_still_works(cli_case: CliCase) -> None:
    # The refusals above are not a command that refuses everything.
    for incident_id in ("1", "INC-1", "inc-1", " 1 "):
        result = cli_case.invoke("incidents", "show", incident_id, "--json")
        _assert_clean_exit(result, 0)
        assert '"ref": "INC-1"' in result.output


def test_draft_output_to_an_unwritable_place_is_a_clear_error(cli_case: CliCase) -> None:
    for target in (cli_case.root / "no" / "such" / "dir" / "x.md", cli_case.root):
        result = cli_case.invoke("draft", "1", "-o", str(target))
        _assert_clean_exit(result, 1 if target != cli_case.root else 2)
        assert result.output.startswith("recorder: ") or "Error" in result.output


# ---- postmortem files given to lint --------------------------------------------------------

LINT_FILES: dict[str, bytes] = {
    "empty": b"",
    "whitespace": b" \n\t\n\r\n",
    "bom-only": b"\xef\xbb\xbf",
    "binary": bytes(range(256)) * 64,
    "nul-after-text": b"## Issue summary\nAll good.\n\x00\x00\x00",
    "latin-1": "## Issue summary\ncaf\xe9 \x93down\x94 at 14:30\n".encode("latin-1"),
    "utf-16": "## Issue summary\nhello\n".encode("utf-16"),
    "cut-utf-8": "## Issue summary\nNairobi café".encode()[:-1],
    "only-carriage-returns": b"\r" * 100_000,
    "one-20-MB-line": b"a" * (20 * 1024 * 1024),
    "2-MB-of-timeline": b"## Timeline\n" + b"- 14:30 EAT - something happened\n" * 64_000,
    "deep-html": b"<div>" * 100_000,
    "unclosed-markers": b"[[FILL IN: " * 200_000,
    "many-headings": b"## Timeline\n" * 100_000,
    "many-times": b"14:30 EAT to 15:45 EAT " * 50_000,
}


@pytest.mark.parametrize("name", sorted(LINT_FILES))
def test_lint_of_hostile_files_is_a_clear_result(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.md"
    path.write_bytes(LINT_FILES[name])
    result = CliRunner().invoke(main, ["lint", str(path)])
    _assert_clean_exit(result, 1)
    lines = result.output.splitlines()
    assert lines and all(line.startswith(f"{path}: ") for line in lines), lines[:3]
    assert len(lines) < 100


def test_lint_names_what_is_wrong_with_a_file(tmp_path: Path) -> None:
    cases = {
        "empty": "empty document",
        "binary": "not a text document",
        "one-20-MB-line": "only the start was checked",
    }
    for name, message in cases.items():
        path = tmp_path / f"{name}.md"
        path.write_bytes(LINT_FILES[name])
        assert any(message in gap.message for gap in lint_file(path)), name
    # click refuses a directory and a missing file itself (bad input, 2; a missing file
    # was a gap and exit 1, as if it were a postmortem: #16).
    for path, message, code in (
        (tmp_path, "is a directory", 2),
        (tmp_path / "absent.md", "does not exist", 2),
    ):
        result = CliRunner().invoke(main, ["lint", str(path)])
        _assert_clean_exit(result, code)
        assert message in result.output


def test_lint_json_of_a_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "x.md"
    path.write_bytes(LINT_FILES["binary"])
    result = CliRunner().invoke(main, ["lint", "--json", str(path)])
    _assert_clean_exit(result, 1)
    assert '"not a text document"' in result.output


@FAST
@given(data=st.binary(max_size=4000))
def test_lint_of_any_bytes_returns_gaps(data: bytes) -> None:
    gaps = lint_bytes(data, "fuzz.md")
    assert isinstance(gaps, list) and all(isinstance(g, Gap) for g in gaps)
    assert gaps, "random bytes are not a complete postmortem"


# Fragments a postmortem is made of, shuffled: headings in several spellings, bullets,
# times in many forms, HTML, placeholders. Exercises the parser's regular expressions.
FRAGMENTS = st.sampled_from(
    [
        "## Issue Summary\n",
        "Issue summary:\n",
        "<h2>Timeline</h2>\n",
        "Time line\n",
        "## Root cause and resolution\n",
        "Corrective and preventative measures\n",
        "- ",
        "o ",
        "* [ ] ",
        "1. ",
        "14:30 ",
        "2023-10-20 20:00 EAT ",
        "(UTC) ",
        "2:45 ",
        "to ",
        "- ",
        "50% of users ",
        "[[FILL IN: x]] ",
        "[[FILL IN: ",
        "<script>",
        "</p>",
        "`nginx -t` ",
        "patch the Nginx server config on web-01",
        "\n",
        "\r\n",
        "\t",
        "é",
        "\u200b",
        "#",
        ":",
    ]
)


@FAST
@given(parts=st.lists(FRAGMENTS, max_size=200))
def test_lint_of_any_arrangement_of_postmortem_fragments(parts: list[str]) -> None:
    gaps = lint_text("".join(parts), "fuzz.md")
    assert all(isinstance(g, Gap) and g.message for g in gaps)


def test_lint_is_fast_on_pathological_repetition() -> None:
    # Regular expressions with nested quantifiers go exponential on repetition; each of
    # these is a megabyte at most (lint's own limit) and must finish in well under a second.
    import time

    for unit in ("14:30 ", "- " * 3, "[[FILL IN: ", "2023-10-20 ", "## ", "<h2>", "a" * 50 + " "):
        text = unit * (1_000_000 // len(unit))
        started = time.perf_counter()
        lint_text(text, "slow.md")
        assert time.perf_counter() - started < 5.0, unit


def test_cli_arguments_that_are_not_ids(cli_case: CliCase) -> None:
    cases: list[tuple[list[str], int]] = [
        (["incidents", "list", "--status", "bogus"], 2),
        (["note", "1", "   "], 2),
        (["note", "1", "x", "--kind", "detection"], 2),
        (["note", "1", "x", "--at", "not a time"], 2),
        (["note", "1", "x", "--at", "9999-99-99 99:99"], 2),
        (["draft", "1", "--format", "pdf"], 2),
        (["event", "deploy", "--service", "../../x", "--version", "1"], 2),
        (["probe", "--host", "$(touch x)"], 2),
        (["logscan", str(cli_case.root / "absent.log")], 2),
    ]
    for args, code in cases:
        result = cli_case.invoke(*args)
        escaped = result.exception if not isinstance(result.exception, SystemExit) else None
        assert escaped is None, f"{args}: {type(escaped).__name__}: {escaped}"
        assert result.exit_code == code, (args, result.output)
    assert not (Path.cwd() / "x").exists()


def test_error_paths_keep_field_names_readable() -> None:
    data = copy.deepcopy(BASE)
    data["hosts"]["lb-01"]["ssh"]["port"] = "twenty-two"
    data["checks"][0]["probes"]["http"]["expect"] = ["ok"]
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert set(caught.value.errors) >= {
        "hosts.lb-01.ssh.port: Input should be a valid integer, unable to parse string as an "
        "integer",
    }
    assert any(
        re.match(r"checks\.0\.probes\.http\.expect\.0: ", line) for line in caught.value.errors
    ), caught.value.errors
