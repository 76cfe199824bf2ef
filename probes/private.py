"""Directories only this user can read, whatever the umask."""

from __future__ import annotations

import os
import stat


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
