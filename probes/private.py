"""Directories and files only this user can read, whatever the umask.

`write_private` is the one way the recorder writes a private file (postmortems, drafts,
the error-rate probe's saved position, the lab's secrets): readers see the old file or the
new one, never half of it.
"""

from __future__ import annotations

import os
import stat
import uuid


def make_private_dirs(path: str | os.PathLike[str]) -> None:
    """Create `path` and each missing parent with mode 0700 whatever the umask
    (`os.makedirs(mode=...)` gives the mode to the leaf only, and the umask still filters
    it). Directories that exist already are left as they are; a directory created here is
    set to 0700 through a descriptor opened without following a symlink."""
    missing = []
    current = os.path.abspath(os.fspath(path))
    while not os.path.lexists(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            continue  # made meanwhile by someone else: theirs, as they made it
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            if stat.S_IMODE(os.fstat(fd).st_mode) != 0o700:
                os.fchmod(fd, 0o700)
        finally:
            os.close(fd)


def write_private(
    path: str | os.PathLike[str], data: str | bytes, *, exclusive: bool = False
) -> None:
    """Write `data` (text as UTF-8) to `path` with mode 0600, atomically: a temporary file
    beside it, flushed to disk, then renamed over `path` and the directory synced. The
    parent directory must exist. `exclusive`: fail with FileExistsError rather than replace
    a file (the name is linked, which fails atomically when it exists: two writers racing
    cannot both write, and neither replaces a file written earlier)."""
    target = os.fspath(path)
    directory, name = os.path.split(target)
    tmp = os.path.join(directory, f".{name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)  # O_CREAT's mode is filtered by the umask
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            os.link(tmp, target)
        else:
            os.replace(tmp, target)
        _sync_dir(directory or ".")
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass  # renamed: nothing left behind


def _sync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot sync a directory; the rename itself is done
    finally:
        os.close(fd)
