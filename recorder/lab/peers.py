"""The Prometheus family around the lab: Debian's prometheus, prometheus-alertmanager and
prometheus-blackbox-exporter, each started as our child on a loopback port with its own
data dir and stopped by its pid.

Shared by tests/test_prometheus_e2e.py (the recorder behind Prometheus, end to end) and
bench/peers.py (the same stack as the peer whose detection time is measured beside the
recorder's), so both run the programs the same way. The binaries come from
scripts/test-setup.sh; a missing one is an error, never a skip.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests
import yaml

PROMETHEUS = "prometheus"
ALERTMANAGER = "prometheus-alertmanager"
BLACKBOX = "prometheus-blackbox-exporter"


class PeerError(Exception):
    """A program of the stack is missing, exited or did not get ready."""


def binary(name: str) -> str:
    """The program's path; the Debian package has the program's name."""
    path = shutil.which(name)
    if path is None:
        raise PeerError(f"{name} not installed: run scripts/test-setup.sh (Debian package {name})")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One of the Prometheus family as a process we started; stderr kept in a file."""

    def __init__(self, name: str, argv: list[str], port: int, directory: Path) -> None:
        self.name, self.log = name, directory / f"{name}.log"
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL
            )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def ready(self, path: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PeerError(
                    f"{self.name} exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            try:
                if requests.get(self.base + path, timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise PeerError(f"{self.name} did not answer {path} within {timeout:g}s")

    def get(self, path: str, **params: str) -> Any:
        response = requests.get(self.base + path, params=params, timeout=5)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        """TERM by pid, then KILL if it lingers."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def start_blackbox(
    directory: Path, timeout: str | None = "1s", name: str = "blackbox_exporter"
) -> Server:
    """blackbox_exporter with one module, http_2xx (any 2xx within `timeout`; None: its
    default, the scrape's timeout less half a second)."""
    module: dict[str, Any] = {"prober": "http"}
    if timeout is not None:
        module["timeout"] = timeout
    return _start(directory, name, BLACKBOX, {"modules": {"http_2xx": module}}, [])


def _start(
    directory: Path, name: str, program: str, config: dict[str, Any], flags: Sequence[str]
) -> Server:
    """program --config.file=(config written to directory/name.yml) --web.listen-address=
    (a free loopback port) *flags."""
    config_file = directory / f"{name}.yml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    argv = [
        binary(program),
        f"--config.file={config_file}",
        f"--web.listen-address=127.0.0.1:{port}",
        *flags,
    ]
    return Server(name, argv, port, directory)


def start_alertmanager(
    directory: Path, name: str, config: dict[str, Any], extra: Sequence[str] = ()
) -> Server:
    """An Alertmanager with `config`, its storage under directory/name. Without cluster
    arguments in `extra` it runs alone (no gossip port to collide with other runs)."""
    storage = directory / name
    storage.mkdir()
    flags = [f"--storage.path={storage}", *(extra or ["--cluster.listen-address="])]
    return _start(directory, name, ALERTMANAGER, config, flags)


def pair_flags(gossip: Sequence[int], i: int) -> list[str]:
    """Cluster flags for Alertmanager `i` of a pair gossiping on loopback ports `gossip`.
    A peer timeout of 1 ms and gossip every 2 s make both deliver every notification (the
    second does not wait for the first's log entry): an HA pair's at-least-once delivery
    at its worst, which receivers must absorb."""
    return [
        f"--cluster.listen-address=127.0.0.1:{gossip[i]}",
        f"--cluster.advertise-address=127.0.0.1:{gossip[i]}",
        f"--cluster.peer=127.0.0.1:{gossip[1 - i]}",
        "--cluster.peer-timeout=1ms",
        "--cluster.gossip-interval=2s",
        "--cluster.settle-timeout=1s",
    ]


def start_prometheus(
    directory: Path, name: str, config: dict[str, Any], extra: Sequence[str] = ()
) -> Server:
    flags = [f"--storage.tsdb.path={directory / (name + '-data')}", *extra]
    return _start(directory, name, PROMETHEUS, config, flags)


def site_down_rules(for_: str = "0s") -> dict[str, Any]:
    """The blackbox rule of the "recorder behind Prometheus" setup: the site does not
    answer. `instance` names the recorder's host, as the shipped rules do."""
    rule = {
        "alert": "SiteDown",
        "expr": 'probe_success{job="blackbox"} == 0',
        "for": for_,
        "labels": {"severity": "page", "component": "nginx", "instance": "{{ $labels.host }}"},
        "annotations": {
            "summary": "{{ $labels.url }} does not answer blackbox_exporter",
            "description": "probe_success is 0.",
        },
    }
    return {"groups": [{"name": "blackbox", "rules": [rule]}]}


def blackbox_job(blackbox: Server, url: str, host: str) -> dict[str, Any]:
    """The scrape job that has blackbox_exporter probe `url` (labelled with its host)."""
    return {
        "job_name": "blackbox",
        "metrics_path": "/probe",
        "params": {"module": ["http_2xx"]},
        "static_configs": [{"targets": [url], "labels": {"host": host, "url": url}}],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": blackbox.address},
        ],
    }


def prometheus_config(
    interval: str,
    rule_files: Sequence[Path],
    alertmanagers: Sequence[Server],
    jobs: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """Scrape and evaluation every `interval`, alerts to every Alertmanager."""
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(f) for f in rule_files],
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [a.address for a in alertmanagers]}]}]
        },
        "scrape_configs": list(jobs),
    }
