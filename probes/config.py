"""Config probe: does `nginx -t` accept the configuration?

The exit code is the authority; stderr only explains it. nginx writes its complaints in
two shapes, depending on whether its error log was open yet:

    nginx: [emerg] unexpected "}" in /etc/nginx/sites-enabled/default:12
    2026/11/23 11:53:53 [emerg] 7376#7376: unexpected "}" in /etc/nginx/sites-enabled/default:12

Both are parsed into {level, message, file, line}, with files named as the host names them
(a lab host's directory prefix removed), so the summary points at the line to fix.
"""

from __future__ import annotations

import re
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

NAME = "config"

# The fixed start of a message; the rest is split with string methods, never a regular
# expression with an open-ended tail (a quoted value may hold thousands of spaces, and a
# backtracking match over it would stall the daemon: `re` holds the GIL).
_PREFIX = re.compile(
    r"(?:nginx: |\d{4}/\d\d/\d\d \d\d:\d\d:\d\d )"
    r"\[(?P<level>emerg|alert|crit|error|warn|notice|info|debug)\] "
    r"(?:\d+#\d+: )?(?:\*\d+ )?"
)
_WHERE = re.compile(r"(\S+):(\d+)")
_OPENED = re.compile(r'open\(\) "(/[^"]+)" failed')
FAILING = ("emerg", "alert", "crit", "error")


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    nginx: str = "nginx"  # the binary on the host
    conf: str = "/etc/nginx/nginx.conf"
    timeout: Duration = 10.0
    # nginx's -p (prefix) as the host names it. None: pass -p only for a host that maps
    # paths under a directory (a lab host: its root, as the lab starts nginx); a real
    # server keeps its compiled-in prefix, which its relative paths depend on.
    prefix: str | None = None


def nginx_argv(host: Host, nginx: str, conf: str, prefix: str | None, flag: str) -> list[str]:
    """`nginx -t` / `nginx -T` for this host: -c the real config path, and -p when needed."""
    argv = [nginx, flag, "-c", host.real_path(conf)]
    if prefix is not None:
        argv += ["-p", host.real_path(prefix).rstrip("/") + "/"]
    elif host_root(host):
        argv += ["-p", host_root(host) + "/"]
    return argv


def host_root(host: Host) -> str:
    """The real directory the host's `/` lives in, "" when it is `/` itself."""
    return host.real_path("/").rstrip("/")


def to_host_path(root: str, path: str) -> str:
    """A real path as the host names it: /lab/web-01/etc/nginx -> /etc/nginx."""
    if root and (path == root or path.startswith(root + "/")):
        return path[len(root) :] or "/"
    return path


def parse_errors(stderr: str, root: str = "") -> list[dict[str, Any]]:
    """nginx's complaints as {level, message, file, line}; file and line may be None."""
    found: list[dict[str, Any]] = []
    for raw in stderr.splitlines():
        text = raw.strip()
        m = _PREFIX.match(text)
        if not m:
            continue
        message, file, line = text[m.end() :], None, None
        head, sep, where = message.rpartition(" in ")
        w = _WHERE.fullmatch(where) if sep else None
        if w:
            message, file, line = head, w.group(1), int(w.group(2))
        if root:
            message = message.replace(root + "/", "/")
        found.append(
            {
                "level": m["level"],
                "message": message,
                "file": to_host_path(root, file) if file else None,
                "line": line,
            }
        )
    return found


def subjects_of(error: dict[str, Any]) -> Subjects:
    """The file to fix for one of nginx's complaints: the file it failed to open (a
    dangling include), else the file and line it complains about."""
    opened = _OPENED.search(error["message"])
    if opened:
        return Subjects(file=(opened.group(1),))
    if error["file"]:
        return Subjects(file=(error["file"],), line=error["line"])
    return Subjects()


def describe(error: dict[str, Any]) -> str:
    where = f" in {error['file']}:{error['line']}" if error["file"] else ""
    return f"{error['message']}{where}"


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
