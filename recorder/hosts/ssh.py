"""A machine reached over SSH (paramiko), with host keys checked against an explicit file.

One connection per host is kept and shared by every probe: commands run on channels of
that connection, file reads go through one SFTP session on it. A dead connection is
replaced once per call; a host that cannot be reached, refuses our key or shows an
unknown or changed host key raises `HostUnreachable` with the reason, never a traceback.

Command timeouts. paramiko's own timeouts bound single reads, not a command's total time,
so `run` reads stdout and stderr as they arrive against one deadline and, when it passes,
closes the channel and raises. Closing a channel does not stop the remote process (sshd
signals nothing when a session without a tty goes away), so the command is started under
the remote `timeout -s KILL` (coreutils or BusyBox) set one second past our deadline: the
remote side kills the whole process group even if the connection is gone by then. On a
host without `timeout` the command runs plain and may outlive the deadline there.

File metadata. SFTP (version 3) carries no inode or device, which log tailing needs to
notice rotation, so `stat`/`lstat` run the remote `stat` command; the rest is SFTP.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import select
import shlex
import socket
import stat as stat_module
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import paramiko
from paramiko.hostkeys import InvalidHostKey

from probes.base import CommandResult, FileStat, HostUnreachable
from probes.private import make_private_dirs
from recorder.config import SSHHostConfig
from recorder.hosts.local import MAX_OUTPUT, output_too_large
from recorder.hosts.statcmd import parse_stat, stat_argv

T = TypeVar("T")

_log = logging.getLogger(__name__)

# paramiko's transport thread logs every failed handshake at ERROR, with a traceback, to
# a logger nobody configured (so Python prints it to stderr). Each failure already reaches
# the caller as one HostUnreachable with its reason; quiet paramiko unless someone has
# chosen a level for it (to debug a connection, set the `paramiko` logger to DEBUG).
_paramiko_log = logging.getLogger("paramiko")
if _paramiko_log.level == logging.NOTSET:
    _paramiko_log.setLevel(logging.CRITICAL)

# sshd refuses sessions beyond MaxSessions (default 10) on one connection; the SFTP session
# takes one, so at most this many commands run at once per host and the rest wait.
MAX_CHANNELS = 8

_READ_CHUNK = 1 << 16
# Serializes appends to known_hosts files when several hosts trust on first use at once.
_known_hosts_lock = threading.Lock()


class _HostKeyRefused(paramiko.SSHException):
    """Raised by our host key policies; its message is the one the operator sees."""


class _RejectUnknown(paramiko.MissingHostKeyPolicy):
    def __init__(self, known_hosts: str) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        raise _HostKeyRefused(
            f"unknown host key for {hostname} ({key.get_name()} {key.fingerprint}): "
            f"not in {self.known_hosts}; after checking the fingerprint, add it "
            f"(ssh-keyscan) or set trust_on_first_use: true"
        )


class _TrustOnFirstUse(paramiko.MissingHostKeyPolicy):
    """Accept a host never seen before and record its key. paramiko calls this only for
    hosts absent from the file; a host present with another key fails before, as changed."""

    def __init__(self, known_hosts: str) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        try:
            _append_known_host(self.known_hosts, hostname, key)
        except OSError as exc:
            raise _HostKeyRefused(
                f"cannot record the host key of {hostname} in {self.known_hosts}: "
                f"{exc.strerror or exc}"
            ) from None
        client.get_host_keys().add(hostname, key.get_name(), key)
        _log.warning(
            "trusting %s on first use: recorded %s %s in %s",
            hostname,
            key.get_name(),
            key.fingerprint,
            self.known_hosts,
        )


def _append_known_host(path: str, hostname: str, key: paramiko.PKey) -> None:
    """Append one line to known_hosts (rewriting it would drop comments and hashed names)."""
    line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
    with _known_hosts_lock:
        parent = os.path.dirname(path)
        if parent:
            make_private_dirs(parent)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "r+b") as f:
            size = f.seek(0, os.SEEK_END)
            if size:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    line = "\n" + line
            f.write(line.encode())


def remote_command(argv: Sequence[str], timeout: float) -> str:
    """The shell line sshd runs for argv: every word quoted, under the remote `timeout`.

    The remote kill comes one whole second after our own deadline so that a command still
    running at the deadline is always reported by us as timed out, never as exit 137.
    """
    if not argv:
        raise ValueError("empty command")
    quoted = shlex.join(argv)
    kill_after = math.ceil(timeout) + 1
    return (
        "if command -v timeout >/dev/null 2>&1; "
        f"then exec timeout -s KILL {kill_after} {quoted}; "
        f"else exec {quoted}; fi"
    )


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _sftp_open(sftp: paramiko.SFTPClient | None) -> bool:
    """Whether the SFTP session still stands. An OSError raised while it does came from the
    server's answer; on a closed channel paramiko raises OSError("Socket is closed")."""
    channel = sftp.get_channel() if sftp is not None else None
    if channel is None or channel.closed:
        return False
    transport = channel.get_transport()
    return transport is not None and transport.is_active()


class SSHHost:
    max_output = MAX_OUTPUT  # bytes per stream of one command (tests lower it)

    def __init__(self, name: str, cfg: SSHHostConfig, address: str | None = None) -> None:
        self.name = name
        self.cfg = cfg
        self.address = address or cfg.address
        self.known_hosts = os.path.expanduser(cfg.known_hosts)
        self._lock = threading.Lock()  # guards _client and _sftp (creating, replacing)
        self._sftp_lock = threading.Lock()  # paramiko's SFTPClient is not thread-safe
        self._channels = threading.BoundedSemaphore(MAX_CHANNELS)
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._last_failure: tuple[float, str] | None = None

    def __repr__(self) -> str:
        return f"SSHHost({self.name!r}, {self.cfg.user}@{self.cfg.address}:{self.cfg.port})"

    @property
    def _where(self) -> str:
        return f"{self.cfg.user}@{self.cfg.address}:{self.cfg.port}"

    # ---- connection ------------------------------------------------------------------

    def close(self) -> None:
        """Close the SFTP session and the connection; the next call reconnects."""
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        sftp, client = self._sftp, self._client
        self._sftp = self._client = None
        # Closing says goodbye over the wire, which fails on a connection already dead; the
        # local resources are released either way, and there is nobody to tell.
        if sftp is not None:
            try:
                sftp.close()
            except (paramiko.SSHException, EOFError, OSError):
                pass
        if client is not None:
            try:
                client.close()
            except (paramiko.SSHException, EOFError, OSError):
                pass

    def _alive(self, client: paramiko.SSHClient | None) -> bool:
        transport = client.get_transport() if client is not None else None
        return transport is not None and transport.is_active()

    def _connection(self) -> paramiko.SSHClient:
        """The shared connection, made (or remade, if it died) under the lock."""
        waited_since = time.monotonic()
        with self._lock:
            if self._alive(self._client):
                assert self._client is not None
                return self._client
            # Callers that queued behind an attempt that just failed share its verdict
            # instead of each waiting out another connect timeout.
            if self._last_failure is not None and self._last_failure[0] >= waited_since:
                raise HostUnreachable(self._last_failure[1])
            self._drop()
            try:
                self._client = self._connect()
            except HostUnreachable as exc:
                self._last_failure = (time.monotonic(), str(exc))
                raise
            self._last_failure = None
            return self._client

    def _reset(self, client: paramiko.SSHClient) -> None:
        """Forget a connection found broken (unless another thread already replaced it)."""
        with self._lock:
            if self._client is client:
                self._drop()

    def _connect(self) -> paramiko.SSHClient:
        cfg, where = self.cfg, self._where
        pkey = self._load_key()
        client = paramiko.SSHClient()
        try:
            self._load_known_hosts(client)
            policy = _TrustOnFirstUse if cfg.trust_on_first_use else _RejectUnknown
            client.set_missing_host_key_policy(policy(self.known_hosts))
            client.connect(
                cfg.address,
                port=cfg.port,
                username=cfg.user,
                pkey=pkey,
                allow_agent=pkey is None,
                look_for_keys=False,
                timeout=cfg.connect_timeout,
                banner_timeout=cfg.connect_timeout,
                auth_timeout=cfg.connect_timeout,
                channel_timeout=cfg.connect_timeout,
            )
        except HostUnreachable:
            client.close()
            raise
        except Exception as exc:
            client.close()
            raise HostUnreachable(f"{self.name}: {self._connect_error(exc)}") from None
        transport = client.get_transport()
        assert transport is not None
        # Keepalives let a connection silently dropped by a firewall be noticed and replaced.
        transport.set_keepalive(30)
        if isinstance(transport.sock, socket.socket):
            # paramiko leaves Nagle on, so each small request (opening a channel) waits for
            # the server's delayed ACK: 40 ms per command, measured on loopback.
            transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _log.debug("%s: connected to %s", self.name, where)
        return client

    def _connect_error(self, exc: BaseException) -> str:
        where, timeout = self._where, self.cfg.connect_timeout
        if isinstance(exc, _HostKeyRefused):
            return str(exc)
        if isinstance(exc, paramiko.BadHostKeyException):
            return (
                f"host key for {exc.hostname} CHANGED: {self.known_hosts} has "
                f"{exc.expected_key.get_name()} {exc.expected_key.fingerprint}, the server "
                f"offered {exc.key.get_name()} {exc.key.fingerprint}; refusing to connect "
                f"(someone may be intercepting the connection). If the key was replaced on "
                f"purpose, remove the old entry: ssh-keygen -R '{exc.hostname}' "
                f"-f {self.known_hosts}"
            )
        if isinstance(exc, paramiko.AuthenticationException):
            method = f"key {self.cfg.key}" if self.cfg.key else "the SSH agent"
            return f"authentication failed for {where} with {method}: {exc}"
        if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
            return f"cannot connect to {where}: connection refused"
        if isinstance(exc, socket.gaierror):
            return f"cannot resolve {self.cfg.address}: {exc.strerror}"
        if isinstance(exc, TimeoutError):
            return f"cannot connect to {where}: timed out after {timeout:g}s"
        if isinstance(exc, OSError):
            return f"cannot connect to {where}: {exc.strerror or exc}"
        if isinstance(exc, EOFError):
            return f"{where} closed the connection during the SSH handshake"
        if isinstance(exc, paramiko.SSHException):
            if "No authentication methods available" in str(exc):
                return f"authentication failed for {where}: no key configured and no agent key"
            if "No existing session" in str(exc) or "protocol banner" in str(exc):
                # paramiko's words when the exchange ran out of time part-way.
                return (
                    f"SSH handshake with {where} timed out after {timeout:g}s "
                    f"(the server is too slow, or not an SSH server): {exc}"
                )
            return f"SSH handshake with {where} failed: {exc}"
        # paramiko raises bare exceptions in corners (an odd key type in known_hosts);
        # still one clear error for the caller, with enough to look it up.
        return f"SSH connection to {where} failed: {type(exc).__name__}: {exc}"

    def _load_key(self) -> paramiko.PKey | None:
        if self.cfg.key is None:
            return None  # the SSH agent's keys
        path = os.path.expanduser(self.cfg.key)
        try:
            return paramiko.PKey.from_path(path)
        except OSError as exc:
            problem = exc.strerror or str(exc)
        except (paramiko.SSHException, ValueError, TypeError) as exc:
            # An encrypted key shows as PasswordRequiredException or, for the OpenSSH
            # format, as cryptography's TypeError "Key is password-protected".
            if isinstance(exc, paramiko.PasswordRequiredException) or "password" in str(exc):
                problem = "it is encrypted (use an unencrypted key or the SSH agent)"
            else:
                problem = f"not a usable private key ({exc})"
        raise HostUnreachable(f"{self.name}: cannot load key {path}: {problem}")

    def _load_known_hosts(self, client: paramiko.SSHClient) -> None:
        try:
            client.load_host_keys(self.known_hosts)
        except FileNotFoundError:
            pass  # no host is known yet: every key is unknown (refused unless first use)
        except (OSError, paramiko.SSHException, InvalidHostKey, ValueError) as exc:
            if isinstance(exc, OSError):
                reason = exc.strerror or str(exc)
            elif isinstance(exc, InvalidHostKey):
                reason = f"bad entry {exc.line.strip()!r}"
            else:
                reason = str(exc)
            raise HostUnreachable(
                f"{self.name}: cannot read known_hosts {self.known_hosts}: {reason}"
            ) from None

    # ---- commands --------------------------------------------------------------------

    def real_path(self, path: str) -> str:
        return path

    def run(self, argv: Sequence[str], timeout: float) -> CommandResult:
        command = remote_command(argv, timeout)
        deadline = time.monotonic() + timeout
        if not self._channels.acquire(timeout=timeout):
            raise HostUnreachable(
                f"{self.name}: command timed out after {timeout:g}s waiting for a free "
                f"session ({MAX_CHANNELS} commands already running): {argv[0]}"
            )
        try:
            channel = self._open_channel(deadline)
            try:
                return self._run_on(channel, command, deadline, timeout, argv[0])
            finally:
                try:
                    channel.close()
                except (paramiko.SSHException, EOFError, OSError):
                    # The connection died under the command before paramiko's transport
                    # noticed: closing writes to it and fails. The command's own result
                    # or HostUnreachable is what the caller needs; the next command finds
                    # the connection dead and makes a new one.
                    pass
        finally:
            self._channels.release()

    def _open_channel(self, deadline: float) -> paramiko.Channel:
        """A new session channel, reconnecting once if the connection turns out dead."""
        for attempt in (1, 2):
            client = self._connection()
            transport = client.get_transport()
            wait = max(0.1, min(deadline - time.monotonic(), self.cfg.connect_timeout))
            try:
                if transport is None:
                    raise paramiko.SSHException("no transport")
                return transport.open_session(timeout=wait)
            except paramiko.ChannelException as exc:
                # The server is there but refused a session (MaxSessions, a policy).
                raise HostUnreachable(
                    f"{self.name}: {self._where} refused a session: {exc.text}"
                ) from None
            except (paramiko.SSHException, EOFError, OSError) as exc:
                self._reset(client)
                if attempt == 2:
                    raise HostUnreachable(
                        f"{self.name}: lost the connection to {self._where}: {_reason(exc)}"
                    ) from None
                _log.info("%s: connection lost (%s); reconnecting", self.name, _reason(exc))
        raise AssertionError("unreachable")

    def _run_on(
        self, channel: paramiko.Channel, command: str, deadline: float, timeout: float, what: str
    ) -> CommandResult:
        timed_out = HostUnreachable(f"{self.name}: command timed out after {timeout:g}s: {what}")
        try:
            channel.exec_command(command)
            channel.shutdown_write()  # like stdin=/dev/null locally: readers see EOF
            out, err = bytearray(), bytearray()
            while True:
                while channel.recv_ready():
                    out += channel.recv(_READ_CHUNK)
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(_READ_CHUNK)
                if len(out) > self.max_output or len(err) > self.max_output:
                    raise output_too_large(self.name, what, self.max_output)
                if channel.eof_received or channel.closed:
                    # EOF ends both streams; drain what arrived with it.
                    while channel.recv_ready():
                        out += channel.recv(_READ_CHUNK)
                    while channel.recv_stderr_ready():
                        err += channel.recv_stderr(_READ_CHUNK)
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise timed_out
                # The channel's fileno becomes readable when stdout or stderr has data.
                select.select([channel], [], [], min(remaining, 1.0))
            remaining = deadline - time.monotonic()
            if not channel.status_event.wait(max(remaining, 0.0)):
                raise timed_out
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise HostUnreachable(
                f"{self.name}: lost the connection while running {what}: {_reason(exc)}"
            ) from None
        status = channel.exit_status
        if status == -1 and not channel.get_transport().is_active():
            # Closed without an exit status because the connection went, not the command.
            raise HostUnreachable(f"{self.name}: lost the connection while running {what}")
        return CommandResult(status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    # ---- files -----------------------------------------------------------------------

    def _sftp_client(self, client: paramiko.SSHClient) -> paramiko.SFTPClient:
        with self._lock:
            if self._client is not client:
                raise paramiko.SSHException("connection replaced")
            if self._sftp is None:
                sftp = client.open_sftp()
                channel = sftp.get_channel()
                if channel is not None:
                    # A stuck request fails after this long instead of hanging a probe.
                    channel.settimeout(self.cfg.command_timeout)
                self._sftp = sftp
            return self._sftp

    def _reset_sftp(self, sftp: paramiko.SFTPClient | None) -> None:
        with self._lock:
            if sftp is not None and self._sftp is sftp:
                self._sftp = None
                try:
                    sftp.close()
                except (paramiko.SSHException, EOFError, OSError):
                    pass

    def _sftp_call(self, what: str, path: str, call: Callable[[paramiko.SFTPClient], T]) -> T:
        """Run one SFTP operation; reconnect once if the connection died under it."""
        for attempt in (1, 2):
            client = self._connection()
            sftp: paramiko.SFTPClient | None = None
            try:
                sftp = self._sftp_client(client)
                with self._sftp_lock:
                    return call(sftp)
            except OSError as exc:
                if isinstance(exc, TimeoutError):
                    # A late reply would confuse the next request: start a new SFTP session
                    # (commands in flight on the same connection are left alone).
                    self._reset_sftp(sftp)
                    raise HostUnreachable(
                        f"{self.name}: {what} {path} timed out after {self.cfg.command_timeout:g}s"
                    ) from None
                if _sftp_open(sftp) and not isinstance(exc, ConnectionError):
                    # The server answered: about the path (errno set), or with a bare
                    # SFTP "Failure" of its own. Name the path either way.
                    if exc.errno is not None:
                        raise type(exc)(exc.errno, os.strerror(exc.errno), path) from None
                    raise OSError(f"{self.name}: {what} {path}: {exc}") from None
                failure: BaseException = exc
            except (paramiko.SSHException, EOFError) as exc:
                failure = exc
            self._reset(client)
            if attempt == 2:
                raise HostUnreachable(
                    f"{self.name}: lost the connection to {self._where} during {what} "
                    f"{path}: {_reason(failure)}"
                )
            _log.info("%s: connection lost (%s); reconnecting", self.name, _reason(failure))
        raise AssertionError("unreachable")

    def read_text(self, path: str, limit: int = 16 * 1024 * 1024) -> str:
        return self.read_range(path, 0, limit).decode("utf-8", "replace")

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        def read(sftp: paramiko.SFTPClient) -> bytes:
            with sftp.open(path, "rb") as f:
                f.seek(offset)
                return f.read(length)

        if offset < 0 or length < 0:
            raise ValueError("offset and length must not be negative")
        return self._sftp_call("read", path, read)

    def _stat_command(self, path: str, follow: bool) -> FileStat | None:
        """stat(1) on the host; None when the host has no `stat` command."""
        result = self.run(stat_argv(path, follow), self.cfg.command_timeout)
        if result.exit_code == 127:
            return None
        return parse_stat(result, self.name, path)

    def _stat(self, path: str, follow: bool) -> FileStat:
        found = self._stat_command(path, follow)
        if found is not None:
            return found

        # No stat(1) there: SFTP knows size, mode and whole-second mtime, but no inode.
        def via_sftp(sftp: paramiko.SFTPClient) -> FileStat:
            attrs = sftp.stat(path) if follow else sftp.lstat(path)
            return FileStat(
                size=attrs.st_size or 0,
                inode=0,
                mtime=float(attrs.st_mtime or 0),
                mode=attrs.st_mode or 0,
            )

        return self._sftp_call("stat", path, via_sftp)

    def stat(self, path: str) -> FileStat:
        return self._stat(path, follow=True)

    def lstat(self, path: str) -> FileStat:
        return self._stat(path, follow=False)

    def readlink(self, path: str) -> str:
        def readlink(sftp: paramiko.SFTPClient) -> str:
            # sftp-server answers a non-link with a bare "Failure"; say what os.readlink says.
            if not stat_module.S_ISLNK(sftp.lstat(path).st_mode or 0):
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), path)
            target = sftp.readlink(path)
            if target is None:
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), path)
            return target

        return self._sftp_call("readlink", path, readlink)

    def listdir(self, path: str) -> list[str]:
        def listdir(sftp: paramiko.SFTPClient) -> list[str]:
            try:
                return sorted(sftp.listdir(path))
            except OSError as exc:
                # opendir on a file is a bare "Failure" or "No such file" (OpenSSH's
                # sftp-server); tell it apart as os.listdir does.
                if exc.errno in (None, errno.ENOENT):
                    try:
                        mode = sftp.stat(path).st_mode or 0
                    except OSError:
                        raise exc from None
                    if not stat_module.S_ISDIR(mode):
                        raise NotADirectoryError(
                            errno.ENOTDIR, os.strerror(errno.ENOTDIR), path
                        ) from None
                raise

        return self._sftp_call("listdir", path, listdir)
