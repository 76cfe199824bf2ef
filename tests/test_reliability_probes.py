"""`nginx -t` output variants through the config probe: real nginx on broken configs, and
its parser fuzzed. Every variant gives a verdict with the file and line to fix, or an
`error` when nginx itself cannot be run; nothing crashes, nothing takes long.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.base import Status
from probes.config import Config, parse_errors
from probes.config import probe as config_probe
from recorder.hosts.local import LocalHost

needs_nginx = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")

ROOT = Path(__file__).resolve().parent.parent
GOOD = "events {}\nhttp {\n  server { listen 127.0.0.1:1; location / { return 200; } }\n}\n"

# name -> (nginx.conf text, expected status, a piece of the summary, the line it names)
BROKEN: dict[str, tuple[str, Status, str, int | None]] = {
    "ok": (GOOD, Status.OK, "configuration is ok", None),
    "missing-semicolon": (
        "events {}\nhttp {\n  server { listen 127.0.0.1:1 }\n}\n",
        Status.FAIL,
        "unexpected",
        3,
    ),
    "unknown-directive": (
        "events {}\nhttp {\n  bogus_directive on;\n}\n",
        Status.FAIL,
        'unknown directive "bogus_directive"',
        3,
    ),
    "unbalanced-brace": ("events {}\nhttp {\n", Status.FAIL, "unexpected end of file", 3),
    "missing-include": (
        "events {}\nhttp {\n  include /nonexistent/recorder-test/*.conf;\n"
        "  include /nonexistent/recorder-test/site;\n}\n",
        Status.FAIL,
        "No such file",
        4,
    ),
    "bad-listen": (
        'events {}\nhttp {\n  server { listen "1  x"; }\n}\n',
        Status.FAIL,
        "listen",
        3,
    ),
    "warning-only": (
        "events {}\nhttp {\n  server { listen 127.0.0.1:1; server_name a; }\n"
        "  server { listen 127.0.0.1:1; server_name a; }\n}\n",
        Status.OK,
        "warning",
        None,
    ),
    "non-utf-8": (
        "events {}\nhttp {\n  bogus_\xe9 on;\n}\n",
        Status.FAIL,
        "unknown directive",
        3,
    ),
}


@needs_nginx
@pytest.mark.parametrize("name", sorted(BROKEN))
def test_real_nginx_t_variants(tmp_path: Path, name: str) -> None:
    text, status, piece, line_no = BROKEN[name]
    root = tmp_path / "root"
    (root / "etc" / "nginx").mkdir(parents=True)
    (root / "logs").mkdir()
    (root / "etc" / "nginx" / "nginx.conf").write_bytes(text.encode("latin-1"))
    host = LocalHost("web-01", prefix=str(root))
    obs = config_probe(host, Config(conf="/etc/nginx/nginx.conf"))
    assert obs.status is status, obs.summary
    assert piece in obs.summary, obs.summary
    if status is Status.FAIL:
        assert str(obs.fault) == "config-syntax"
        first = obs.details["errors"][0]
        # Named as the host names it (the lab prefix removed), at the line to fix.
        assert first["file"] in ("/etc/nginx/nginx.conf", None), first
        if line_no is not None and first["file"]:
            assert first["line"] == line_no, first
        assert str(root) not in obs.summary


@needs_nginx
def test_missing_config_file_and_missing_binary(tmp_path: Path) -> None:
    host = LocalHost("web-01", prefix=str(tmp_path))
    missing = config_probe(host, Config(conf="/etc/nginx/none.conf"))
    assert missing.status is Status.FAIL and "No such file" in missing.summary, missing.summary
    no_binary = config_probe(host, Config(nginx=str(tmp_path / "no-nginx")))
    assert no_binary.status is Status.ERROR and "not found" in no_binary.summary


def test_a_long_value_in_nginx_output_is_parsed_in_linear_time() -> None:
    # nginx quotes config values in its messages (`host not found in "1   x" of the
    # "listen" directive`), so whoever writes a config, or a compromised host answering
    # for nginx, chooses this text. Python's `re` holds the GIL while it matches: a slow
    # match stalls the whole daemon, HTTP endpoint included. Run in a subprocess so a
    # quadratic parser fails this test in seconds instead of hanging it.
    spaces = 30_000
    line = (
        '2026/11/23 13:28:49 [emerg] 17301#17301: host not found in "1'
        + " " * spaces
        + 'x" of the "listen" directive in /etc/nginx/nginx.conf:2'
    )
    script = (
        "import sys, time\n"
        "from probes.config import parse_errors\n"
        "text = sys.stdin.read()\n"
        "t = time.perf_counter(); found = parse_errors(text)\n"
        "print(time.perf_counter() - t, found[0]['line'])\n"
    )
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-c", script],
            input=line,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"parsing one {spaces:,}-space line took over 10 s")
    took, line_no = done.stdout.split()
    assert line_no == "2"
    assert float(took) < 0.5, f"parsing one {spaces:,}-space line took {float(took):.1f}s"
    assert time.monotonic() - started < 10


FRAGMENTS = st.sampled_from(
    [
        "nginx: ",
        "2026/11/23 11:53:53 ",
        "[emerg] ",
        "[warn] ",
        "[bogus] ",
        "7376#7376: ",
        "*12 ",
        'unexpected "}"',
        " in ",
        "/etc/nginx/sites-enabled/default",
        ":",
        "12",
        " ",
        "\t",
        "\n",
        "\r\n",
        "é",
        "\x00",
        "configuration file /etc/nginx/nginx.conf test failed",
    ]
)


@settings(max_examples=300, deadline=None, database=None)
@given(parts=st.lists(FRAGMENTS, max_size=80))
def test_any_nginx_stderr_is_parsed(parts: list[str]) -> None:
    started = time.perf_counter()
    found = parse_errors("".join(parts), root="/lab/web-01")
    assert time.perf_counter() - started < 0.5
    for error in found:
        assert error["level"] in ("emerg", "alert", "crit", "error", "warn", "notice", "info")
        assert error["line"] is None or isinstance(error["line"], int)


@pytest.mark.parametrize("probe", ["http", "upstreams"])
def test_out_of_descriptors_is_could_not_look_not_harm(tmp_path: Path, probe: str) -> None:
    """The recorder's own machine out of file descriptors (EMFILE) said `port-closed`, and
    opened a false 100% outage with every site healthy. Run for real in a child process
    whose descriptor limit is used up, against a live server."""
    import textwrap

    code = textwrap.dedent(
        f"""
        import json, resource, socket, threading, http.server, os
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
        port = srv.server_address[1]
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        from probes import http, upstreams
        from recorder.hosts.local import LocalHost
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        held = []
        try:
            while True:
                held.append(open(os.devnull))
        except OSError:
            pass
        if {probe!r} == "http":
            obs = http.probe(LocalHost("web-01"), http.Config(url=f"http://127.0.0.1:{{port}}/"))
        else:
            obs = None
            reason = None
            try:
                upstreams.check_backend("127.0.0.1", port, "tcp", "/", 1.0)
            except Exception as exc:
                reason = type(exc).__name__ + ": " + str(exc)
            print(json.dumps({{"raised": reason}}))
            raise SystemExit(0)
        print(json.dumps({{"status": str(obs.status), "fault": obs.fault, "summary": obs.summary}}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if probe == "http":
        assert result["status"] == "error", result
        assert result["fault"] is None
        assert "Too many open files" in result["summary"], result
    else:
        assert result["raised"].startswith("LocalResourceError"), result


def test_the_daemon_raises_its_descriptor_limit() -> None:
    code = (
        "import resource; from recorder.daemon import raise_fd_limit;"
        "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1];"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard));"
        "print(raise_fd_limit(4096), min(hard, 4096))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    now, expected = map(int, done.stdout.split())
    assert now == expected and now > 256
