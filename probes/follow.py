"""Following a log file through a `Host`: where reading resumes, rotation, truncation and
the saved position.

Each `Follower.advance` reads only the bytes appended since the previous one (through the
host: `stat`, then `read_range` in 4 MiB pieces) and hands complete lines to a `Sink`,
which parses them (the error-rate probe's window and counters). What is remembered of the
file is a `Position`: the byte offset, the file's identity (inode, device and a hash of
its first 64 bytes), the rotations seen and the bytes skipped. The caller owns it and can
save it under `state_dir` (`save_state`: JSON, mode 0600, written atomically) so a
restarted recorder continues where it stopped.

Where reading starts:
- first sight of a file (nothing saved): at most the last 8 MiB, from the first line
  start in them: recent history, never gigabytes;
- after a restart (offset saved, same file, the caller's window empty): counting resumes
  at the saved offset; the bytes just before it (at most 8 MiB) are read again without
  being counted, so the caller can rebuild what it keeps in memory;
- more than `max_catchup` bytes behind (the recorder was down for long): the excess is
  skipped and added to `skipped_bytes`.

Rotation:
- rename and create (logrotate's default): the inode changed. The rest of the old file is
  read from `LOG.1` when that is still the same inode, then the new file from 0;
- copytruncate: same inode but smaller than the offset (or its first bytes changed): the
  lines written between the last read and the copy are read from `LOG.1` when it is a copy
  of the file, then the file again from 0;
- a missing file raises FileNotFoundError; the next call tries again. Each rotation is
  counted in `rotations`.

A partial last line (nginx mid-write) is left for the next call: the offset stops at the
start of the line. A "line" longer than MAX_LINE is reported once to the sink and the rest
of it, up to its newline, dropped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Protocol

from probes.accesslog import MAX_LINE, split_complete
from probes.base import Host
from probes.private import make_private_dirs, write_private

READ_CHUNK = 4 << 20  # bytes per read_range; at most MAX_LINE (a line within one read)
FIRST_SIGHT = 8 << 20  # how far back a file seen for the first time is read
HEAD_BYTES = 64  # the file identity hashes this many first bytes
STATE_VERSION = 1


@dataclass
class Position:
    """Where one file is read, and what identifies it."""

    offset: int = 0
    inode: int = 0
    device: int = 0
    head: str = ""  # sha1 of the first head_len bytes
    head_len: int = 0
    rotations: int = 0
    skipped_bytes: int = 0
    in_long_line: bool = False  # the offset is inside an over-long line being dropped

    def position(self) -> dict[str, Any]:
        """The saved form (one part of the caller's saved state)."""
        return {
            "offset": self.offset,
            "inode": self.inode,
            "device": self.device,
            "head": self.head,
            "head_len": self.head_len,
            "rotations": self.rotations,
            "skipped_bytes": self.skipped_bytes,
            "in_long_line": self.in_long_line,
        }

    def restore_position(self, data: dict[str, Any]) -> None:
        """From `position()` output; a damaged value is left at its default."""
        for name in ("offset", "inode", "device", "head_len", "rotations", "skipped_bytes"):
            value = data.get(name)
            if isinstance(value, int) and value >= 0:
                setattr(self, name, value)
        self.head = str(data.get("head") or "")
        self.in_long_line = data.get("in_long_line") is True


class Sink(Protocol):
    """What the lines read go to."""

    def first_sight(self) -> None:
        """Called before reading a file never seen (nothing saved): recent history only."""

    def add(self, chunk: bytes, *, counted: bool) -> None:
        """Complete lines, each after a newline (`split_complete`'s chunk). `counted`:
        new lines, not lines read again to rebuild a window after a restart."""

    def long_line(self, *, counted: bool) -> None:
        """A line over MAX_LINE, dropped."""


class Follower:
    """One call's reading of one file: `advance` brings `position` up to date."""

    def __init__(
        self, host: Host, path: str, position: Position, sink: Sink, max_catchup: int
    ) -> None:
        self.host, self.path, self.position, self.sink = host, path, position, sink
        self.max_catchup = max_catchup
        self.bytes_read = 0

    def head_of(self, path: str, size: int) -> tuple[str, int]:
        n = min(HEAD_BYTES, size)
        data = self.host.read_range(path, 0, n) if n else b""
        return hashlib.sha1(data).hexdigest(), len(data)

    def read(
        self, path: str, start: int, end: int, *, counted: bool, at_line_start: bool, final: bool
    ) -> int:
        """Read [start, end) of `path` into the sink. Returns the offset just past the last
        complete line; with `final` (a closed file) a last line without its newline counts
        too."""
        pos, pending = start, b""
        consumed = start  # file offset of the first byte not yet parsed
        skip = not at_line_start
        while pos < end:
            data = self.host.read_range(path, pos, min(READ_CHUNK, end - pos))
            if not data:
                break  # the file shrank while we read: the next call sees why
            self.bytes_read += len(data)
            pos += len(data)
            if skip:
                cut = data.find(b"\n")
                consumed += len(data) if cut < 0 else cut + 1
                if cut < 0:
                    continue
                data, skip = data[cut + 1 :], False
            if pending:
                cut = data.find(b"\n")
                if cut >= 0 and len(pending) + cut > MAX_LINE:
                    # The line begun in earlier reads ends here, past MAX_LINE: once as
                    # malformed, as below. (A line within one read is at most READ_CHUNK.)
                    self.sink.long_line(counted=counted)
                    consumed += len(pending) + cut + 1
                    pending, data = b"", data[cut + 1 :]
            chunk, pending = split_complete(pending, data)
            if chunk:
                self.sink.add(chunk, counted=counted)
                consumed += len(chunk)  # its leading newline stands for the last one
            if len(pending) > MAX_LINE:
                # A "line" over MAX_LINE is not something nginx wrote: report it once and
                # drop the rest of it, up to its newline.
                self.sink.long_line(counted=counted)
                consumed += len(pending)
                pending, skip = b"", True
        if final and pending:
            self.sink.add(b"\n" + pending, counted=counted)
            consumed += len(pending)
        if counted and not final:
            self.position.in_long_line = skip
        return consumed

    def _finish_copy(self) -> None:
        """After a copytruncate: the lines written between our last read and the copy are
        in LOG.1, a copy of what we were reading (it starts with the same bytes and is at
        least as long as our offset). Read them from there. (What nginx writes between the
        copy and the truncation is lost to everyone: that is copytruncate's own window.)"""
        pos = self.position
        old_path = self.path + ".1"
        try:
            old = self.host.stat(old_path)
        except FileNotFoundError:
            return
        if (old.inode, old.device) == (pos.inode, pos.device) or old.size <= pos.offset:
            return
        head, n = self.head_of(old_path, min(old.size, pos.head_len))
        if n != pos.head_len or head != pos.head:
            return  # not a copy of our file (an older rotation, or another log)
        end = min(old.size, pos.offset + self.max_catchup)
        pos.skipped_bytes += old.size - end
        self.read(
            old_path, pos.offset, end, counted=True, at_line_start=not pos.in_long_line, final=True
        )

    def advance(self, *, rebuilding: bool) -> None:
        """Bring the position up to date with the file. `rebuilding`: the caller keeps
        nothing in memory (first sight or a restart), so after a restart the bytes before
        the saved offset are read again, uncounted."""
        pos, log = self.position, self.path
        st = self.host.stat(log)
        known = pos.head_len > 0  # we have read this file before (now or before a restart)
        restarted_at: int | None = None
        if known and (st.inode, st.device) == (pos.inode, pos.device):
            truncated = st.size < pos.offset
            if not truncated:
                head, n = self.head_of(log, min(st.size, pos.head_len))
                truncated = n < pos.head_len or head != pos.head
            if truncated:  # copytruncate, or truncated and written again past our offset
                pos.rotations += 1
                self._finish_copy()
                pos.offset, pos.head_len, pos.in_long_line = 0, 0, False
            elif rebuilding:
                restarted_at = pos.offset
        elif known:
            # Renamed away and a new file created: finish the old one if it is LOG.1.
            pos.rotations += 1
            try:
                old = self.host.stat(log + ".1")
            except FileNotFoundError:
                old = None
            if old is not None and (old.inode, old.device) == (pos.inode, pos.device):
                end = min(old.size, pos.offset + self.max_catchup)
                pos.skipped_bytes += old.size - end
                if end > pos.offset:
                    self.read(
                        log + ".1",
                        pos.offset,
                        end,
                        counted=True,
                        at_line_start=not pos.in_long_line,
                        final=True,
                    )
            pos.offset, pos.head_len, pos.in_long_line = 0, 0, False
        else:
            # First sight: recent history only, from the first line start in the last bytes.
            pos.offset = max(0, st.size - FIRST_SIGHT)
            self.sink.first_sight()
        pos.inode, pos.device = st.inode, st.device

        at_line_start = not (not known and pos.offset > 0) and not pos.in_long_line
        count_from = pos.offset
        if st.size - count_from > self.max_catchup:
            skip_to = st.size - self.max_catchup
            pos.skipped_bytes += skip_to - count_from
            count_from, at_line_start, restarted_at = skip_to, False, None
        if restarted_at is not None and restarted_at > 0:
            # Restarted: rebuild the window from the bytes just before the saved offset,
            # without counting them again.
            start = max(0, restarted_at - FIRST_SIGHT)
            self.read(
                log, start, restarted_at, counted=False, at_line_start=start == 0, final=False
            )
        pos.offset = self.read(
            log, count_from, st.size, counted=True, at_line_start=at_line_start, final=False
        )
        if pos.head_len < HEAD_BYTES and st.size > pos.head_len:
            pos.head, pos.head_len = self.head_of(log, st.size)


# ---- the saved position -----------------------------------------------------------------


def state_path(state_dir: str, host: str, log: str, kind: str = "error_rate") -> str:
    """Where the state of `log` on `host` is saved, under `state_dir/kind/`."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", host)[:64]
    digest = hashlib.sha1(f"{host}\0{log}".encode()).hexdigest()[:16]
    return os.path.join(state_dir, kind, f"{safe}-{digest}.json")


def load_state(path: str) -> dict[str, Any] | None:
    """A saved state, or None: missing, unreadable or damaged (start over rather than
    fail the probe)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        return None
    return data


def save_state(path: str, data: dict[str, Any]) -> None:
    """Write atomically (temporary file, then rename) and readable by the owner only."""
    make_private_dirs(os.path.dirname(path))
    write_private(path, json.dumps(data))
