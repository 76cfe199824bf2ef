"""What every probe shares: the fault vocabulary, the Observation it returns, and the
small Host protocol it looks through.

`probes/` sits below `recorder/` and imports nothing from it. The engine's hosts (local,
SSH, docker) implement `Host`; a probe cannot tell them apart.
"""

from __future__ import annotations

import errno
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple, Protocol, TypeVar, runtime_checkable

from probes.facts import Facts


class Fault(StrEnum):
    """The one vocabulary shared by probes, detector, runbooks, the lab and postmortems."""

    PORT_CLOSED = "port-closed"
    NGINX_DOWN = "nginx-down"
    MISSING_SYMLINK = "missing-symlink"
    DANGLING_SYMLINK = "dangling-symlink"
    CONFIG_SYNTAX = "config-syntax"
    UPSTREAM_DOWN = "upstream-down"
    HTTP_5XX = "http-5xx"
    SLOW_RESPONSES = "slow-responses"
    CAPACITY = "capacity"
    BAD_DEPLOY = "bad-deploy"
    UNEXPECTED_STATUS = "unexpected-status"


class Status(StrEnum):
    OK = "ok"  # we looked and it is healthy
    FAIL = "fail"  # we looked and it is broken
    ERROR = "error"  # we could not look (host unreachable, timeout, permission)


@dataclass(frozen=True)
class Observation:
    """One probe's verdict on one host at one moment."""

    host: str
    probe: str
    status: Status
    summary: str
    fault: Fault | None = None
    details: dict[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    duration: float = 0.0
    facts: Facts = field(default_factory=Facts)  # what the engine reads (probes/facts.py)
    # time.monotonic() when it was taken (the scheduler sets it): how long a condition has
    # lasted is measured on it, so a wall-clock step neither stretches nor cuts
    # `for`/`recover_after`; `at` is what is shown. None: durations fall back to `at`.
    mono: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "probe": self.probe,
            "status": str(self.status),
            "fault": str(self.fault) if self.fault else None,
            "summary": self.summary,
            "details": self.details,
            "at": self.at.isoformat(),
            "duration": round(self.duration, 6),
            "facts": self.facts.to_json(),
        }


class HostUnreachable(Exception):
    """The host could not be reached or could not do what was asked (connect refused,
    authentication failed, host key rejected, command timed out).

    Callers turn it into an `error` observation: we could not look, which is not the same
    as "it is broken". Missing files are not this: they raise FileNotFoundError.
    """


class CommandResult(NamedTuple):
    exit_code: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class FileStat:
    size: int
    inode: int
    mtime: float
    mode: int  # st_mode, so callers can use stat.S_ISLNK / S_ISREG / S_ISDIR
    device: int = 0


@runtime_checkable
class Host(Protocol):
    """How a probe reaches a machine. Paths are the host's own paths (`/etc/nginx/...`);
    a local host with a prefix maps them under that prefix.

    Every method raises `HostUnreachable` when the host cannot be reached, and
    `FileNotFoundError` when the path does not exist there.
    """

    name: str
    address: str  # what `{address}` in a probe URL becomes

    def run(self, argv: Sequence[str], timeout: float) -> CommandResult:
        """Run a command given as a list (never a shell string), bounded in total time."""
        ...

    def real_path(self, path: str) -> str:
        """The path as the host's own commands must name it (prefix applied)."""
        ...

    def read_text(self, path: str, limit: int = 16 * 1024 * 1024) -> str: ...

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        """Up to `length` bytes from `offset`; fewer (or none) at the end of the file."""
        ...

    def stat(self, path: str) -> FileStat: ...

    def lstat(self, path: str) -> FileStat: ...

    def readlink(self, path: str) -> str: ...

    def listdir(self, path: str) -> list[str]: ...


C = TypeVar("C")  # a probe's config model


def measured(check: Callable[[Host, C], Observation]) -> Callable[[Host, C], Observation]:
    """A probe from its check: the same observation, carrying how long the check took."""

    @functools.wraps(check)
    def probe(host: Host, config: C) -> Observation:
        start = time.perf_counter()
        obs = check(host, config)
        return replace(obs, duration=time.perf_counter() - start)

    return probe


# Errors of the recorder's own machine (out of file descriptors, memory or buffers, a full
# disk): they say nothing about the site. A probe that meets one could not look; calling
# it harm opened a false 100% outage when the daemon ran out of descriptors.
LOCAL_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS, errno.ENOSPC})


class LocalResourceError(Exception):
    """The recorder's machine ran out of something while probing (see LOCAL_ERRNOS)."""


def causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and every exception behind it: requests and urllib3 wrap the OSError a few
    levels deep (args, `reason`, __cause__, __context__)."""
    todo: list[object] = [exc]
    seen: set[int] = set()
    while todo:
        current = todo.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [current.__cause__, current.__context__, getattr(current, "reason", None)]
        todo += list(current.args)


def local_resource_error(exc: BaseException) -> LocalResourceError | None:
    """The local resource error behind `exc`, or None."""
    for current in causes(exc):
        if isinstance(current, OSError) and current.errno in LOCAL_ERRNOS:
            what = current.strerror or errno.errorcode.get(current.errno or 0, "error")
            return LocalResourceError(f"the recorder's own machine: {what} (not the site)")
    return None


def error_observation(
    host: Host, probe: str, exc: BaseException, duration: float = 0.0
) -> Observation:
    """The observation for "we could not look": never a failure of the site."""
    reason = str(exc) or type(exc).__name__
    return Observation(
        host=host.name,
        probe=probe,
        status=Status.ERROR,
        summary=f"could not check {probe} on {host.name}: {reason}",
        details={"error": reason, "error_type": type(exc).__name__},
        duration=duration,
        facts=Facts(reason=reason),
    )
