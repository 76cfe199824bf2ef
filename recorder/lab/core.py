"""`Lab`: the fault lab as a Python object (the CLI is a thin layer over it).

    with Lab(tmp_path / "lab") as lab:        # up() on enter, down() on exit, always
        truth = lab.break_("backend-5xx", rate=0.3)
        report = lab.traffic(clients=50, rps=40, seconds=2)
        lab.fix()

`up()` takes well under a second locally; `down()` stops every process by pid and
checks none is left. `config_path` is the recorder config watching the stack, `hosts`
maps each host to its URL, port and directory, and `status()["faults"]` holds the truth
of every active fault.
"""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import urlsplit

from probes.agent import USER_AGENT
from recorder.lab import templates as t
from recorder.lab.faults import (
    FAULTS,
    FaultContext,
    FaultDef,
    NodeOps,
    fault_def,
    resolve_params,
    truth_of,
)
from recorder.lab.state import (
    LOCK_FILE,
    STATE_FILE,
    LabError,
    lab_command,
    load_state,
    locked,
    now_iso,
    owned,
    read_pid,
    save_state,
    stop_pid,
)
from recorder.lab.traffic import SPIKE_BASE, run_traffic

BACKENDS = ("local", "docker")
# Fix in this order: restored files first, so that restarting a stopped nginx works.
FIX_ORDER = ("site", "app-errors", "app-latency", "load", "process")
HEALTH_TIMEOUT = 5.0


class Backend(Protocol):
    name: str

    def up(self, directory: Path, capacity_rps: int, capacity_burst: int) -> dict[str, Any]: ...

    def down(self, state: dict[str, Any]) -> list[str]: ...

    def ops(self, state: dict[str, Any], host: str) -> NodeOps: ...

    def host_status(self, state: dict[str, Any], host: str) -> dict[str, Any]: ...

    def record_deploy(self, state: dict[str, Any], service: str, version: str) -> None: ...


def default_dir() -> Path:
    return Path(os.environ.get("RECORDER_LAB_DIR") or "lab").absolute()


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The status a plain GET gets, or None when nothing answers (refused, reset, timeout)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(
        parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout
    )
    try:
        # The lab's own checks are the recorder's, not a client's: the same User-Agent as
        # the http probe, so they stay out of the clients the error_rate probe counts.
        headers = {"Connection": "close", "User-Agent": USER_AGENT}
        conn.request("GET", parts.path or "/", headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def wait_for(url: str, want: Any, timeout: float) -> int | None:
    """Poll url until its status satisfies want (a status, None, or a predicate)."""
    deadline = time.monotonic() + timeout
    while True:
        status = http_status(url, timeout=min(2.0, timeout))
        ok = want(status) if callable(want) else status == want
        if ok or time.monotonic() >= deadline:
            return status
        time.sleep(0.03)


def prepare_lab_dir(directory: Path) -> None:
    """Make room for a new lab: only ever removes what a previous lab created (its host
    directories, recorder state and config, spike reports), and refuses a directory that
    holds anything else."""
    if directory.exists() and not directory.is_dir():
        raise LabError(f"{directory} exists and is not a directory", 2)
    if not (directory / STATE_FILE).exists() and directory.exists():
        strangers = [p.name for p in directory.iterdir() if p.name != LOCK_FILE]
        if strangers:
            raise LabError(
                f"{directory} is not empty and holds no lab ({STATE_FILE}); "
                "give --dir an empty or new directory",
                2,
            )
    for name in (*t.HOSTS, "state", "notify"):
        if (directory / name).is_dir():
            shutil.rmtree(directory / name)
    for name in ("recorder.yml", STATE_FILE):
        (directory / name).unlink(missing_ok=True)
    for leftover in directory.glob("spike-*"):
        leftover.unlink(missing_ok=True)
    directory.mkdir(parents=True, exist_ok=True)


class Lab:
    """The fault lab in `directory` (default $RECORDER_LAB_DIR or ./lab)."""

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        backend: str | None = None,
        capacity_rps: int = t.CAPACITY_RPS,
        capacity_burst: int = t.CAPACITY_BURST,
        nginx: str = "nginx",
        docker: str | None = None,
        compose_file: str | os.PathLike[str] | None = None,
        lb_port: int | None = None,
    ) -> None:
        self.dir = Path(directory).absolute() if directory is not None else default_dir()
        if backend is not None and backend not in BACKENDS:
            raise LabError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}", 2)
        self._backend_name = backend
        self.capacity_rps = capacity_rps
        self.capacity_burst = capacity_burst
        self.nginx = nginx
        self.docker = docker
        self.compose_file = compose_file
        self.lb_port = lb_port

    # ---- context manager ---------------------------------------------------------

    def __enter__(self) -> Lab:
        self.up()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()

    # ---- views -------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        state = load_state(self.dir)
        if state is None:
            raise LabError(f"no lab in {self.dir} (run `{lab_command('up', self.dir)}` first)", 2)
        return state

    def _up_state(self) -> dict[str, Any]:
        state = self.state()
        if not state.get("up"):
            up = lab_command("up", self.dir, state.get("backend", "local"))
            raise LabError(f"the lab in {self.dir} is not up (run `{up}`)", 2)
        return state

    @property
    def config_path(self) -> Path:
        return Path(self.state()["recorder"]["config"])

    @property
    def hosts(self) -> dict[str, dict[str, Any]]:
        """name -> {role, url, port, prefix, container} for every host."""
        return {
            name: {k: info.get(k) for k in ("role", "url", "port", "prefix", "container")}
            for name, info in self.state()["hosts"].items()
        }

    @property
    def url(self) -> str:
        """What users hit: lb-01's URL."""
        return str(self.state()["hosts"][t.LB]["url"])

    @property
    def faults(self) -> list[dict[str, Any]]:
        return list(self.state().get("faults", []))

    def _backend(self, name: str, state: Mapping[str, Any] | None = None) -> Backend:
        if name == "local":
            from recorder.lab.local import LocalBackend

            return LocalBackend(self.nginx)
        if name == "docker":
            from recorder.lab.docker import DockerBackend

            # Later commands drive the same compose project `up` started.
            started = (state or {}).get("docker") or {}
            return DockerBackend(
                self.docker,
                self.compose_file or started.get("compose_file"),
                self.lb_port or started.get("lb_port"),
                started.get("compose"),
            )
        raise LabError(f"unknown backend {name!r}; valid: {', '.join(BACKENDS)}", 2)

    # ---- up and down -------------------------------------------------------------

    def up(self) -> dict[str, Any]:
        """Start the stack, wait until lb-01 answers 200, write the recorder config."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LabError(f"cannot create {self.dir}: {exc.strerror}", 2) from None
        with locked(self.dir):
            old = load_state(self.dir)
            if old is not None and old.get("up"):
                raise LabError(
                    f"a lab is already up in {self.dir} (`{lab_command('down', self.dir)}` first)",
                    1,
                )
            name = self._backend_name or "local"
            backend = self._backend(name)
            prepare_lab_dir(self.dir)
            started = backend.up(self.dir, self.capacity_rps, self.capacity_burst)
            state: dict[str, Any] = {
                "version": 1,
                "backend": name,
                "dir": str(self.dir),
                "site": t.SITE,
                "created_at": now_iso(),
                "up": True,
                "capacity": started.get(
                    "capacity", {"rps": self.capacity_rps, "burst": self.capacity_burst}
                ),
                "hosts": started["hosts"],
                "recorder": {},
                "docker": started.get("docker"),
                "notify": started.get("notify"),
                "faults": [],
            }
            try:
                save_state(self.dir, state)  # from here on, down() can find every pid
                lb_url = state["hosts"][t.LB]["url"]
                status = wait_for(lb_url, 200, started.get("ready_timeout", HEALTH_TIMEOUT))
                if status != 200:
                    got = f"HTTP {status}" if status else "no answer"
                    raise LabError(f"lb-01 does not answer 200 at {lb_url} ({got})")
                state["recorder"] = self._write_recorder_config(state, started)
                save_state(self.dir, state)
            except BaseException:
                backend.down(state)
                state["up"] = False
                save_state(self.dir, state)
                raise
        return self.status()

    def _write_recorder_config(
        self, state: dict[str, Any], started: dict[str, Any]
    ) -> dict[str, Any]:
        if "recorder" in started:
            return dict(started["recorder"])  # the docker stack ships its own
        from recorder.config import ConfigError, parse_config

        state_dir = self.dir / "state"
        state_dir.mkdir(exist_ok=True)
        listen = f"127.0.0.1:{started['recorder_port']}"
        text, data = t.recorder_config(
            state_dir=str(state_dir),
            listen=listen,
            hosts={n: {"local": {"prefix": h["prefix"]}} for n, h in state["hosts"].items()},
            urls={n: h["url"] for n, h in state["hosts"].items()},
            webhook=started.get("notify"),
            header=(
                f"Written by `recorder lab up` for the lab in {self.dir}.\n"
                f"Watch it with: recorder run --config {self.dir / 'recorder.yml'}"
            ),
        )
        path = self.dir / "recorder.yml"
        try:
            parse_config(data, str(path))
        except ConfigError as exc:  # a bug in the templates, said before anyone runs it
            raise LabError(f"the generated recorder config is invalid: {exc}") from None
        path.write_text(text, encoding="utf-8")
        return {"config": str(path), "listen": listen, "state_dir": str(state_dir)}

    def down(self) -> None:
        """Stop everything the lab started, by pid; raise if anything is left running.
        The directory stays, for inspection."""
        if load_state(self.dir) is None:
            return
        with locked(self.dir):
            state = load_state(self.dir)
            if state is None:
                return
            problems = []
            for truth in state.get("faults", []):
                if truth["fault"] == "traffic-spike":
                    self._stop_load(truth)
            problems += self._backend(state["backend"], state).down(state)
            state["up"] = False
            state["faults"] = []
            state["stopped_at"] = now_iso()
            save_state(self.dir, state)
        if problems:
            raise LabError("down left processes running: " + "; ".join(problems))

    # ---- faults ------------------------------------------------------------------

    def _check_host(self, state: dict[str, Any], fault: FaultDef, host: str | None) -> str:
        host = host or fault.default_host
        valid = [h for h, info in state["hosts"].items() if info["role"] in fault.roles]
        if host not in state["hosts"]:
            raise LabError(
                f"unknown host {host!r}; valid hosts for {fault.name}: {', '.join(valid)}", 2
            )
        if host not in valid:
            raise LabError(
                f"{fault.name} does not apply to {host} (role {state['hosts'][host]['role']}); "
                f"valid hosts: {', '.join(valid)}",
                2,
            )
        return host

    def break_(
        self,
        fault: str,
        host: str | None = None,
        rate: float | None = None,
        *,
        delay: float | None = None,
        seconds: float | None = None,
        rps: float | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        """Inject `fault` on `host` (default: the fault's own); returns its truth."""
        spec = fault_def(fault)
        given = {"rate": rate, "delay": delay, "seconds": seconds, "rps": rps, **params}
        self._up_state()  # before the lock: a missing lab is reported, never created
        with locked(self.dir):
            state = self._up_state()
            host = self._check_host(state, spec, host)
            resolved = resolve_params(spec, given)
            active = [f for f in state["faults"] if f["host"] == host]
            for other in active:
                if other["fault"] == spec.name or FAULTS[other["fault"]].resource == spec.resource:
                    raise LabError(
                        f"{host} already has {other['fault']} active; "
                        f"`recorder lab fix {other['fault']}` first"
                    )
            backend = self._backend(state["backend"], state)
            ops = backend.ops(state, host)
            ctx = FaultContext(ops, _Hooks(self, state, backend), state["site"], resolved, active)
            since = now_iso()
            try:
                extra = spec.inject(ctx)
            except LabError:
                _undo_quietly(spec, ctx)  # leave the host as it was, not half-broken
                raise
            truth = truth_of(spec, host, since, extra)
            state["faults"].append(truth)
            save_state(self.dir, state)
        url = state["hosts"][host].get("url")
        if spec.closes_port and url:
            # The change is made; wait until users can see it, so callers observe a
            # settled state (a reload takes effect a moment after the signal).
            if wait_for(url, None, HEALTH_TIMEOUT) is not None:
                raise LabError(f"{host} still answers at {url} after {spec.name}")
        return truth

    def fix(self, fault: str | None = None, host: str | None = None) -> list[dict[str, Any]]:
        """Undo one fault (every host it is on, or only `host`) or all; then check the
        stack is healthy again. Returns the truths of the faults fixed."""
        if fault is not None:
            fault_def(fault)
        self._up_state()
        with locked(self.dir):
            state = self._up_state()
            if host is not None and host not in state["hosts"]:
                raise LabError(
                    f"unknown host {host!r}; valid hosts: {', '.join(state['hosts'])}", 2
                )
            targets = [
                f
                for f in state["faults"]
                if (fault is None or f["fault"] == fault) and (host is None or f["host"] == host)
            ]
            targets.sort(key=lambda f: FIX_ORDER.index(FAULTS[f["fault"]].resource))
            backend = self._backend(state["backend"], state)
            fixed: list[dict[str, Any]] = []
            failures: list[str] = []
            for truth in targets:
                spec = FAULTS[truth["fault"]]
                others = [
                    f for f in state["faults"] if f["host"] == truth["host"] and f is not truth
                ]
                ops = backend.ops(state, truth["host"])
                ctx = FaultContext(ops, _Hooks(self, state, backend), state["site"], {}, others)
                try:
                    spec.undo(ctx, truth)
                except LabError as exc:
                    failures.append(f"{spec.name} on {truth['host']}: {exc}")
                    continue
                state["faults"].remove(truth)
                fixed.append({**truth, "fixed_at": now_iso()})
                save_state(self.dir, state)
            if failures:
                raise LabError("could not fix: " + "; ".join(failures))
            self._check_healthy(state, backend, {f["host"] for f in fixed})
        return fixed

    def _check_healthy(self, state: dict[str, Any], backend: Backend, touched: set[str]) -> None:
        """Every host without a fault left runs nginx on a config that passes `nginx -t`
        and answers 200 (lb-01 only once nothing is broken behind it either)."""
        remaining = {f["host"] for f in state["faults"]}
        problems: list[str] = []
        for name, info in state["hosts"].items():
            if name in remaining or (remaining and name not in touched):
                continue
            ops = backend.ops(state, name)
            if not ops.nginx_running():
                problems.append(f"{name}: nginx is not running")
                continue
            test = ops.nginx_test()
            if test.exit_code != 0:
                problems.append(f"{name}: nginx -t fails: {test.stderr.strip()}")
            url = info.get("url")
            if url and (info["role"] == "web" or not remaining):
                status = wait_for(url, 200, HEALTH_TIMEOUT)
                if status != 200:
                    problems.append(f"{name}: {url} answers {status or 'nothing'}, not 200")
        if problems:
            raise LabError("fixed, but not healthy: " + "; ".join(problems))

    # ---- load (traffic-spike) ----------------------------------------------------

    def _start_load(
        self, state: dict[str, Any], rps: float, seconds: float, clients: int
    ) -> dict[str, Any]:
        stamp = now_iso().replace(":", "").replace("-", "").replace(".", "")[:15]
        pid_file = self.dir / f"spike-{stamp}.pid"
        report = self.dir / f"spike-{stamp}.json"
        argv = [
            sys.executable,
            "-m",
            "recorder.lab.traffic",
            "--url",
            state["hosts"][t.LB]["url"],
            "--clients",
            str(clients),
            "--rps",
            f"{rps:g}",
            "--seconds",
            f"{seconds:g}",
            "--base",
            SPIKE_BASE,
            "--timeout",
            "5",
            "--detach",
            "--pid-file",
            str(pid_file),
            "--log",
            str(self.dir / f"spike-{stamp}.log"),
            "--report",
            str(report),
        ]
        done = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, timeout=30)
        pid = read_pid(pid_file)
        if done.returncode != 0 or pid is None:
            why = done.stderr.decode("utf-8", "replace").strip() or f"exit {done.returncode}"
            raise LabError(f"the traffic spike does not start: {why}")
        until = time.time() + seconds
        from datetime import UTC, datetime

        return {
            "rps": rps,
            "seconds": seconds,
            "clients": clients,
            "sources": f"{SPIKE_BASE[:-1]}1 and up",
            "capacity_rps": state["capacity"]["rps"],
            "until": datetime.fromtimestamp(until, UTC).isoformat(timespec="milliseconds"),
            "pid": pid,
            "pid_file": str(pid_file),
            "report": str(report),
        }

    def _stop_load(self, truth: Mapping[str, Any]) -> None:
        if not stop_pid(truth.get("pid"), str(truth.get("pid_file"))):
            raise LabError(f"the traffic spike (pid {truth.get('pid')}) does not stop")

    # ---- status and traffic ------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """hosts (url, role, running, pids), the active faults and where everything is."""
        state = load_state(self.dir)
        if state is None:
            return {"dir": str(self.dir), "up": False, "hosts": {}, "faults": []}
        backend = self._backend(state["backend"], state)
        hosts: dict[str, Any] = {}
        for name, info in state["hosts"].items():
            entry = {k: info.get(k) for k in ("role", "url", "port", "prefix", "container")}
            if state.get("up"):
                try:
                    entry.update(backend.host_status(state, name))
                except LabError as exc:
                    entry.update({"running": False, "error": str(exc)})
            else:
                entry["running"] = False
            hosts[name] = entry
        faults = []
        for truth in state.get("faults", []):
            entry = dict(truth)
            if truth["fault"] == "traffic-spike":
                entry["running"] = owned(truth.get("pid"), str(truth.get("pid_file")))
            faults.append(entry)
        return {
            "dir": str(self.dir),
            "backend": state["backend"],
            "up": bool(state.get("up")),
            "config": state.get("recorder", {}).get("config"),
            "recorder": state.get("recorder", {}),
            "capacity": state.get("capacity"),
            "notify": state.get("notify"),
            "hosts": hosts,
            "faults": faults,
        }

    def traffic(
        self, clients: int = 20, rps: float = 10.0, seconds: float = 10.0
    ) -> dict[str, Any]:
        return run_traffic(self.dir, clients, rps, seconds)


class _Hooks:
    """LabHooks for one command: the lab-wide parts of faults."""

    def __init__(self, lab: Lab, state: dict[str, Any], backend: Backend) -> None:
        self.lab = lab
        self.state = state
        self.backend = backend

    def record_deploy(self, service: str, version: str) -> None:
        self.backend.record_deploy(self.state, service, version)

    def start_load(self, rps: float, seconds: float, clients: int) -> dict[str, Any]:
        return self.lab._start_load(self.state, rps, seconds, clients)

    def stop_load(self, truth: Mapping[str, Any]) -> None:
        self.lab._stop_load(truth)


def _undo_quietly(spec: FaultDef, ctx: FaultContext) -> None:
    try:
        spec.undo(ctx, {})
    except LabError:
        pass  # the injection's own error is the one to report
