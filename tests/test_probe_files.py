"""Details of the file and command probes (sites, config, process, upstreams) on a real
nginx host, and what each does when it cannot look."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from probes import config, error_rate, http, process, sites, upstreams
from probes.base import Fault, Status
from recorder.hosts.local import LocalHost
from tests.conftest import free_port
from tests.nginx_fixture import NginxHost, nginx  # noqa: F401 - the fixture


def test_sites_plain_file_is_a_warning(nginx: NginxHost) -> None:  # noqa: F811
    nginx.write("/etc/nginx/sites-enabled/static", "server { listen 127.0.0.1:1; }\n")
    obs = sites.probe(nginx.host(), sites.Config(expect_enabled=["default", "static"]))
    assert obs.status == Status.OK
    assert obs.details["warnings"] == [
        "/etc/nginx/sites-enabled/static is a plain file, not a link to sites-available"
    ]
    assert obs.details["links"] == {"default": "/etc/nginx/sites-available/default"}


def test_sites_link_under_another_name_counts(nginx: NginxHost) -> None:  # noqa: F811
    os.unlink(nginx.real("/etc/nginx/sites-enabled/default"))
    os.symlink(
        nginx.real("/etc/nginx/sites-available/default"),  # absolute, as ln -s usually makes
        nginx.real("/etc/nginx/sites-enabled/000-default"),
    )
    obs = sites.probe(nginx.host(), sites.Config(expect_enabled=["default"]))
    assert obs.status == Status.OK, obs.summary


def test_sites_missing_and_not_available(nginx: NginxHost) -> None:  # noqa: F811
    obs = sites.probe(nginx.host(), sites.Config(expect_enabled=["default", "shop"]))
    assert obs.fault == Fault.MISSING_SYMLINK
    assert obs.summary == (
        "sites-available/shop is not linked in sites-enabled (shop not in sites-available either)"
    )
    assert obs.details["missing"] == ["shop"]


def test_sites_nothing_expected_only_dangling_fails(nginx: NginxHost) -> None:  # noqa: F811
    assert sites.probe(nginx.host(), sites.Config()).status == Status.OK
    os.symlink("/nowhere/site", nginx.real("/etc/nginx/sites-enabled/ghost"))
    obs = sites.probe(nginx.host(), sites.Config())
    assert obs.fault == Fault.DANGLING_SYMLINK
    assert obs.details["dangling"] == ["ghost -> /nowhere/site"]


def test_sites_without_the_directory_is_an_error(tmp_path: Path) -> None:
    obs = sites.probe(LocalHost("web-01", prefix=str(tmp_path)), sites.Config())
    assert obs.status == Status.ERROR
    assert "/etc/nginx/sites-enabled does not exist" in obs.summary


def test_config_missing_binary_is_an_error(nginx: NginxHost) -> None:  # noqa: F811
    obs = config.probe(nginx.host(), config.Config(nginx="/no/such/nginx"))
    assert obs.status == Status.ERROR
    assert "command not found" in obs.summary


def test_config_error_names_host_paths(nginx: NginxHost) -> None:  # noqa: F811
    os.symlink("../sites-available/nope", nginx.real("/etc/nginx/sites-enabled/nope"))
    obs = config.probe(nginx.host(), config.Config())
    # nginx cannot open the dangling include: the message and file are the host's paths.
    assert obs.fault == Fault.CONFIG_SYNTAX
    (err,) = obs.details["errors"]
    assert err["file"] == "/etc/nginx/nginx.conf"
    assert '"/etc/nginx/sites-enabled/nope"' in err["message"]
    assert str(nginx.root) not in obs.summary


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        (
            'nginx: [emerg] unexpected "}" in /lab/web/etc/nginx/sites-enabled/default:12\n'
            "nginx: configuration file /lab/web/etc/nginx/nginx.conf test failed\n",
            [("emerg", 'unexpected "}"', "/etc/nginx/sites-enabled/default", 12)],
        ),
        (
            '2026/11/23 11:53:53 [emerg] 7376#7376: unknown directive "proxy_pas" in '
            "/lab/web/etc/nginx/sites-enabled/x:3\n",
            [("emerg", 'unknown directive "proxy_pas"', "/etc/nginx/sites-enabled/x", 3)],
        ),
        (
            'nginx: [warn] conflicting server name "a" on 0.0.0.0:80, ignored\n',
            [("warn", 'conflicting server name "a" on 0.0.0.0:80, ignored', None, None)],
        ),
    ],
)
def test_config_parse_errors(stderr: str, expected: list[tuple[object, ...]]) -> None:
    found = config.parse_errors(stderr, "/lab/web")
    assert [(e["level"], e["message"], e["file"], e["line"]) for e in found] == expected


def test_config_parse_errors_is_linear_in_a_long_quoted_value() -> None:
    line = '2026/11/23 13:28:49 [emerg] 1#1: host not found in "1' + " " * 30000 + 'x" in /c:2'
    started = time.perf_counter()
    (err,) = config.parse_errors(line)
    assert time.perf_counter() - started < 0.5
    assert (err["file"], err["line"]) == ("/c", 2)


def test_process_bad_pid_file(nginx: NginxHost) -> None:  # noqa: F811
    nginx.stop()
    nginx.write("/run/nginx.pid", "not-a-pid\n")
    obs = process.probe(nginx.host(), process.Config(pid_file="/run/nginx.pid"))
    assert obs.fault == Fault.NGINX_DOWN
    assert "holds no pid" in obs.summary


def test_process_empty_pid_file_reads_as_no_pid(nginx: NginxHost) -> None:  # noqa: F811
    """`nginx -t` run while nginx is stopped leaves an empty pid file: the same fact, in
    the same words, as no pid file (a draft once said either, by which check ran first)."""
    nginx.stop()
    missing = process.probe(nginx.host(), process.Config(pid_file="/run/nginx.pid"))
    nginx.write("/run/nginx.pid", "")
    empty = process.probe(nginx.host(), process.Config(pid_file="/run/nginx.pid"))
    assert empty.fault == missing.fault == Fault.NGINX_DOWN
    assert empty.summary == missing.summary == "nginx is not running: no pid in /run/nginx.pid"


def test_process_details(nginx: NginxHost) -> None:  # noqa: F811
    obs = process.probe(nginx.host(), process.Config(pid_file="/run/nginx.pid"))
    assert obs.status == Status.OK
    assert obs.details["pid"] == nginx.proc.pid  # type: ignore[union-attr]
    assert obs.details["cmdline"].startswith("nginx: master process")


def test_upstreams_tcp_backup_and_down(nginx: NginxHost) -> None:  # noqa: F811
    dead = free_port()
    nginx.write(
        "/etc/nginx/sites-available/lb",
        "upstream app {\n"
        f"    server 127.0.0.1:{nginx.port} weight=2;\n"
        f"    server 127.0.0.1:{dead} backup;\n"
        f"    server 127.0.0.1:{free_port()} down;\n"
        "    server unix:/tmp/nope.sock;\n"
        "}\n",
    )
    os.symlink("../sites-available/lb", nginx.real("/etc/nginx/sites-enabled/lb"))
    obs = upstreams.probe(nginx.host(), upstreams.Config(check="tcp", timeout="1s"))
    assert obs.status == Status.OK, obs.summary
    assert obs.summary.endswith(f"backup 127.0.0.1:{dead} does not")
    (app,) = obs.details["upstreams"]
    assert [s["alive"] for s in app["servers"]] == [True, False, None, None]
    assert app["where"] == "/etc/nginx/sites-enabled/lb:1"


def test_upstreams_weight_share(nginx: NginxHost) -> None:  # noqa: F811
    nginx.write(
        "/etc/nginx/sites-available/lb",
        "upstream app {\n"
        f"    server 127.0.0.1:{nginx.port} weight=3;\n"
        f"    server 127.0.0.1:{free_port()};\n"
        "}\n",
    )
    os.symlink("../sites-available/lb", nginx.real("/etc/nginx/sites-enabled/lb"))
    obs = upstreams.probe(nginx.host(), upstreams.Config(timeout="1s"))
    assert obs.fault == Fault.UPSTREAM_DOWN
    assert obs.details["dead_weight_share"] == 0.25
    assert obs.facts.dead_weight == 0.25  # what the engine reads
    assert "(25% of weight)" in obs.summary


def test_upstreams_none_configured(nginx: NginxHost) -> None:  # noqa: F811
    obs = upstreams.probe(nginx.host(), upstreams.Config())
    assert obs.status == Status.OK
    assert obs.summary == "no upstream blocks in the configuration"


def test_upstreams_broken_config_is_the_config_error(nginx: NginxHost) -> None:  # noqa: F811
    # The host answered and nginx refused its config: that is the config error (evidence
    # for the incident it opens), not a host the recorder cannot reach.
    nginx.write("/etc/nginx/sites-available/default", "server {\n")
    obs = upstreams.probe(nginx.host(), upstreams.Config())
    assert obs.status == Status.FAIL and obs.fault == Fault.CONFIG_SYNTAX
    assert "nginx -T refuses the configuration" in obs.summary
    assert "unexpected end of file" in obs.summary
    assert obs.details["errors"][0]["file"] == "/etc/nginx/sites-enabled/default"


def test_failing_http_and_error_rate_name_the_site_file(nginx: NginxHost) -> None:  # noqa: F811
    """What a task's {file} becomes: the file of the server block behind the URL's port,
    and of the server blocks writing the log (here inherited from the http block)."""
    host = nginx.host()
    url = f"http://127.0.0.1:{nginx.port}/broken"
    failing = http.probe(host, http.Config(url=url, headers={"User-Agent": "client"}))
    assert failing.fault == Fault.HTTP_5XX
    assert failing.facts.subjects.file == ("/etc/nginx/sites-enabled/default",)
    assert failing.facts.subjects.url == url
    for _ in range(20):  # a client's 502s in the log
        http.probe(host, http.Config(url=url, headers={"User-Agent": "client"}))
    time.sleep(0.2)  # nginx writes the last line just after its answer
    rate = error_rate.probe(host, error_rate.Config(window=60))
    assert rate.fault == Fault.HTTP_5XX
    assert rate.facts.subjects.file == ("/etc/nginx/sites-enabled/default",)
    # Another log, or a passing probe, names nothing (and runs no nginx -T).
    assert http.probe(host, http.Config(url=url[: -len("broken")])).facts.subjects.file == ()
    other = error_rate.Config(log="/var/log/nginx/other.log")
    Path(nginx.real("/var/log/nginx/other.log")).write_bytes(
        Path(nginx.real("/var/log/nginx/access.log")).read_bytes()
    )
    assert error_rate.probe(host, other).facts.subjects.file == ()
