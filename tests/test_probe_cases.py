"""Every probe against a real nginx: cases that must fire and cases that must not.

Like gixy's case.conf / case_fp.conf pairs: each probe needs at least one of each, and
`test_every_probe_has_both_kinds_of_case` fails when a probe in the registry lacks either.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from probes.base import Fault, Host, Status
from probes.registry import CONFIGS, PROBES
from tests.conftest import free_port
from tests.nginx_fixture import NginxHost, nginx  # noqa: F401 - the fixture

Setup = Callable[[NginxHost], tuple[Host, dict[str, Any]]]


@dataclass(frozen=True)
class Case:
    probe: str
    name: str
    setup: Setup  # breaks (or not) the nginx host; returns the host and the probe config
    fault: Fault | None  # None: the probe must not fire
    summary: str = ""  # a fragment the summary must hold

    @property
    def fires(self) -> bool:
        return self.fault is not None


def get(n: NginxHost, path: str, times: int = 1) -> None:
    """Send requests, then wait until nginx has logged them: it writes the log line after
    the response, so a fast client can otherwise read the log one line short."""
    log = Path(n.real("/var/log/nginx/access.log"))
    before = log.read_bytes().count(b"\n") if log.exists() else 0
    with requests.Session() as s:
        s.trust_env = False
        for _ in range(times):
            s.get(f"http://127.0.0.1:{n.port}{path}", timeout=5)
    deadline = time.monotonic() + 5
    while log.read_bytes().count(b"\n") < before + times:
        assert time.monotonic() < deadline, "nginx did not log the requests"
        time.sleep(0.01)


def _http(path: str) -> Setup:
    def setup(n: NginxHost) -> tuple[Host, dict[str, Any]]:
        return n.host(), {"url": f"http://{{address}}:{n.port}{path}"}

    return setup


def _http_down(n: NginxHost) -> tuple[Host, dict[str, Any]]:
    n.stop()
    return n.host(), {"url": f"http://{{address}}:{n.port}/"}


def _sites(n: NginxHost) -> tuple[Host, dict[str, Any]]:
    return n.host(), {"expect_enabled": ["default"]}


def _sites_unlinked(n: NginxHost) -> tuple[Host, dict[str, Any]]:
    os.unlink(n.real("/etc/nginx/sites-enabled/default"))
    return n.host(), {"expect_enabled": ["default"]}


def _sites_dangling(n: NginxHost) -> tuple[Host, dict[str, Any]]:
    os.rename(n.real("/etc/nginx/sites-available/default"), n.real("/etc/nginx/default.moved"))
    return n.host(), {"expect_enabled": ["default"]}


def _config(n: NginxHost) -> tuple[Host, dict[str, Any]]:
    return n.host(), {}


def _config_broken(n: NginxHost) -> tuple[Host, dict[str, Any]]:
    site = n.real("/etc/nginx/sites-available/default")
    with open(site, encoding="utf-8") as f:
        text = f.read()
    with open(site, "w", encoding="utf-8") as f:
        f.write(text.replace('return 200 "hello\\n";', 'return 200 "hello\\n"'))
    return n.host(), {}


def _process(n: NginxHost) -> tuple[Host, dict[str, Any]]:
    return n.host(), {"pid_file": "/run/nginx.pid"}


def _process_stopped(n: NginxHost) -> tuple[Host, dict[str, Any]]:
    n.stop()
    return n.host(), {"pid_file": "/run/nginx.pid"}


def _process_stale(n: NginxHost) -> tuple[Host, dict[str, Any]]:
    n.stop()
    # A pid that exists but is not nginx: this test process (pid reuse after a crash).
    n.write("/run/nginx.pid", f"{os.getpid()}\n")
    return n.host(), {"pid_file": "/run/nginx.pid"}


def _traffic(path_5xx_share: float) -> Setup:
    def setup(n: NginxHost) -> tuple[Host, dict[str, Any]]:
        broken = int(40 * path_5xx_share)
        get(n, "/", 40 - broken)
        get(n, "/broken", broken)
        return n.host(), {"log": "/var/log/nginx/access.log", "window": "60s"}

    return setup


def _upstream(dead: bool) -> Setup:
    def setup(n: NginxHost) -> tuple[Host, dict[str, Any]]:
        backends = [f"server 127.0.0.1:{n.port} weight=3; # web-01"]
        backends.append(f"server 127.0.0.1:{free_port()};  # web-02" if dead else "")
        n.write(
            "/etc/nginx/sites-available/lb",
            "upstream app {\n    " + "\n    ".join(backends) + "\n}\n",
        )
        os.symlink("../sites-available/lb", n.real("/etc/nginx/sites-enabled/lb"))
        return n.host(), {"timeout": "1s"}

    return setup


CASES = [
    Case("http", "answers 200", _http("/"), None, "answered 200"),
    Case("http", "nothing listens", _http_down, Fault.PORT_CLOSED, "connection refused"),
    Case("http", "answers 502", _http("/broken"), Fault.HTTP_5XX, "answered 502"),
    Case("http", "answers 404", _http("/missing"), Fault.UNEXPECTED_STATUS, "answered 404"),
    Case("sites", "default linked", _sites, None, "default linked"),
    Case(
        "sites",
        "link removed",
        _sites_unlinked,
        Fault.MISSING_SYMLINK,
        "sites-available/default is not linked in sites-enabled",
    ),
    Case(
        "sites",
        "target moved",
        _sites_dangling,
        Fault.DANGLING_SYMLINK,
        "default -> ../sites-available/default",
    ),
    Case("config", "nginx -t passes", _config, None, "configuration is ok"),
    Case(
        "config",
        "missing semicolon",
        _config_broken,
        Fault.CONFIG_SYNTAX,
        'unexpected "}" in /etc/nginx/sites-enabled/default:3',
    ),
    Case("process", "master running", _process, None, "nginx master running"),
    Case("process", "stopped", _process_stopped, Fault.NGINX_DOWN, "no pid in"),
    Case("process", "stale pid", _process_stale, Fault.NGINX_DOWN, "is not an nginx master"),
    Case("error_rate", "all 200", _traffic(0.0), None, "0.0% of 40 requests were 5xx"),
    Case("error_rate", "a quarter 502", _traffic(0.25), Fault.HTTP_5XX, "25.0% of 40 requests"),
    Case("upstreams", "backend answers", _upstream(dead=False), None, "answer"),
    Case(
        "upstreams",
        "backend dead",
        _upstream(dead=True),
        Fault.UPSTREAM_DOWN,
        "upstream app: web-02 127.0.0.1:",
    ),
]


def test_every_probe_has_both_kinds_of_case() -> None:
    for name in PROBES:
        kinds = {c.fires for c in CASES if c.probe == name}
        assert kinds == {True, False}, f"probe {name!r} needs a firing and a quiet case"
    assert {c.probe for c in CASES} <= set(PROBES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.probe}-{c.name.replace(' ', '-')}")
def test_case(case: Case, nginx: NginxHost) -> None:  # noqa: F811 - fixture
    host, raw = case.setup(nginx)
    config = CONFIGS[case.probe].model_validate(raw)
    obs = PROBES[case.probe](host, config)
    assert obs.probe == case.probe
    assert obs.host == host.name
    assert obs.duration > 0
    if case.fires:
        assert obs.status == Status.FAIL, obs.summary
        assert obs.fault == case.fault, obs.summary
    else:
        assert obs.status == Status.OK, obs.summary
        assert obs.fault is None
    assert case.summary in obs.summary, obs.summary
    assert "\n" not in obs.summary
    json.dumps(obs.to_json())  # details are JSON-serialisable
