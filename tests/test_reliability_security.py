"""Security: private files, IDs confined to the state dir, no shell ever built from config or
incident values, HTML that renders hostile text inert.

The injection tests do not trust quoting by reading code: every hostile value carries a
command that would create a marker file under /tmp, the hosts are driven for real (local
subprocesses, a real sshd, a docker CLI stand-in that records its argv), and the test
proves the marker does not exist and the value arrived byte for byte.
"""

from __future__ import annotations

import functools
import os
import stat
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.base import Host, Status
from recorder.config import ConfigError, DockerHostConfig, parse_config
from recorder.hosts import build_host
from recorder.hosts.docker import DockerHost
from recorder.hosts.local import LocalHost
from recorder.hosts.ssh import SSHHost
from recorder.model import Incident, TimelineEntry
from recorder.store import Store, StoreError
from tests.conftest import SSHServer

FAST = settings(max_examples=100, deadline=None, database=None)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask: modes must come from the recorder, not the environment."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


# ---- files: 0600 in a 0700 state dir -----------------------------------------------------


def _incident() -> Incident:
    """A full incident as the book records one (for rendering)."""
    from tests.fixtures import lab_config
    from tests.test_draft import LAB_FAULTS, build_incident

    return build_incident(LAB_FAULTS["http-5xx"], lab_config())


def _plain_incident() -> Incident:
    """Enough of an incident for the store and files."""
    at = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    return Incident(
        id=0,
        status="open",
        title="web: site down",
        service="web",
        fault="http-5xx",
        started_at=at,
        detected_at=at + timedelta(seconds=3),
        hosts=["lb-01"],
        timeline=[TimelineEntry(at, "impact-start", "harm began", "http", key="impact-start")],
    )


def test_store_wal_and_shm_are_private_whatever_the_umask(tmp_path: Path, open_umask: None) -> None:
    state = tmp_path / "state"
    store = Store(state)
    try:
        store.create_incident(_plain_incident())
        # A second connection (another thread, as the HTTP server has) sees the same modes.
        seen: list[int] = []
        thread = threading.Thread(target=lambda: seen.append(len(store.list())))
        thread.start()
        thread.join()
        assert seen == [1]
        names = sorted(os.listdir(state))
        assert {"recorder.db", "recorder.db-wal", "recorder.db-shm"} <= set(names), names
        assert mode(state) == 0o700
        for name in names:
            assert mode(state / name) == 0o600, f"{name} is {oct(mode(state / name))}"
    finally:
        store.close()


def test_an_existing_open_state_dir_is_made_private(tmp_path: Path, open_umask: None) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o777)
    os.chmod(state, 0o777)
    Store(state).close()
    assert mode(state) == 0o700


def test_drafts_are_private_and_written_atomically(tmp_path: Path, open_umask: None) -> None:
    from recorder.postmortem.close import draft_path, write_draft
    from tests.fixtures import lab_config

    config = lab_config(tmp_path / "state")
    store = Store(config.state_path)
    try:
        incident = store.create_incident(_incident())
        for _ in range(2):  # the rewrite of an existing draft keeps the mode too
            path = write_draft(config, incident)
        assert path == draft_path(config, incident.id)
        assert mode(path.parent) == 0o700 and mode(path) == 0o600
        assert mode(config.state_path) == 0o700
        # No temp file is left beside it.
        assert sorted(os.listdir(path.parent)) == [path.name]
    finally:
        store.close()


def test_log_offsets_are_private_whatever_the_umask(tmp_path: Path, open_umask: None) -> None:
    from probes.error_rate import Config as ErrorRate
    from probes.error_rate import probe as error_rate
    from recorder.scheduler import prepare_probe_config

    state = tmp_path / "state"
    Store(state).close()  # the daemon makes the state dir first
    log = tmp_path / "access.log"
    log.write_bytes(b'203.0.113.7 - - [23/Nov/2026:09:00:00 +0000] "GET /" 200 1 "-" "-"\n')
    config = prepare_probe_config("error_rate", ErrorRate(log=str(log)), state)
    for _ in range(2):
        error_rate(LocalHost(f"offsets-{uuid.uuid4().hex[:6]}"), config)  # type: ignore[arg-type]
    files = [p for p in state.rglob("*") if p.is_file()]
    assert any(p.suffix == ".json" for p in files), files
    for path in files:
        assert mode(path) == 0o600, f"{path} is {oct(mode(path))}"
    assert mode(state) == 0o700


def test_a_reader_never_sees_half_a_draft(tmp_path: Path) -> None:
    # The daemon rewrites drafts while people read them (an editor, `cat`, a web view):
    # every read must see one whole version.
    from recorder.postmortem.close import atomic_write

    path = tmp_path / "INC-1.md"
    versions = ["# A\n" + "a" * 400_000 + "\nEND\n", "# B\n" + "b" * 900_000 + "\nEND\n"]
    atomic_write(path, versions[0])
    stop = threading.Event()
    torn: list[int] = []
    reads = [0]

    def reader() -> None:
        while not stop.is_set():
            text = path.read_text()
            reads[0] += 1
            if text not in versions:
                torn.append(len(text))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(60):
            atomic_write(path, versions[i % 2])
    finally:
        stop.set()
        thread.join()
    assert reads[0] > 0
    assert torn == [], f"{len(torn)} torn reads of {reads[0]}"
    assert [p.name for p in tmp_path.iterdir()] == ["INC-1.md"]


@FAST
@given(incident_id=st.integers(min_value=-(2**63), max_value=2**63))
def test_incident_files_stay_inside_the_state_dir(incident_id: int) -> None:
    from recorder.postmortem.close import draft_path, final_path
    from tests.fixtures import lab_config

    config = lab_config("/var/lib/recorder-test")
    root = config.state_path.resolve()
    for path in (draft_path(config, incident_id), final_path(config, incident_id)):
        resolved = path.resolve()
        assert resolved.parent.parent == root, path
        assert resolved.name == f"INC-{incident_id}.md"


# ---- no shell string, ever -----------------------------------------------------------------


@dataclass
class Hostile:
    """Values built to run `touch MARKER` if any shell ever sees them unquoted."""

    marker: Path

    @property
    def values(self) -> list[str]:
        m = self.marker
        return [
            f"$(touch {m})",
            f"`touch {m}`",
            f"; touch {m}",
            f"x' ; touch {m} ; '",
            f'x" ; touch {m} ; "',
            f"| touch {m}",
            f"&& touch {m}",
            f"\ntouch {m}\n",
            f"$(touch {m}) with  spaces",
            f"${{IFS}}touch${{IFS}}{m}",
            "-n",  # an option-looking word must stay an argument too
        ]

    @property
    def places(self) -> list[Path]:
        """The marker itself, and where `touch NAME` (no directory) would have put it: the
        working directory of a local command and the home of an SSH login."""
        return [self.marker, Path.cwd() / self.marker.name, Path.home() / self.marker.name]

    def assert_untouched(self) -> None:
        for place in self.places:
            assert not place.exists(), f"a shell ran a hostile value: {place} exists"


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    found = Hostile(Path(f"/tmp/pwned-{uuid.uuid4().hex}"))
    yield found
    for place in found.places:
        place.unlink(missing_ok=True)  # only there if a test failed that way


FAKE_DOCKER = """#!/bin/sh
# The docker CLI as far as `docker exec -i CONTAINER CMD...` goes: record argv (one
# NUL-terminated word each), then run CMD here as the container would.
printf '%s\\0' "$@" >> "$(dirname "$0")/argv.log"
[ "$1" = exec ] && [ "$2" = -i ] || {{ echo "fake docker: unexpected $*" >&2; exit 125; }}
shift 3
exec "$@"
"""


def _fake_docker(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    fake = directory / "docker"
    fake.write_text(FAKE_DOCKER.format())
    fake.chmod(0o755)
    return fake


@dataclass
class Subject:
    kind: str
    host: Host
    disk: Path  # where the host's `base` is on this machine
    base: str  # the same directory as the host names it
    argv_log: Path | None = None


@pytest.fixture(params=["local", "ssh", "docker"])
def subject(request: pytest.FixtureRequest, tmp_path: Path, hostile: Hostile) -> Iterator[Subject]:
    # Even the directories the recorder is configured with hold shell syntax.
    weird = f"dir $(touch {hostile.marker.name}) ;`x`"
    if request.param == "local":
        root = tmp_path / weird
        (root / "data").mkdir(parents=True)
        yield Subject("local", LocalHost("local", prefix=str(root)), root / "data", "/data")
    elif request.param == "ssh":
        sshd: SSHServer = request.getfixturevalue("sshd")
        ssh = SSHHost("ssh", sshd.config())
        (tmp_path / weird).mkdir()
        try:
            yield Subject("ssh", ssh, tmp_path / weird, str(tmp_path / weird))
        finally:
            ssh.close()
    else:
        fake = _fake_docker(tmp_path / weird / "bin")
        (tmp_path / "data").mkdir()
        host = DockerHost("docker", "lab-web-01", docker=str(fake))
        yield Subject(
            "docker", host, tmp_path / "data", str(tmp_path / "data"), fake.parent / "argv.log"
        )


def test_commands_get_hostile_arguments_literally(subject: Subject, hostile: Hostile) -> None:
    values = hostile.values
    result = subject.host.run(["printf", "%s\\0", *values], timeout=10)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split("\0")[:-1] == values
    hostile.assert_untouched()
    if subject.argv_log is not None:
        words = subject.argv_log.read_bytes().split(b"\0")[:-1]
        assert [w.decode() for w in words] == [
            "exec",
            "-i",
            "lab-web-01",
            "printf",
            "%s\\0",
            *values,
        ]


def _hostile_file(subject: Subject, value: str, content: bytes) -> str:
    """Create a file whose path (below base) is `value`, slashes making directories."""
    on_disk = subject.disk / value.lstrip("/")
    on_disk.parent.mkdir(parents=True, exist_ok=True)
    on_disk.write_bytes(content)
    return f"{subject.base}/{value.lstrip('/')}"


def test_file_operations_on_hostile_paths(subject: Subject, hostile: Hostile) -> None:
    # Five shapes (substitution, backticks, separator, quote breaking, newline): each
    # stat over SSH is a remote command, and the run test above covers every value.
    shapes = [hostile.values[i] for i in (0, 1, 2, 3, 7)]
    for i, value in enumerate(shapes):
        if value.endswith("\n"):
            value = value.rstrip("\n") + " end"  # a name may not end where a dir does
        content = f"file {i}\n".encode()
        path = _hostile_file(subject, value, content)
        host = subject.host
        assert host.read_text(path) == content.decode(), value
        assert host.read_range(path, 5, 100) == content[5:], value
        assert host.stat(path).size == len(content), value
        assert stat.S_ISREG(host.lstat(path).mode), value
        parent = path.rsplit("/", 1)[0]
        assert path.rsplit("/", 1)[1] in host.listdir(parent), value
        link = f"{subject.base}/link-{i}"
        os.symlink(subject.host.real_path(path), subject.disk / f"link-{i}")
        assert host.readlink(link) == path
        missing = path + " missing"
        for operation in (host.read_text, host.stat, host.lstat, host.readlink):
            with pytest.raises(FileNotFoundError):
                operation(missing)
        with pytest.raises(FileNotFoundError):
            host.read_range(missing, 0, 10)
        with pytest.raises(FileNotFoundError):
            host.listdir(missing)
    hostile.assert_untouched()
    if subject.argv_log is not None:
        # Each hostile path travelled as exactly one argv word.
        words = {w.decode() for w in subject.argv_log.read_bytes().split(b"\0")}
        assert any(hostile.values[0] in w and w.endswith(")") for w in words)


def test_hosts_built_from_config_keep_hostile_values_literal(
    tmp_path: Path, hostile: Hostile
) -> None:
    # The docker binary and the local prefix come from the config file as written.
    weird = tmp_path / f"bin $(touch {hostile.marker}) `touch {hostile.marker}`"
    fake = _fake_docker(weird)
    prefix = tmp_path / f"root ; touch {hostile.marker}"
    (prefix / "etc").mkdir(parents=True)
    (prefix / "etc" / "hostname").write_text("web-01\n")
    config = parse_config(
        {
            "hosts": {
                "d": {"docker": {"container": "web-01", "docker": str(fake)}},
                "l": {"local": {"prefix": str(prefix)}},
            }
        }
    )
    docker = build_host("d", config.hosts["d"])
    local = build_host("l", config.hosts["l"])
    assert docker.run(["echo", "hi"], timeout=10).stdout == "hi\n"
    assert local.read_text("/etc/hostname") == "web-01\n"
    assert (weird / "argv.log").exists()
    hostile.assert_untouched()


@FAST
@given(name=st.text(min_size=1, max_size=30))
def test_container_names_cannot_carry_shell_or_options(name: str) -> None:
    # `docker exec -i NAME`: a name starting with `-` would be read as an option.
    try:
        cfg = DockerHostConfig(container=name)
    except ValueError:
        return
    assert not cfg.container.startswith("-")
    assert all(c.isascii() and (c.isalnum() or c in "_.-") for c in cfg.container)


@pytest.mark.parametrize(
    "hosts",
    [
        {"s": {"ssh": {"address": "10.0.0.1 -oProxyCommand=x", "user": "ops"}}},
        {"s": {"ssh": {"address": "", "user": "ops"}}},
        {"s": {"ssh": {"address": "a", "user": ""}}},
        {"d": {"docker": {"container": "web;touch x"}}},
        {"d": {"docker": {"container": "-e X=1"}}},
        {"d": {"docker": {"container": "$(id)"}}},
        {"l": {"local": {"prefix": "relative/path"}}},
    ],
)
def test_config_refuses_shell_shaped_host_values(hosts: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        parse_config({"hosts": hosts})


def test_ssh_key_and_known_hosts_paths_with_shell_syntax(
    sshd: SSHServer, tmp_path: Path, hostile: Hostile
) -> None:
    # paramiko opens them as files; a path with `$(...)` must name that file, no more.
    weird = tmp_path / f"keys $(touch {hostile.marker.name}); `x`"
    weird.mkdir()
    key = weird / "id $(x)"
    key.write_bytes(sshd.key.read_bytes())
    key.chmod(0o600)
    known = sshd.write_known_hosts(weird / "known ; hosts")
    host = SSHHost("ssh", sshd.config(key=str(key), known_hosts=str(known)))
    try:
        assert host.run(["echo", "ok"], timeout=10).stdout == "ok\n"
    finally:
        host.close()
    hostile.assert_untouched()


# ---- HTML renders hostile text inert --------------------------------------------------------


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[str] = []
        self.values: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.extend(name for name, _ in attrs)
        self.values.extend(value or "" for _, value in attrs)


def _tags(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    parser.close()
    return parser


HOSTILE_MARKUP = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(2)>",
    '"><svg onload=alert(3)>',
    "<a href='javascript:alert(4)'>x</a>",
    "</li></ul><iframe src=//evil>",
    "<!-- x --><style>*{display:none}</style>",
    "&lt;script&gt; already escaped",
    "[[FILL IN: <b>bold</b>]]",
]


@functools.cache
def _template_markup() -> tuple[frozenset[str], frozenset[str]]:
    """The tags and attributes the HTML template itself writes, for a harmless incident."""
    from recorder.postmortem.draft import render_draft
    from tests.fixtures import lab_config

    clean = _tags(render_draft(_incident(), lab_config(), "html"))
    return frozenset(clean.tags) | {"mark", "code"}, frozenset(clean.attributes)


@settings(FAST, max_examples=50)
@given(
    markup=st.lists(
        st.one_of(st.sampled_from(HOSTILE_MARKUP), st.text(max_size=30)), min_size=1, max_size=6
    )
)
def test_html_draft_renders_hostile_text_inert(markup: list[str]) -> None:
    from recorder.postmortem.draft import render_draft
    from tests.fixtures import lab_config

    config = lab_config()
    allowed, allowed_attributes = _template_markup()
    incident = _incident()
    text = " ".join(markup)
    # Everywhere text from outside can land: notes, alert annotations, log-derived
    # evidence, the title, and what people write when closing.
    incident.title = text
    incident.affected.evidence = text
    incident.timeline.append(
        TimelineEntry(incident.started_at, "note", text, "alertmanager", key="hostile-1")
    )
    incident.timeline.append(
        TimelineEntry(incident.started_at, "action", text, "cli", key="hostile-2")
    )
    if incident.root_causes:
        incident.root_causes[0].evidence.append(text)
    incident.postmortem = {"root_cause": text, "resolution": text, "tasks": [text]}
    html = render_draft(incident, config, "html")
    found = _tags(html)
    assert set(found.tags) <= allowed, set(found.tags) - allowed
    assert set(found.attributes) <= allowed_attributes, set(found.attributes) - allowed_attributes
    assert not any("javascript:" in value.lower() for value in found.values)


def test_markdown_draft_keeps_tags_as_text() -> None:
    from recorder.postmortem.draft import render_draft
    from tests.fixtures import lab_config

    incident = _incident()
    incident.timeline.append(
        TimelineEntry(incident.started_at, "note", HOSTILE_MARKUP[0], "alertmanager", key="h")
    )
    incident.affected.evidence = HOSTILE_MARKUP[1]
    text = render_draft(incident, lab_config(), "md")
    assert "<script" not in text and "<img" not in text
    assert "&lt;script>" in text


FAKE_NGINX = """#!/bin/sh
# nginx -t as far as the config probe goes: record argv, complain about the config.
printf '%s\\0' "$@" >> "$(dirname "$0")/nginx-argv.log"
echo "nginx: [emerg] unexpected end of file in $3:1" >&2
exit 1
"""


def test_probes_pass_hostile_config_values_literally(subject: Subject, hostile: Hostile) -> None:
    from probes.config import Config as ConfigProbe
    from probes.error_rate import Config as ErrorRate
    from probes.process import Config as Process
    from probes.sites import Config as Sites
    from recorder.scheduler import run_probe

    value = hostile.values[0]  # `$(touch MARKER)`, in every path and name the probes use
    bin_dir = subject.disk / f"bin {value.replace('/', '_')} `x`"
    bin_dir.mkdir()
    fake = bin_dir / "nginx"
    fake.write_text(FAKE_NGINX)
    fake.chmod(0o755)
    conf = _hostile_file(subject, f"conf {value}.conf", b"events {}\n")
    log = _hostile_file(subject, f"log; {value}.log", b"")
    pid = _hostile_file(subject, f"pid `touch {hostile.marker}`", b"1\n")
    available = f"{subject.base}/avail {value.replace('/', '_')}"
    enabled = f"{subject.base}/enabled ; touch x"
    (subject.disk / available.rsplit("/", 1)[1]).mkdir()
    (subject.disk / enabled.rsplit("/", 1)[1]).mkdir()
    observations = [
        run_probe(subject.host, "config", ConfigProbe(nginx=str(fake), conf=conf)),
        run_probe(subject.host, "sites", Sites(available_dir=available, enabled_dir=enabled)),
        run_probe(subject.host, "process", Process(pid_file=pid)),
        run_probe(subject.host, "error_rate", ErrorRate(log=log)),
    ]
    hostile.assert_untouched()
    # The probes really looked: each gave a verdict on what it found, not an error.
    assert [o.status is Status.ERROR for o in observations] == [False] * 4, [
        o.summary for o in observations
    ]
    assert observations[0].status is Status.FAIL, observations[0].summary
    # ... and nginx got the config path as one literal argument.
    words = (bin_dir / "nginx-argv.log").read_bytes().split(b"\0")[:-1]
    assert words[:3] == [b"-t", b"-c", subject.host.real_path(conf).encode()], words


# ---- #22.12, #22.13 directories: never through a symlink, never another's, 0700 always ----


def test_every_directory_the_recorder_creates_is_private_whatever_the_umask(
    tmp_path: Path, open_umask: None
) -> None:
    # `makedirs(mode=0o700)` gives the mode to the leaf only: under umask 0 the state dir
    # and state/probes were 0777 when the log offsets were the first thing written.
    from probes.error_rate import Config as ErrorRate
    from probes.error_rate import probe as error_rate
    from recorder.postmortem.close import write_draft
    from recorder.scheduler import prepare_probe_config
    from tests.fixtures import lab_config

    state = tmp_path / "deep" / "state"
    log = tmp_path / "access.log"
    log.write_bytes(b'203.0.113.7 - - [23/Nov/2026:09:00:00 +0000] "GET /" 200 1 "-" "-"\n')
    config = prepare_probe_config("error_rate", ErrorRate(log=str(log)), state)
    error_rate(LocalHost(f"dirs-{uuid.uuid4().hex[:6]}"), config)  # type: ignore[arg-type]
    store = Store(state / "store")
    try:
        write_draft(lab_config(state / "store"), store.create_incident(_incident()))
    finally:
        store.close()
    made = [tmp_path / "deep", *(p for p in (tmp_path / "deep").rglob("*") if p.is_dir())]
    assert len(made) >= 5, made
    loose = {str(p.relative_to(tmp_path)): oct(mode(p)) for p in made if mode(p) != 0o700}
    assert loose == {}


def test_a_state_dir_symlink_is_never_chmodded_through(tmp_path: Path) -> None:
    # A read-only `incidents list` with state_dir a symlink to a shared directory made
    # that directory 0700 (with `state_dir: /tmp` it would have been /tmp).
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    link = tmp_path / "state"
    link.symlink_to(shared)
    with pytest.raises(StoreError, match="shared directory"):
        Store(link)
    assert mode(shared) == 0o1777
    # A symlink to a directory of one's own is used, and its mode left alone.
    own = tmp_path / "own"
    own.mkdir()
    os.chmod(own, 0o750)
    link.unlink()
    link.symlink_to(own)
    Store(link).close()
    assert mode(own) == 0o750 and (own / "recorder.db").exists()


def test_a_sticky_shared_state_dir_is_refused_without_changing_it(tmp_path: Path) -> None:
    shared = tmp_path / "tmp"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    with pytest.raises(StoreError, match="shared directory"):
        Store(shared)
    assert mode(shared) == 0o1777
    assert list(shared.iterdir()) == []


def test_a_state_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("making a directory another user's needs root")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chmod(theirs, 0o777)
    os.chown(theirs, 65534, 65534)
    with pytest.raises(StoreError, match="belongs to uid 65534"):
        Store(theirs)
    assert mode(theirs) == 0o777
