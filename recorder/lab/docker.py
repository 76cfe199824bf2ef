"""The docker backend: the same stack as containers (`docker/compose.yml`).

`recorder lab up --backend docker` stages a build context in the lab's directory (the
docker files, from the checkout or from the installed package, and the recorder's
source, or a wheel of the installed copy), runs `docker compose` (v2) or Debian's
`docker-compose` (1.29), whichever is present, with `-f <stage>/docker/compose.yml -p
recorder-lab`: `build` (each image once), then `up -d`, and waits until the nginx
containers are healthy. Faults run inside the containers with `docker exec` through
the recorder's docker host type (`recorder.hosts.docker.DockerHost`), by the same fault
definitions as the local lab. DOCKER_HOST picks the engine (the socket mounted into
the recorder container follows it).

The files the images are built from are rendered from the lab's templates, the one
source of truth shared with the local lab: `python -m recorder.lab.docker` rewrites them
under `docker/`, and a test fails when they drift from the templates.

Client addresses: traffic reaches lb-01 through the port Docker publishes on
127.0.0.1 (8080, or $RECORDER_LAB_LB_PORT). Docker's userland proxy makes every such
request come from the bridge gateway, so the docker lab's access logs hold one client
for all of it, and one more, the users service (steady traffic from inside the lab
network); use the local lab when the affected share of clients matters.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import secrets
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

from probes.base import CommandResult, HostUnreachable
from probes.private import write_private
from recorder.lab import templates as t
from recorder.lab.state import LabError

PROJECT = "recorder-lab"
CONTAINERS = {name: f"{PROJECT}-{name}" for name in (*t.HOSTS, "recorder")}
SERVICES = {t.LB: "lb", "web-01": "web-01", "web-02": "web-02"}  # compose service names
DEFAULT_LB_PORT = 8080
RECORDER_PORT = 9468
APP_PORT = 8000
IN_CONTAINER_CONFIG = "/etc/recorder/recorder.yml"
# One service per image of docker/compose.yml: the recorder's is the lab image the nginx
# hosts and the users share (`image: recorder-lab:latest`).
BUILT_SERVICES = ("recorder", "alertmanager", "prometheus")
# The networks Docker gives bridge networks: the LB's address is in one of them.
DOCKER_NETWORKS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
COMPOSE_TIMEOUT = 1800.0  # building images on a fresh machine takes minutes
HEALTHY_TIMEOUT = 180.0
EXEC_TIMEOUT = 15.0
DISTRIBUTION = "nginx-recorder"
# What the lab image's wheel stage builds from, in a checkout (pyproject.toml's sdist,
# less what the wheel does not need: tests, docs but the standard, the lab files).
SOURCE_FILES = (
    "pyproject.toml",
    "hatch_build.py",
    "README.md",
    "CHANGES.md",
    "recorder",
    "probes",
    "runbooks",
    "templates",
    "docs/postmortem-standard.md",
)


def checkout_root() -> Path | None:
    """The checkout this package runs from, or None when it is installed."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "docker" / "compose.yml").is_file():
        return root
    return None


def repo_docker_dir() -> Path:
    """`docker/` of the checkout this package runs from, or the copy an installed package
    carries (recorder/lab/docker_files, the wheel's package data)."""
    root = checkout_root()
    if root is not None:
        return root / "docker"
    return Path(__file__).resolve().parent / "docker_files"


def _ignore_stage(directory: str, names: list[str]) -> set[str]:
    # Tokens are the stage's own; compiled files are not for the image's Python.
    skip = {"secrets", "__pycache__", ".mypy_cache", ".ruff_cache"}
    return {n for n in names if n in skip or n.endswith((".so", ".pyc"))}


def stage_context(stage: Path) -> Path:
    """Write the lab's build context to `stage` (replacing it); return its compose file.

    Laid out as docker/compose.yml expects: docker/ (compose file, Dockerfiles, rendered
    configs) and src/, the recorder's source tree in a checkout, or a wheel repacked from
    the installed distribution, next to the dependencies' wheels. Only what the images
    need is sent to the engine (Debian's docker-compose 1.29 sends the whole context and
    ignores per-Dockerfile ignore files).
    """
    compose_file = stage_files(stage)
    wheels = stage / "src" / "wheels"
    download_wheels(wheels)
    if checkout_root() is None:
        repack_installed_wheel(wheels)
    return compose_file


def stage_files(stage: Path) -> Path:
    """The files of the build context (stage_context without the wheels): docker/, and
    src/ with the recorder's source in a checkout; returns the compose file."""
    secrets_dir = stage / "docker" / "secrets"
    kept = {p.name: p.read_bytes() for p in secrets_dir.glob("*")} if secrets_dir.is_dir() else {}
    if stage.exists():
        shutil.rmtree(stage)
    shutil.copytree(repo_docker_dir(), stage / "docker", ignore=_ignore_stage)
    # The lab's application, the same file the local lab runs (installed or checkout).
    shutil.copy2(Path(__file__).resolve().parent / "app.py", stage / "docker" / "lab" / "app.py")
    if kept:  # the same tokens across ups of one lab (copytree skipped the directory)
        secrets_dir.mkdir(mode=0o700)
    for name, data in kept.items():
        write_private(secrets_dir / name, data)
    src = stage / "src"
    src.mkdir()
    root = checkout_root()
    if root is not None:
        for rel in SOURCE_FILES:
            where = root / rel
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            if where.is_dir():
                shutil.copytree(where, src / rel, ignore=_ignore_stage)
            else:
                shutil.copy2(where, src / rel)
    return stage / "docker" / "compose.yml"


def download_wheels(out: Path) -> None:
    """The recorder's dependencies and build backend as wheels for the image's Python
    (Debian bookworm's 3.11), fetched here by this machine's pip, with its index, proxy
    and certificates: the image's build then needs no package index, only Debian's."""
    requires = importlib.metadata.requires(DISTRIBUTION) or []
    needed = [r for r in requires if "extra ==" not in r]
    out.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--dest",
        str(out),
        "--only-binary=:all:",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        "--platform",
        f"manylinux2014_{platform.machine()}",
        "hatchling>=1.18",
        "setuptools>=61",
        *needed,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise LabError(
            f"cannot download the recorder's dependencies: {done.stderr.strip()[-1500:]}"
        )


def repack_installed_wheel(out: Path) -> Path:
    """A pure-Python wheel of the installed recorder, from its RECORD (an installed copy
    has no pyproject.toml to build from). Compiled modules are left out: the image's
    Python may differ, and the access-log counter falls back to Python."""
    dist = importlib.metadata.distribution(DISTRIBUTION)
    version = dist.version
    tag = DISTRIBUTION.replace("-", "_")
    info = f"{tag}-{version}.dist-info"
    path = out / f"{tag}-{version}-py3-none-any.whl"
    records: list[str] = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as whl:
        for file in dist.files or []:
            rel = str(file)
            if rel.startswith("..") or rel.endswith((".so", ".pyc", "/RECORD", "/WHEEL")):
                continue
            if rel.startswith(f"{tag}-") and ".dist-info/" in rel:
                rel = f"{info}/{rel.split('/', 1)[1]}"
            located = Path(str(file.locate()))
            if located.is_file():
                whl.write(located, rel)
                records.append(f"{rel},,")
        wheel = (
            "Wheel-Version: 1.0\nGenerator: recorder-lab\n"
            "Root-Is-Purelib: true\nTag: py3-none-any\n"
        )
        whl.writestr(f"{info}/WHEEL", wheel)
        records += [f"{info}/WHEEL,,", f"{info}/RECORD,,"]
        whl.writestr(f"{info}/RECORD", "\n".join(records) + "\n")
    return path


def compose_command(docker: str) -> list[str]:
    """`docker compose` (v2) when the plugin answers, else Debian's `docker-compose`
    (1.29); LabError when neither does."""
    errors = []
    for argv in ([docker, "compose"], ["docker-compose"]):
        try:
            done = subprocess.run(
                [*argv, "version"],
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=30,
                check=False,
            )
        except FileNotFoundError:
            errors.append(f"{argv[0]} not found")
            continue
        except subprocess.TimeoutExpired:
            errors.append(f"{' '.join(argv)} version: no answer in 30s")
            continue
        if done.returncode == 0:
            return argv
        errors.append(f"{' '.join(argv)}: {(done.stderr or done.stdout).strip()[:200]}")
    raise LabError(
        "the docker lab needs Docker with the compose plugin (`docker compose`) or "
        f"docker-compose (the local lab needs neither): {'; '.join(errors)}"
    )


def docker_env(lb_port: int) -> dict[str, str]:
    """The environment compose runs in: the lb port, and the engine's socket path for
    the recorder container's mount when DOCKER_HOST names a unix socket."""
    env = {**os.environ, "RECORDER_LAB_LB_PORT": str(lb_port)}
    host = env.get("DOCKER_HOST", "")
    if host.startswith("unix://") and not env.get("DOCKER_SOCK"):
        env["DOCKER_SOCK"] = host.removeprefix("unix://")
    return env


def docker_layout(host: str) -> t.Layout:
    return t.Layout(
        host=host,
        root="",
        listen="80",
        app=f"127.0.0.1:{APP_PORT}",
        backends=tuple(f"{SERVICES[w]}:80" for w in t.WEB_HOSTS),
        trusted_proxies=DOCKER_NETWORKS,
        user="www-data",
    )


# Where compose mounts the webhook token (a compose secret) in the recorder and Alertmanager.
WEBHOOK_TOKEN_SECRET = "/run/secrets/webhook-token"
# ... and the read token (the recorder listens on 0.0.0.0 in its container, so its pages,
# API reads and /metrics need it) in the recorder and Prometheus, which scrapes with it.
READ_TOKEN_SECRET = "/run/secrets/read-token"


def docker_recorder_config() -> str:
    text, _ = t.recorder_config(
        state_dir="/var/lib/recorder",
        listen=f"0.0.0.0:{RECORDER_PORT}",
        hosts={name: {"docker": {"container": CONTAINERS[name]}} for name in t.HOSTS},
        urls={name: f"http://{SERVICES[name]}/" for name in t.HOSTS},
        header=(
            "The recorder of the docker lab (docker/compose.yml), mounted into its container.\n"
            "Written by `python -m recorder.lab.docker` from recorder/lab/templates.py: edit\n"
            "the templates, not this file. The nginx containers are reached by `docker exec`\n"
            "through the Docker socket mounted into the recorder container."
        ),
        interval="5s",
        recover_after="30s",
        token_file=WEBHOOK_TOKEN_SECRET,
        read_token_file=READ_TOKEN_SECRET,
    )
    return text


def ensure_webhook_token(docker_dir: Path) -> Path:
    """The lab's Alertmanager-to-recorder bearer token (compose secret), made once, 0600,
    never committed (docker/secrets/ is ignored by git)."""
    return _ensure_secret(docker_dir / "secrets" / "webhook-token")


def ensure_read_token(docker_dir: Path) -> Path:
    """The lab's read token for the recorder's pages and /metrics (compose secret; Prometheus
    scrapes with it), made once like the webhook's."""
    return _ensure_secret(docker_dir / "secrets" / "read-token")


def _ensure_secret(path: Path) -> Path:
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(path, secrets.token_urlsafe(32) + "\n", exclusive=True)
    return path


def rendered_files() -> dict[str, str]:
    """Every generated file under docker/, by its path relative to docker/."""
    files = {"recorder.yml": docker_recorder_config()}
    for host in t.HOSTS:
        layout = docker_layout(host)
        files[f"nginx/{host}/nginx.conf"] = t.nginx_conf(layout)
        files[f"nginx/{host}/sites-available/{t.SITE}"] = t.site_conf(layout)
    return files


def write_rendered(docker_dir: Path) -> list[Path]:
    written = []
    for rel, text in rendered_files().items():
        path = docker_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


class DockerOps:
    """NodeOps for one container, every step a `docker exec` through DockerHost."""

    def __init__(self, name: str, role: str, container: str, docker: str = "docker") -> None:
        from recorder.hosts.docker import DockerHost

        self.name = name
        self.role = role
        self.container = container
        self.host = DockerHost(name, container, docker=docker, timeout=EXEC_TIMEOUT)

    def _run(self, argv: list[str]) -> CommandResult:
        try:
            return self.host.run(argv, EXEC_TIMEOUT)
        except HostUnreachable as exc:
            raise LabError(f"{self.name} ({self.container}): {exc}") from None

    def _must(self, argv: list[str], what: str) -> CommandResult:
        result = self._run(argv)
        if result.exit_code != 0:
            raise LabError(f"{self.name}: {what}: {result.stderr.strip() or result.exit_code}")
        return result

    def read_text(self, path: str) -> str:
        try:
            return self.host.read_text(path)
        except (HostUnreachable, OSError) as exc:
            raise LabError(f"{self.name}: cannot read {path}: {exc}") from None

    def write_text(self, path: str, text: str) -> None:
        # The script is a constant; the text and path travel as positional arguments.
        script = (
            'mkdir -p "$(dirname "$2")" && printf "%s" "$1" > "$2.lab-tmp" && mv "$2.lab-tmp" "$2"'
        )
        self._must(["sh", "-c", script, "sh", text, path], f"cannot write {path}")

    def exists(self, path: str) -> bool:
        return self._run(["test", "-e", path]).exit_code == 0

    def is_link(self, path: str) -> bool:
        return self._run(["test", "-L", path]).exit_code == 0

    def remove(self, path: str) -> None:
        self._must(["rm", "-f", "--", path], f"cannot remove {path}")

    def symlink(self, target: str, link: str) -> None:
        self._must(["ln", "-sfn", "--", target, link], f"cannot link {link}")

    def move(self, src: str, dst: str) -> None:
        script = 'mkdir -p "$(dirname "$2")" && mv -f -- "$1" "$2"'
        self._must(["sh", "-c", script, "sh", src, dst], f"cannot move {src}")

    def nginx_test(self) -> CommandResult:
        return self._run(["nginx", "-t"])

    def nginx_pid(self) -> int | None:
        try:
            text = self.host.read_text(t.PID_FILE).strip()
        except FileNotFoundError:
            return None
        except (HostUnreachable, OSError) as exc:
            raise LabError(f"{self.name}: cannot read {t.PID_FILE}: {exc}") from None
        if not text.isdigit():
            return None
        # Alive and not a zombie (the image runs an init that reaps, but be sure).
        script = 'test -d "/proc/$1" && ! grep -q "^State:[[:space:]]*Z" "/proc/$1/status"'
        alive = self._run(["sh", "-c", script, "sh", text]).exit_code == 0
        return int(text) if alive else None

    def nginx_running(self) -> bool:
        return self.nginx_pid() is not None

    def nginx_start(self) -> CommandResult:
        result = self._run(["nginx"])
        if result.exit_code == 0:
            deadline = time.monotonic() + 5.0
            while not self.nginx_running() and time.monotonic() < deadline:
                time.sleep(0.1)
        return result

    def nginx_stop(self) -> None:
        pid = self.nginx_pid()
        if pid is None:
            return
        self._must(["kill", "-TERM", str(pid)], "cannot stop nginx")
        deadline = time.monotonic() + 5.0
        while self.nginx_running():
            if time.monotonic() > deadline:
                raise LabError(f"{self.name}: nginx (pid {pid}) does not stop")
            time.sleep(0.1)

    def nginx_signal_reload(self) -> None:
        pid = self.nginx_pid()
        if pid is None:
            raise LabError(f"{self.name}: nginx is not running")
        self._must(["kill", "-HUP", str(pid)], "cannot signal nginx")


class DockerBackend:
    name = "docker"

    def __init__(
        self,
        docker: str | None = None,
        compose_file: str | os.PathLike[str] | None = None,
        lb_port: int | None = None,
        compose: list[str] | None = None,
    ) -> None:
        self.docker = docker or os.environ.get("RECORDER_LAB_DOCKER") or "docker"
        env_file = os.environ.get("RECORDER_LAB_COMPOSE")
        # Given (or from the lab's state): used as is. Else `up` stages one.
        chosen = compose_file or env_file
        self.compose_file: Path | None = Path(chosen) if chosen else None
        port = lb_port or os.environ.get("RECORDER_LAB_LB_PORT") or DEFAULT_LB_PORT
        self.lb_port = int(port)
        self.compose = compose

    def _compose(self, *args: str) -> list[str]:
        if self.compose is None:
            self.compose = compose_command(self.docker)
        return [*self.compose, "-f", str(self.compose_file), "-p", PROJECT, *args]

    def _run(self, argv: list[str], timeout: float, what: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                argv,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                env=docker_env(self.lb_port),
                check=False,
            )
        except FileNotFoundError:
            raise LabError(
                f"{what}: {argv[0]} not found; the docker lab needs Docker with the "
                "compose plugin or docker-compose (the local lab needs neither)"
            ) from None
        except subprocess.TimeoutExpired:
            raise LabError(f"{what}: no answer from docker in {timeout:g}s") from None

    def up(self, directory: Path, capacity_rps: int, capacity_burst: int) -> dict[str, Any]:
        if self.compose is None:  # which compose, or what is missing, before any download
            self.compose = compose_command(self.docker)
        if self.compose_file is None:
            if not repo_docker_dir().is_dir():
                raise LabError(f"{repo_docker_dir()} not found: a broken installation", 2)
            self.compose_file = stage_context(directory / "docker-context")
        elif not self.compose_file.is_file():
            raise LabError(f"{self.compose_file} not found (RECORDER_LAB_COMPOSE?)", 2)
        ensure_webhook_token(self.compose_file.parent)
        ensure_read_token(self.compose_file.parent)
        try:
            # Each image once, then start without building again: `up --build` has
            # compose 1.29 go through the lab image once per service that uses it, and
            # under vfs even a fully cached pass takes seconds.
            built = self._run(self._compose(*self._build_args()), COMPOSE_TIMEOUT, "build")
            if built.returncode != 0:
                raise LabError(f"docker compose build failed: {built.stderr.strip()[-2000:]}")
            started = self._run(self._compose("up", "-d"), COMPOSE_TIMEOUT, "up")
            if started.returncode != 0:
                raise LabError(f"docker compose up failed: {started.stderr.strip()[-2000:]}")
            self._wait_healthy()
        except LabError:
            self.down({})  # what compose made before failing: network, volumes, containers
            raise
        hosts: dict[str, Any] = {}
        for name in t.HOSTS:
            hosts[name] = {
                "role": t.ROLES[name],
                "url": f"http://127.0.0.1:{self.lb_port}/" if name == t.LB else None,
                "port": self.lb_port if name == t.LB else None,
                "prefix": None,
                "container": CONTAINERS[name],
            }
        port = os.environ.get("RECORDER_LAB_RECORDER_PORT") or RECORDER_PORT
        return {
            "hosts": hosts,
            "docker": {
                "compose_file": str(self.compose_file),
                "lb_port": self.lb_port,
                "compose": self.compose,
            },
            "ready_timeout": 60.0,
            "capacity": {"rps": t.CAPACITY_RPS, "burst": t.CAPACITY_BURST},
            "recorder": {
                "config": str(self.compose_file.parent / "recorder.yml"),
                "listen": f"127.0.0.1:{port}",
                "state_dir": "/var/lib/recorder (volume recorder-state)",
                "container": CONTAINERS["recorder"],
            },
        }

    def _build_args(self) -> list[str]:
        """`build` of one service per image. compose v2 builds them in parallel by
        itself; 1.29 does with --parallel (v2 no longer honours that flag)."""
        parallel = ["--parallel"] if self.compose == ["docker-compose"] else []
        return ["build", *parallel, *BUILT_SERVICES]

    def _wait_healthy(self) -> None:
        """Until every nginx container's healthcheck passes (what `up --wait` does in
        compose v2; 1.29 has no --wait)."""
        names = [CONTAINERS[h] for h in t.HOSTS]
        argv = [self.docker, "inspect", "-f", "{{.Name}} {{.State.Health.Status}}", *names]
        deadline = time.monotonic() + HEALTHY_TIMEOUT
        seen = ""
        while time.monotonic() < deadline:
            done = self._run(argv, 30, "inspect")
            seen = (done.stdout or done.stderr).strip()
            lines = seen.splitlines()
            if done.returncode == 0 and len(lines) == len(names):
                if all(line.endswith(" healthy") for line in lines):
                    return
            time.sleep(1.0)
        raise LabError(
            f"the lab's nginx containers are not healthy in {HEALTHY_TIMEOUT:g}s: {seen}"
        )

    def down(self, state: dict[str, Any]) -> list[str]:
        done = self._run(self._compose("down", "--remove-orphans", "--volumes"), 300, "down")
        if done.returncode != 0:
            return [f"docker compose down failed: {done.stderr.strip()[-1000:]}"]
        return []

    def ops(self, state: dict[str, Any], host: str) -> DockerOps:
        info = state["hosts"][host]
        return DockerOps(host, info["role"], info["container"], self.docker)

    def host_status(self, state: dict[str, Any], host: str) -> dict[str, Any]:
        pid = self.ops(state, host).nginx_pid()
        return {"running": pid is not None, "pid": pid}

    def record_deploy(self, state: dict[str, Any], service: str, version: str) -> None:
        # The recorder's store lives in its container: report the deploy as a CI/CD step
        # would, with its CLI there.
        container = state["recorder"].get("container", CONTAINERS["recorder"])
        argv = [
            self.docker,
            "exec",
            container,
            "recorder",
            "--config",
            IN_CONTAINER_CONFIG,
            "event",
            "deploy",
            "--service",
            service,
            "--version",
            version,
        ]
        done = self._run(argv, 60, "deploy event")
        if done.returncode != 0:
            raise LabError(f"cannot record the deploy event: {done.stderr.strip()}")


def main() -> int:
    """`python -m recorder.lab.docker`: re-render docker/ from the lab's templates."""
    written = write_rendered(repo_docker_dir())
    for path in written:
        print(f"wrote {path}")
    if not written:
        print("docker/ is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
