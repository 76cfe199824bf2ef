"""sd_notify, spoken by hand: newline-separated `KEY=value` lines in one datagram on the
AF_UNIX socket named by $NOTIFY_SOCKET (see sd_notify(3)). No compiled bindings.

Without $NOTIFY_SOCKET (run by hand, in a container, under another supervisor) every
method is a silent no-op, so the daemon calls them unconditionally.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Mapping

log = logging.getLogger("recorder.systemd")


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._env = env
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self._lock = threading.Lock()
        self._last_status: str | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    # ---- the messages the daemon sends ----------------------------------------------------

    def ready(self, status: str = "") -> None:
        """Start-up (or a reload) is complete: systemd may consider the unit active."""
        lines = ["READY=1"]
        if status:
            lines.append("STATUS=" + _one_line(status))
            self._last_status = _one_line(status)
        self.send(*lines)

    def status(self, text: str) -> None:
        """A short state for `systemctl status`; repeats of the same text are not sent."""
        line = _one_line(text)
        if line == self._last_status:
            return
        self._last_status = line
        self.send("STATUS=" + line)

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def reloading(self) -> None:
        """Since systemd 253 a reload must carry the CLOCK_MONOTONIC time it began, so
        systemd can tell this reload's READY=1 from an older one."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def watchdog_interval(self) -> float | None:
        """Seconds systemd allows between WATCHDOG=1 pings, or None when it is not
        watching this process. The daemon pings at half of it."""
        usec = self._env.get("WATCHDOG_USEC", "")
        if not usec.isascii() or not usec.isdigit() or int(usec) == 0:
            return None
        pid = self._env.get("WATCHDOG_PID", "")
        if pid and (not pid.isascii() or not pid.isdigit() or int(pid) != os.getpid()):
            return None  # meant for another process (we were started by a wrapper)
        return int(usec) / 1_000_000

    # ---- the wire -------------------------------------------------------------------------

    def send(self, *lines: str) -> bool:
        """Send one datagram; True when it was sent. Failures are logged, never raised:
        losing a status line must not stop the daemon."""
        if self.address is None:
            return False
        payload = "\n".join(lines).encode("utf-8")
        # A socket per message, as libsystemd does: nothing to keep open or to go stale
        # (the socket file is recreated when systemd re-executes itself).
        with self._lock:
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                    sock.settimeout(1.0)
                    sock.sendto(payload, self.address)
            except OSError as exc:
                if not self._warned:
                    self._warned = True
                    log.warning("cannot notify systemd at %r: %s", self.address, exc)
                return False
        return True


def _address(value: str) -> str | None:
    """NOTIFY_SOCKET as a socket address: `@name` is Linux's abstract namespace."""
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    # vsock:CID:PORT (systemd 254, for VMs) and anything else are not for us.
    log.warning("NOTIFY_SOCKET=%r is not an AF_UNIX path; not notifying systemd", value)
    return None


def _one_line(text: str) -> str:
    return " ".join(text.split())


# ---- signals during start-up -----------------------------------------------------------------

_held: list[int] = []


def hold_reloads() -> None:
    """Catch SIGHUP from now until the daemon installs its own handlers: its default
    action ends the process, and a reload asked for while the daemon imports and opens
    its store (about a second) killed it. Call first thing in `recorder run`, before the
    slow imports; `held_reloads()` hands them over. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        return

    def hold(signum: int, frame: object) -> None:
        _held.append(signum)

    signal.signal(signal.SIGHUP, hold)


def held_reloads() -> list[int]:
    """The SIGHUPs caught by `hold_reloads` since it was called, once."""
    taken = list(_held)
    del _held[: len(taken)]
    return taken
