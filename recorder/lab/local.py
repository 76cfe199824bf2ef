"""The local backend: real nginx processes and lab apps on 127.0.0.1 high ports.

Each host is a directory laid out like a Debian server's root (`<dir>/lb-01/etc/nginx/`,
`<dir>/lb-01/var/log/nginx/`, `<dir>/lb-01/run/nginx.pid`), which the recorder watches as
a local host with that `prefix`. nginx is started as `nginx -p <dir>/<host>/ -c
<dir>/<host>/etc/nginx/nginx.conf` and daemonizes; the lab app (`app.py`) detaches too, so
neither is the child of whoever ran `up` and both outlive the command. Pids come from pid
files and are checked against /proc before any signal (see state.py).

Ran as root, nginx's workers run as root (`user root;`): the lab directory may be one
the default worker user cannot read. As another user the directive is left out.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from probes.base import CommandResult
from probes.private import write_private
from recorder.lab import templates as t
from recorder.lab.state import (
    LabError,
    children,
    owned,
    read_pid,
    stop_pid,
    wait_gone,
)

APP_PID = "/run/lab-app.pid"
APP_LOG = "/var/log/lab-app.log"
# The webhook sink's files, in `<dir>/notify/` (not a host: it stands for whoever is paged).
SINK_DIR = "notify"
START_TIMEOUT = 5.0


def run_quiet(argv: list[str], timeout: float, what: str) -> CommandResult:
    """Run argv (no shell), its output to a file rather than a pipe: a daemon that keeps
    an inherited pipe open would otherwise hold us until the timeout."""
    with tempfile.TemporaryFile() as err:
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise LabError(f"{what}: {argv[0]} did not finish in {timeout:g}s") from None
        except OSError as exc:
            raise LabError(f"{what}: cannot run {argv[0]}: {exc.strerror}") from None
        err.seek(0)
        output = err.read().decode("utf-8", "replace")
    return CommandResult(done.returncode, "", output)


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports on 127.0.0.1 (all bound at once, then released)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def spawn(argv: list[str]) -> tuple[subprocess.Popen[bytes], Any]:
    """Start a process that detaches (`--daemon`); its output goes to a temporary file.

    In a session of its own: a Ctrl-C at the terminal (SIGINT to the whole foreground
    group) would kill its starting half after the fork and before the pid file, leaving
    a server nobody knows of. The caller is interrupted instead, waits for it, and stops
    what it started (LocalBackend._start_apps)."""
    err = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True
    )
    return proc, err


def finish(proc: subprocess.Popen[bytes], err: Any) -> tuple[int, str]:
    """Wait (bounded) for a spawned process's starting half to exit: its code and output."""
    try:
        code = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        code = -1
    err.seek(0)
    message = err.read().decode("utf-8", "replace").strip()
    err.close()
    return code, message


def sink_pid(state: dict[str, Any]) -> int | None:
    """The webhook sink's pid from its pid file, if that process is still ours."""
    sink = state.get("notify") or {}
    pid = read_pid(sink["pid_file"]) if sink.get("pid_file") else None
    return pid if pid is not None and owned(pid, sink["messages"]) else None


class LocalOps:
    """NodeOps for one host of the local lab: its paths live under `prefix`."""

    def __init__(self, name: str, role: str, prefix: Path, nginx: str = "nginx") -> None:
        self.name = name
        self.role = role
        self.prefix = prefix
        self.nginx = nginx
        self.conf = self.real(t.NGINX_CONF)

    def real(self, path: str) -> str:
        return f"{self.prefix}{path}"

    def _nginx(self, *args: str) -> list[str]:
        return [self.nginx, "-p", f"{self.prefix}/", "-c", self.conf, *args]

    def read_text(self, path: str) -> str:
        try:
            return Path(self.real(path)).read_text(encoding="utf-8")
        except OSError as exc:
            raise LabError(f"{self.name}: cannot read {path}: {exc.strerror}") from None

    def write_text(self, path: str, text: str) -> None:
        real = Path(self.real(path))
        try:
            real.parent.mkdir(parents=True, exist_ok=True)
            tmp = real.with_name(f".{real.name}.tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, real)
        except OSError as exc:
            raise LabError(f"{self.name}: cannot write {path}: {exc.strerror}") from None

    def exists(self, path: str) -> bool:
        return os.path.exists(self.real(path))

    def is_link(self, path: str) -> bool:
        return os.path.islink(self.real(path))

    def remove(self, path: str) -> None:
        try:
            os.unlink(self.real(path))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise LabError(f"{self.name}: cannot remove {path}: {exc.strerror}") from None

    def symlink(self, target: str, link: str) -> None:
        # Absolute real targets, as Debian's absolute /etc/nginx/sites-available/... links;
        # the recorder's local host strips the prefix again when it reads them.
        real_link = self.real(link)
        tmp = f"{real_link}.lab-tmp"
        try:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(self.real(target), tmp)
            os.replace(tmp, real_link)
        except OSError as exc:
            raise LabError(f"{self.name}: cannot link {link}: {exc.strerror}") from None

    def move(self, src: str, dst: str) -> None:
        try:
            Path(self.real(dst)).parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.real(src), self.real(dst))
        except OSError as exc:
            raise LabError(f"{self.name}: cannot move {src} to {dst}: {exc.strerror}") from None

    def nginx_test(self) -> CommandResult:
        return run_quiet(self._nginx("-t"), 10.0, self.name)

    def nginx_pid(self) -> int | None:
        pid = read_pid(self.real(t.PID_FILE))
        return pid if pid is not None and owned(pid, self.conf) else None

    def nginx_running(self) -> bool:
        return self.nginx_pid() is not None

    def nginx_start(self) -> CommandResult:
        result = run_quiet(self._nginx(), 10.0, self.name)
        if result.exit_code == 0:
            # The daemon writes its pid file just after the starting process exits.
            deadline = time.monotonic() + START_TIMEOUT
            while not self.nginx_running() and time.monotonic() < deadline:
                time.sleep(0.01)
        return result

    def nginx_stop(self) -> None:
        pid = self.nginx_pid()
        if pid is None:
            return
        if not stop_pid(pid, self.conf):
            raise LabError(f"{self.name}: nginx (pid {pid}) does not stop")

    def nginx_signal_reload(self) -> None:
        pid = self.nginx_pid()
        if pid is None:
            raise LabError(f"{self.name}: nginx is not running")
        os.kill(pid, signal.SIGHUP)

    # ---- the app (web hosts) -----------------------------------------------------

    @property
    def app_marker(self) -> str:
        return self.real(t.APP_FAULTS)

    def app_pid(self) -> int | None:
        pid = read_pid(self.real(APP_PID))
        return pid if pid is not None and owned(pid, self.app_marker) else None


def app_script() -> str:
    return str(Path(__file__).with_name("app.py"))


class LocalBackend:
    name = "local"

    def __init__(self, nginx: str = "nginx") -> None:
        self.nginx = nginx

    def ops(self, state: dict[str, Any], host: str) -> LocalOps:
        info = state["hosts"][host]
        return LocalOps(host, info["role"], Path(info["prefix"]), self.nginx)

    # ---- up --------------------------------------------------------------------

    def up(self, directory: Path, capacity_rps: int, capacity_burst: int) -> dict[str, Any]:
        """Lay out, start and check the stack; returns the lab's state (not yet saved)."""
        lb_port, web1_port, web2_port, app1_port, app2_port, rec_port, sink_port = free_ports(7)
        ports = {t.LB: lb_port, "web-01": web1_port, "web-02": web2_port}
        app_ports = {"web-01": app1_port, "web-02": app2_port}
        user = "root" if os.geteuid() == 0 else None
        hosts: dict[str, Any] = {}
        for name in t.HOSTS:
            prefix = directory / name
            layout = t.Layout(
                host=name,
                root=str(prefix),
                listen=f"127.0.0.1:{ports[name]}",
                app=f"127.0.0.1:{app_ports[name]}" if name in app_ports else "",
                backends=tuple(f"127.0.0.1:{ports[w]}" for w in t.WEB_HOSTS),
                user=user,
                capacity_rps=capacity_rps,
                capacity_burst=capacity_burst,
            )
            self._lay_out(layout)
            hosts[name] = {
                "role": t.ROLES[name],
                "url": f"http://127.0.0.1:{ports[name]}/",
                "port": ports[name],
                "prefix": str(prefix),
                "container": None,
            }
            if name in app_ports:
                hosts[name]["app_port"] = app_ports[name]
        state: dict[str, Any] = {
            "hosts": hosts,
            "recorder_port": rec_port,
            "notify": self._lay_out_sink(directory, sink_port),
        }
        try:
            self._start_apps(state)
            for name in t.HOSTS:
                ops = self.ops(state, name)
                result = ops.nginx_start()
                if result.exit_code != 0 or not ops.nginx_running():
                    raise LabError(f"{name}: nginx does not start: {result.stderr.strip()}")
                hosts[name]["nginx_pid"] = ops.nginx_pid()
        except BaseException:
            self.down(state)
            raise
        return state

    def _lay_out(self, layout: t.Layout) -> None:
        p = layout.path
        for d in (
            t.SITES_AVAILABLE,
            t.SITES_ENABLED,
            "/var/log/nginx",
            "/run",
            "/var/lib/nginx",
            t.BACKUP_DIR,
        ):
            Path(p(d)).mkdir(parents=True, exist_ok=True)
        Path(p(t.NGINX_CONF)).write_text(t.nginx_conf(layout), encoding="utf-8")
        Path(p(t.site_available())).write_text(t.site_conf(layout), encoding="utf-8")
        os.symlink(p(t.site_available()), p(t.site_enabled()))
        for log in (t.ACCESS_LOG, t.ERROR_LOG):
            Path(p(log)).touch()
        if layout.role == "web":
            Path(p(t.APP_FAULTS)).parent.mkdir(parents=True, exist_ok=True)
            Path(p(t.APP_FAULTS)).write_text("{}\n", encoding="utf-8")

    def _lay_out_sink(self, directory: Path, port: int) -> dict[str, Any]:
        """The sink's directory and its signing secret (0600, as the recorder demands)."""
        sink_dir = directory / SINK_DIR
        sink_dir.mkdir()
        secret = sink_dir / "webhook-secret"
        write_private(secret, secrets.token_hex(32) + "\n", exclusive=True)
        messages = sink_dir / "messages.jsonl"
        messages.touch()
        return {
            "url": f"http://127.0.0.1:{port}/webhook",
            "port": port,
            "secret_file": str(secret),
            "messages": str(messages),
            "pid_file": str(sink_dir / "sink.pid"),
            "log": str(sink_dir / "sink.log"),
        }

    def _start_apps(self, state: dict[str, Any]) -> None:
        # All at once: interpreter start-up is most of `up`'s time.
        started: list[tuple[str, subprocess.Popen[bytes], Any]] = []
        sink = state["notify"]
        try:
            for name in t.WEB_HOSTS:
                ops = self.ops(state, name)
                argv = [
                    sys.executable,
                    "-I",  # no site-packages, no user paths: app.py is stdlib only, and fast
                    app_script(),
                    "--port",
                    str(state["hosts"][name]["app_port"]),
                    "--name",
                    name,
                    "--faults",
                    ops.app_marker,
                    "--daemon",
                    "--pid-file",
                    ops.real(APP_PID),
                    "--log",
                    ops.real(APP_LOG),
                ]
                started.append((name, *spawn(argv)))
            sink_argv = [
                sys.executable,
                "-I",
                str(Path(__file__).with_name("sink.py")),
                "--port",
                str(sink["port"]),
                "--secret-file",
                sink["secret_file"],
                "--out",
                sink["messages"],
                "--daemon",
                "--pid-file",
                sink["pid_file"],
                "--log",
                sink["log"],
            ]
            started.append(("", *spawn(sink_argv)))
            outcomes = {name: finish(proc, err) for name, proc, err in started}
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM) while they start: let each starting half
            # finish (bounded), so every server is in its pid file for down() to stop.
            for _, proc, err in started:
                if not err.closed:
                    finish(proc, err)
            self._note_pids(state)
            raise
        self._note_pids(state)
        problems = []
        for name, (code, message) in outcomes.items():
            pid = state["hosts"][name]["app_pid"] if name else sink["pid"]
            if code != 0 or pid is None:
                what = f"{name}: the app" if name else "the webhook sink"
                problems.append(f"{what} does not start: {message or f'exit {code}'}")
        if problems:
            raise LabError("; ".join(problems))

    def _note_pids(self, state: dict[str, Any]) -> None:
        """The apps' and the sink's pids, from their pid files, into the state."""
        for name in t.WEB_HOSTS:
            state["hosts"][name]["app_pid"] = self.ops(state, name).app_pid()
        state["notify"]["pid"] = sink_pid(state)

    # ---- down and status -------------------------------------------------------

    def down(self, state: dict[str, Any]) -> list[str]:
        """Stop every process of the lab; returns what could not be stopped."""
        problems: list[str] = []
        watched: list[int] = []
        for name in state.get("hosts", {}):
            ops = self.ops(state, name)
            pid = ops.nginx_pid()
            recorded = state["hosts"][name].get("nginx_pid")
            for candidate in {pid, recorded}:
                if candidate and owned(candidate, ops.conf):
                    watched += [candidate, *children(candidate)]
                    if not stop_pid(candidate, ops.conf):
                        problems.append(f"{name}: nginx pid {candidate} does not stop")
            recorded = state["hosts"][name].get("app_pid")
            # The pid file too: an `up` stopped before it noted the pid (as for nginx).
            app_pid = ops.app_pid() if ops.role == "web" else None
            for candidate in {app_pid, recorded}:
                if candidate and owned(candidate, ops.app_marker):
                    watched.append(candidate)
                    if not stop_pid(candidate, ops.app_marker):
                        problems.append(f"{name}: app pid {candidate} does not stop")
        sink = state.get("notify") or {}
        for candidate in {sink.get("pid"), sink_pid(state)}:
            if candidate and owned(candidate, sink["messages"]):
                watched.append(candidate)
                if not stop_pid(candidate, sink["messages"]):
                    problems.append(f"webhook sink pid {candidate} does not stop")
        left = wait_gone(watched, 2.0)
        problems += [f"pid {p} still running" for p in left]
        return problems

    def host_status(self, state: dict[str, Any], host: str) -> dict[str, Any]:
        ops = self.ops(state, host)
        pid = ops.nginx_pid()
        status: dict[str, Any] = {"running": pid is not None, "pid": pid}
        if ops.role == "web":
            app_pid = ops.app_pid()
            status["app_running"] = app_pid is not None
            status["app_pid"] = app_pid
        return status

    def record_deploy(self, state: dict[str, Any], service: str, version: str) -> None:
        from recorder.events import record_deploy

        try:
            record_deploy(state["recorder"]["state_dir"], service, version, source="lab")
        except Exception as exc:  # the store's own errors: say what failed, no traceback
            raise LabError(f"cannot record the deploy event: {exc}") from exc
