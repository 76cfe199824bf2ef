"""A fleet of HTTP targets on one machine, and a recorder config watching it with the lab.

One real nginx process (ours, started in the foreground with `daemon off`, stopped by its
pid) listens on N loopback ports, one `server { listen 127.0.0.1:PORT; return 200; }`
block each, and logs every request, so the benchmark can count the probes that really
arrived. The recorder config is the lab's own (`Lab.up()` writes it: three nginx hosts
with http, sites, config, process, error_rate and upstreams probes), with every interval
set to 10 s and one host per target added, each with an http check.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import benchlib as bl
import yaml


class TargetNginx:
    """nginx answering 200 on `count` loopback ports."""

    def __init__(self, directory: Path, count: int) -> None:
        self.dir = directory
        self.count = count
        self.ports: list[int] = []
        self.access_log = directory / "access.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def write_config(self) -> Path:
        for sub in ("logs", "tmp"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        servers = "\n".join(
            f'    server {{ listen 127.0.0.1:{port}; return 200 "ok\\n"; }}' for port in self.ports
        )
        user = "user root;\n" if os.geteuid() == 0 else ""
        tmp = self.dir / "tmp"
        conf = self.dir / "nginx.conf"
        conf.write_text(
            f"""# {self.count} benchmark targets: written by bench/fleet.py
{user}daemon off;
worker_processes 1;
worker_rlimit_nofile {self.count * 2 + 1024};
pid {self.dir / "nginx.pid"};
error_log {self.dir / "logs" / "error.log"} warn;

events {{
    worker_connections {self.count + 1024};
}}

http {{
    access_log {self.access_log};
    keepalive_timeout 5s;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
{servers}
}}
""",
            encoding="utf-8",
        )
        return conf

    def start(self, timeout: float = 20.0, attempts: int = 3) -> TargetNginx:
        """Start on freshly chosen ports; when another process takes one of them between
        the choice and nginx's bind (other tests, the lab), choose again."""
        for attempt in range(attempts):
            self.ports = bl.free_ports(self.count)
            try:
                return self._start(timeout)
            except bl.BenchError as exc:
                if "Address already in use" not in str(exc) or attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> TargetNginx:
        conf = self.write_config()
        argv = [
            "nginx",
            "-p",
            f"{self.dir}/",
            "-c",
            str(conf),
            "-e",
            str(self.dir / "logs/error.log"),
        ]
        with open(self.dir / "nginx.stderr", "ab") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        first, last = self.ports[0], self.ports[-1]
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = (self.dir / "nginx.stderr").read_text(errors="replace").strip()
                (self.dir / "nginx.stderr").unlink()
                lines = err.splitlines()
                raise bl.BenchError(
                    f"target nginx exited with {self.proc.returncode}: "
                    + " | ".join(lines[:2] + lines[-1:])
                )
            a, _ = bl.http_get(f"http://127.0.0.1:{first}/", timeout=1.0)
            b, _ = bl.http_get(f"http://127.0.0.1:{last}/", timeout=1.0)
            if a == 200 and b == 200:
                return self
            time.sleep(0.05)
        raise bl.BenchError(f"target nginx does not answer on 127.0.0.1:{first} and :{last}")

    def requests_logged(self) -> int:
        try:
            with open(self.access_log, "rb") as f:
                return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        except FileNotFoundError:
            return 0

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # the master stops its workers, then exits
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def fleet_config(
    lab_config: Path,
    ports: list[int],
    *,
    out: Path,
    state_dir: Path,
    listen: str,
    interval: str = "10s",
    token_file: Path | None = None,
) -> Path:
    """The lab's recorder config plus one host with an http check per target port."""
    data: dict[str, Any] = yaml.safe_load(lab_config.read_text(encoding="utf-8"))
    data["state_dir"] = str(state_dir)
    data["listen"] = listen
    defaults = dict(data.get("defaults") or {})
    defaults["interval"] = interval
    data["defaults"] = defaults
    names = [f"target-{i:04d}" for i in range(1, len(ports) + 1)]
    hosts = dict(data["hosts"])
    for name in names:
        hosts[name] = {"local": {"prefix": "/"}, "role": "web"}
    data["hosts"] = hosts
    services = dict(data.get("services") or {})
    services["fleet"] = {"hosts": names}
    data["services"] = services
    checks = list(data.get("checks") or [])
    for name, port in zip(names, ports, strict=True):
        checks.append({"hosts": [name], "probes": {"http": {"url": f"http://127.0.0.1:{port}/"}}})
    data["checks"] = checks
    if token_file is not None:
        data["alertmanager"] = {**(data.get("alertmanager") or {}), "token_file": str(token_file)}
    out.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return out


def probe_successes(metrics_text: str, probe: str = "http") -> tuple[int, int]:
    """(series, series at 1) of recorder_probe_success for one probe in a /metrics body."""
    total = ok = 0
    for line in metrics_text.splitlines():
        if line.startswith("recorder_probe_success{") and f'probe="{probe}"' in line:
            total += 1
            if line.rsplit(" ", 1)[-1].strip() in ("1", "1.0"):
                ok += 1
    return total, ok
