"""nginx's command line on a host, shared by the probes that run it (`config` runs
`nginx -t`; `upstreams`, and `http` and `error_rate` on a failure, read `nginx -T`): the
argv, paths as the host names them, the configuration nginx would load, and nginx's
complaints on stderr parsed into {level, message, file, line}.

nginx writes its complaints in two shapes, depending on whether its error log was open:

    nginx: [emerg] unexpected "}" in /etc/nginx/sites-enabled/default:12
    2026/11/23 11:53:53 [emerg] 7376#7376: unexpected "}" in /etc/nginx/sites-enabled/default:12
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

from probes import nginxconf
from probes.base import Host, HostUnreachable
from probes.facts import Subjects

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


class ConfigRefused(Exception):
    """`nginx -T` ran and refused the configuration; `errors` are its parsed messages."""

    def __init__(self, why: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(why)
        self.why = why
        self.errors = errors


def read_tree(
    host: Host, nginx: str, conf: str, prefix: str | None, timeout: float
) -> list[nginxconf.Directive]:
    """The configuration nginx would load on the host (`nginx -T`), includes expanded and
    every file named as the host names it. Raises ConfigRefused when nginx refuses it,
    HostUnreachable (or OSError) when it cannot be run, nginxconf.ConfigParseError when
    its output does not parse."""
    result = host.run(nginx_argv(host, nginx, conf, prefix, "-T"), timeout)
    root = host_root(host)
    if result.exit_code != 0:
        errors = [e for e in parse_errors(result.stderr, root) if e["level"] in FAILING]
        if errors:
            raise ConfigRefused(describe(errors[0]), errors)
        raise HostUnreachable(f"nginx -T failed: exit {result.exit_code}")
    dump = nginxconf.parse_dump(result.stdout, host.real_path(conf))
    return nginxconf.rename_files(dump.tree(), lambda p: to_host_path(root, p))


# `nginx -T` for a failing observation's `file` is best-effort evidence: bounded short, so
# an overloaded host or a slow SSH link costs the observation at most this long (it then
# goes out without the file), never the 10 s a probe of the configuration itself allows.
LOOKUP_TIMEOUT = 2.0
# How long one lookup's answer (or its failure) stands. A time-to-live rather than a key
# of the config files' mtimes: those would take a stat per included file over the
# host's transport on every failing observation (several SSH round trips on the host
# that is struggling), where this takes none; the cost of a stale answer is a file name
# up to a minute old after an edit moved a server block. A failure is kept as long, so a
# host whose `nginx -T` hangs is not asked again every interval.
TREE_TTL = 60.0

_Key = tuple[str, str, str, str, str | None]
_servers_cache: dict[_Key, tuple[float, list[nginxconf.Server] | None]] = {}
_lookups: dict[_Key, threading.Lock] = {}
_cache_lock = threading.Lock()


def forget_trees() -> None:
    """Drop every cached lookup (tests; a configuration known to have changed)."""
    with _cache_lock:
        _servers_cache.clear()


def _cached_servers(
    host: Host, nginx: str, conf: str, prefix: str | None, timeout: float
) -> list[nginxconf.Server] | None:
    """The server blocks of the configuration nginx would load, at most one `nginx -T` per
    host, binary and config path per TREE_TTL; None when nginx cannot say, or when
    another probe's lookup for the same host is running (not waited for: this is
    evidence, not the verdict)."""
    key: _Key = (host.name, host_root(host), nginx, conf, prefix)
    with _cache_lock:
        hit = _servers_cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        running = _lookups.setdefault(key, threading.Lock())
    if not running.acquire(blocking=False):
        return None
    try:
        found: list[nginxconf.Server] | None
        try:
            found = nginxconf.servers(read_tree(host, nginx, conf, prefix, timeout))
        except (ConfigRefused, HostUnreachable, OSError, nginxconf.ConfigParseError):
            found = None
        with _cache_lock:
            _servers_cache[key] = (time.monotonic() + TREE_TTL, found)
        return found
    finally:
        running.release()


def serving_files(
    host: Host,
    *,
    port: int | None = None,
    name: str = "",
    log: str | None = None,
    nginx: str = "nginx",
    conf: str = "/etc/nginx/nginx.conf",
    prefix: str | None = None,
    timeout: float = LOOKUP_TIMEOUT,
) -> tuple[str, ...]:
    """The files of the `server` blocks that serve `port` (for the name `name`) or write
    the access log `log`, from the configuration `nginx` would load from `conf` (the
    check's own settings, as the config probe's): what a failing http or error_rate
    observation names as its `file`, where a task says to add a log format or a limit.
    Empty when nginx cannot say (not installed there, the configuration refused, no such
    server, no answer within `timeout`). Cached: see TREE_TTL."""
    found = _cached_servers(host, nginx, conf, prefix, timeout)
    if found is None:
        return ()
    root = host_root(host)
    chosen = (
        nginxconf.serving_port(found, port, name)
        if port is not None
        else nginxconf.writing_log(found, log, lambda p: to_host_path(root, p))
        if log is not None
        else []
    )
    return tuple(dict.fromkeys(s.file for s in chosen))
