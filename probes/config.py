"""Config probe: does `nginx -t` accept the configuration?

The exit code is the authority; stderr only explains it. Its complaints are parsed
(probes/nginxcli.py, shared with the upstreams probe) into {level, message, file, line},
with files named as the host names them (a lab host's directory prefix removed), so the
summary points at the line to fix.
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
from probes.durations import Duration
from probes.facts import Facts, Subjects
from probes.nginxcli import FAILING, describe, host_root, nginx_argv, subjects_of, to_host_path
from probes.nginxcli import parse_errors as parse_errors

NAME = "config"


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    nginx: str = "nginx"  # the binary on the host
    conf: str = "/etc/nginx/nginx.conf"
    timeout: Duration = 10.0
    # nginx's -p (prefix) as the host names it. None: pass -p only for a host that maps
    # paths under a directory (a lab host: its root, as the lab starts nginx); a real
    # server keeps its compiled-in prefix, which its relative paths depend on.
    prefix: str | None = None


def _check(host: Host, config: Config) -> Observation:
    argv = nginx_argv(host, config.nginx, config.conf, config.prefix, "-t")
    try:
        result = host.run(argv, config.timeout)
    except (HostUnreachable, OSError) as exc:
        return error_observation(host, NAME, exc)
    root = host_root(host)
    errors = parse_errors(result.stderr, root)
    details: dict[str, Any] = {
        "command": [to_host_path(root, a) for a in argv],
        "exit_code": result.exit_code,
        "errors": [e for e in errors if e["level"] in FAILING],
        "warnings": [e for e in errors if e["level"] not in FAILING],
    }
    if result.exit_code == 127 or (
        result.exit_code != 0 and "not found" in result.stderr and not errors
    ):
        # The shell of a remote host could not find the binary: we could not look.
        return error_observation(
            host, NAME, HostUnreachable(f"{config.nginx}: command not found on {host.name}")
        )
    if result.exit_code == 0:
        summary = "nginx -t: configuration is ok"
        if details["warnings"]:
            first = details["warnings"][0]
            summary += f" ({len(details['warnings'])} warning(s), first: {describe(first)})"
        return Observation(
            host=host.name, probe=NAME, status=Status.OK, summary=summary, details=details
        )
    failing = details["errors"]
    subjects = subjects_of(failing[0]) if failing else Subjects()
    if failing:
        summary = f"nginx -t failed: {describe(failing[0])}"
        if len(failing) > 1:
            summary += f" (and {len(failing) - 1} more)"
    else:
        tail = [line for line in result.stderr.strip().splitlines() if line.strip()][-3:]
        details["stderr_tail"] = tail
        last = tail[-1] if tail else "no output"
        summary = f"nginx -t failed (exit {result.exit_code}): {last}"
    return Observation(
        host=host.name,
        probe=NAME,
        status=Status.FAIL,
        fault=Fault.CONFIG_SYNTAX,
        summary=summary,
        details=details,
        facts=Facts(subjects=subjects),
    )


probe = measured(_check)
