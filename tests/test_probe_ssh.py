"""The file-based probes over the real sshd: the same verdicts as on the local host. Over
SSH there is no prefix, so the probes are given the nginx host's real paths."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from probes import config, error_rate, process, sites, upstreams
from probes.base import Fault, Status
from recorder.hosts.ssh import SSHHost
from tests.conftest import SSHServer, free_port
from tests.nginx_fixture import NGINX, NginxHost, nginx  # noqa: F401 - the fixture
from tests.test_probe_cases import get


@pytest.fixture
def ssh(sshd: SSHServer) -> Iterator[SSHHost]:
    host = SSHHost("web-ssh", sshd.config())
    try:
        yield host
    finally:
        host.close()


def test_sites_over_ssh(nginx: NginxHost, ssh: SSHHost) -> None:  # noqa: F811
    cfg = sites.Config(
        expect_enabled=["default"],
        available_dir=nginx.real("/etc/nginx/sites-available"),
        enabled_dir=nginx.real("/etc/nginx/sites-enabled"),
    )
    assert sites.probe(ssh, cfg).status == Status.OK
    os.rename(nginx.real("/etc/nginx/sites-available/default"), nginx.real("/etc/nginx/x"))
    obs = sites.probe(ssh, cfg)
    assert obs.fault == Fault.DANGLING_SYMLINK
    assert "default -> ../sites-available/default" in obs.summary
    os.unlink(nginx.real("/etc/nginx/sites-enabled/default"))
    assert sites.probe(ssh, cfg).fault == Fault.MISSING_SYMLINK


def test_config_over_ssh(nginx: NginxHost, ssh: SSHHost) -> None:  # noqa: F811
    cfg = config.Config(nginx=NGINX, conf=nginx.real("/etc/nginx/nginx.conf"))
    assert config.probe(ssh, cfg).status == Status.OK
    nginx.write("/etc/nginx/sites-available/default", "server {\n")
    obs = config.probe(ssh, cfg)
    assert obs.fault == Fault.CONFIG_SYNTAX
    assert nginx.real("/etc/nginx/sites-enabled/default") in obs.summary


def test_process_over_ssh(nginx: NginxHost, ssh: SSHHost) -> None:  # noqa: F811
    cfg = process.Config(pid_file=nginx.real("/run/nginx.pid"))
    assert process.probe(ssh, cfg).status == Status.OK
    nginx.stop()
    assert process.probe(ssh, cfg).fault == Fault.NGINX_DOWN


def test_error_rate_over_ssh(nginx: NginxHost, ssh: SSHHost) -> None:  # noqa: F811
    memory = error_rate.LogState()
    get(nginx, "/", 30)
    get(nginx, "/broken", 10)
    cfg = error_rate.Config(log=nginx.real("/var/log/nginx/access.log"))
    obs = error_rate.probe(ssh, cfg, memory)
    assert obs.fault == Fault.HTTP_5XX, obs.summary
    assert obs.details["requests"] == 40 and obs.details["lines_total"] == 40
    get(nginx, "/", 200)
    obs = error_rate.probe(ssh, cfg, memory)
    assert obs.status == Status.OK, obs.summary
    assert obs.details["lines_total"] == 240


def test_upstreams_over_ssh(nginx: NginxHost, ssh: SSHHost) -> None:  # noqa: F811
    nginx.write(
        "/etc/nginx/sites-available/lb",
        f"upstream app {{ server 127.0.0.1:{nginx.port}; server 127.0.0.1:{free_port()}; }}\n",
    )
    os.symlink("../sites-available/lb", nginx.real("/etc/nginx/sites-enabled/lb"))
    cfg = upstreams.Config(nginx=NGINX, conf=nginx.real("/etc/nginx/nginx.conf"), timeout="1s")
    obs = upstreams.probe(ssh, cfg)
    assert obs.fault == Fault.UPSTREAM_DOWN
    assert "(50% of weight)" in obs.summary
    assert obs.details["upstreams"][0]["where"] == nginx.real("/etc/nginx/sites-enabled/lb") + ":1"


def test_unreachable_host_is_an_error(nginx: NginxHost, sshd: SSHServer) -> None:  # noqa: F811
    host = SSHHost("gone", sshd.config(port=free_port(), connect_timeout=1.0))
    try:
        for name, probe, cfg in [
            ("sites", sites.probe, sites.Config()),
            ("config", config.probe, config.Config()),
            ("process", process.probe, process.Config()),
            ("error_rate", error_rate.probe, error_rate.Config()),
            ("upstreams", upstreams.probe, upstreams.Config()),
        ]:
            obs = probe(host, cfg)  # type: ignore[operator]
            assert obs.status == Status.ERROR, (name, obs.summary)
            assert obs.fault is None
    finally:
        host.close()
