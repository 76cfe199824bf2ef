"""A real nginx for probe tests, laid out like a Debian host under a temporary root.

    ROOT/etc/nginx/nginx.conf                 (includes ROOT/etc/nginx/sites-enabled/*)
    ROOT/etc/nginx/sites-available/default    (one server on a free loopback port)
    ROOT/etc/nginx/sites-enabled/default -> ../sites-available/default
    ROOT/var/log/nginx/access.log             (combined format)
    ROOT/run/nginx.pid

A `LocalHost(name, prefix=ROOT)` sees it as `/etc/nginx/...`, like the lab. nginx runs in
the foreground as our child (`daemon off`), so the fixture stops exactly the process it
started, by pid.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from recorder.hosts.local import LocalHost
from tests.conftest import free_port, stop_process_tree, wait_for_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

DEFAULT_SITE = """\
server {{
    listen 127.0.0.1:{port};
    location / {{ return 200 "hello\\n"; }}
    location /broken {{ return 502; }}
    location /missing {{ return 404; }}
}}
"""


class NginxHost:
    """One nginx under `root`; paths are given as the host names them (`/etc/nginx/...`)."""

    def __init__(self, root: Path, name: str = "web-01") -> None:
        self.root = root
        self.name = name
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        for d in (
            "etc/nginx/sites-available",
            "etc/nginx/sites-enabled",
            "var/log/nginx",
            "var/lib/nginx",
            "run",
        ):
            (root / d).mkdir(parents=True, exist_ok=True)
        self.write("/etc/nginx/nginx.conf", self.main_conf())
        self.write("/etc/nginx/sites-available/default", DEFAULT_SITE.format(port=self.port))
        os.symlink("../sites-available/default", self.real("/etc/nginx/sites-enabled/default"))

    def real(self, path: str) -> str:
        return f"{self.root}{path}"

    def write(self, path: str, text: str) -> None:
        Path(self.real(path)).write_text(text)

    def main_conf(self) -> str:
        p = self.real
        user = "user root;\n" if os.geteuid() == 0 else ""
        return f"""\
{user}worker_processes 1;
pid {p("/run/nginx.pid")};
error_log {p("/var/log/nginx/error.log")};
events {{ worker_connections 64; }}
http {{
    access_log {p("/var/log/nginx/access.log")} combined;
    client_body_temp_path {p("/var/lib/nginx/body")};
    proxy_temp_path {p("/var/lib/nginx/proxy")};
    fastcgi_temp_path {p("/var/lib/nginx/fastcgi")};
    uwsgi_temp_path {p("/var/lib/nginx/uwsgi")};
    scgi_temp_path {p("/var/lib/nginx/scgi")};
    include {p("/etc/nginx/sites-enabled")}/*;
}}
"""

    def host(self) -> LocalHost:
        return LocalHost(self.name, prefix=str(self.root))

    def start(self) -> None:
        log = self.root / "nginx.out"
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    NGINX,
                    "-p",
                    f"{self.root}/",
                    "-c",
                    self.real("/etc/nginx/nginx.conf"),
                    "-g",
                    "daemon off;",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        wait_for_port(self.port, self.proc, log, timeout=10)
        # The master writes its pid file right after it starts listening.
        pid_file = Path(self.real("/run/nginx.pid"))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if pid_file.exists() and pid_file.read_text().strip():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        raise RuntimeError(f"nginx wrote no pid file: {log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_tree(self.proc)
            self.proc = None


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[NginxHost]:
    """A running nginx with the Debian layout under tmp_path/root."""
    if not os.path.exists(NGINX):
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    host = NginxHost(tmp_path / "root")
    host.start()
    try:
        yield host
    finally:
        host.stop()
