"""Process probe: is the nginx master process alive?

The pid file says which process should be the master; /proc/PID/cmdline says whether that
process exists and is an nginx master (nginx titles it "nginx: master process ..."). A pid
file left behind by a killed master, or a pid since reused by another program, is a
stale pid: nginx is down all the same.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from probes.base import (
    Fault,
    Host,
    HostUnreachable,
    Observation,
    Status,
    error_observation,
    measured,
)

NAME = "process"


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pid_file: str = "/run/nginx.pid"


def is_nginx_master(cmdline: str) -> bool:
    # The kernel separates arguments with NULs; nginx's title may pad with NULs or spaces.
    title = cmdline.replace("\0", " ")
    return "nginx" in title and "master" in title


_NO_PID = "nginx is not running: no pid in {}"


def _fail(host: Host, summary: str, details: dict[str, Any]) -> Observation:
    return Observation(
        host=host.name,
        probe=NAME,
        status=Status.FAIL,
        fault=Fault.NGINX_DOWN,
        summary=summary,
        details=details,
    )


def _check(host: Host, config: Config) -> Observation:
    details: dict[str, Any] = {"pid_file": config.pid_file}
    try:
        text = host.read_text(config.pid_file, limit=64)
    except FileNotFoundError:
        details["reason"] = "no-pid-file"
        return _fail(host, _NO_PID.format(config.pid_file), details)
    except (HostUnreachable, OSError) as exc:
        return error_observation(host, NAME, exc)
    pid_text = text.strip()
    if not pid_text:
        # `nginx -t` / `nginx -T` (the config probe's, or another check's lookup of the
        # file that serves it) leaves an empty pid file when no nginx runs: the same fact
        # as no file, told in the same words so a draft does not depend on which check
        # ran first.
        details["reason"] = "empty-pid-file"
        return _fail(host, _NO_PID.format(config.pid_file), details)
    if not pid_text.isdigit() or int(pid_text) <= 0:
        details["reason"] = "bad-pid-file"
        details["content"] = pid_text[:32]
        return _fail(host, f"nginx is not running: {config.pid_file} holds no pid", details)
    pid = int(pid_text)
    details["pid"] = pid
    try:
        cmdline = host.read_text(f"/proc/{pid}/cmdline", limit=4096)
    except FileNotFoundError:
        details["reason"] = "stale-pid"
        details["stale_pid"] = pid
        return _fail(
            host,
            f"nginx is not running: master pid {pid} from {config.pid_file} does not exist",
            details,
        )
    except (HostUnreachable, OSError) as exc:
        return error_observation(host, NAME, exc)
    title = cmdline.replace("\0", " ").strip()
    details["cmdline"] = title[:200]
    if not is_nginx_master(cmdline):
        details["reason"] = "stale-pid"
        details["stale_pid"] = pid
        shown = title[:60] or "a zombie or kernel thread"
        return _fail(
            host,
            f"nginx is not running: pid {pid} from {config.pid_file} is not an nginx master"
            f" ({shown})",
            details,
        )
    return Observation(
        host=host.name,
        probe=NAME,
        status=Status.OK,
        summary=f"nginx master running (pid {pid})",
        details=details,
    )


probe = measured(_check)
