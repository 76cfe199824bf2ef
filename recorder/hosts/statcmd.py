"""stat(1) run on a remote host (SSH, docker exec): the argv and the parsing of its output.

Remote file metadata comes from the host's own `stat` because SFTP carries no inode or
device, which log tailing needs to notice rotation.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

from probes.base import CommandResult, FileStat

# %y ("2024-05-01 10:00:00.123456789 +0000") is the portable way to the fraction of a
# second that %Y drops; C locale so the error messages below can be matched.
STAT_FORMAT = "%s %i %Y %f %d %y"


def stat_argv(path: str, follow: bool) -> list[str]:
    return ["env", "LC_ALL=C", "stat", *(["-L"] if follow else []), "-c", STAT_FORMAT, "--", path]


def parse_stat(result: CommandResult, host: str, path: str) -> FileStat:
    """The FileStat of a finished `stat_argv` command; OSError subclasses on failure."""
    if result.exit_code != 0:
        # The message ends with the reason; the path earlier in it could hold anything.
        reason = result.stderr.strip()
        known: dict[str, Callable[[int, str, str], OSError]] = {
            "No such file or directory": FileNotFoundError,
            "Permission denied": PermissionError,
            "Not a directory": NotADirectoryError,
        }
        for text, error in known.items():
            if reason.endswith(text):
                code = {
                    "No such file or directory": errno.ENOENT,
                    "Permission denied": errno.EACCES,
                }.get(text, errno.ENOTDIR)
                raise error(code, os.strerror(code), path)
        raise OSError(f"{host}: stat {path}: {reason}")
    fields = result.stdout.split()
    try:
        size, inode, seconds, mode_hex, device, _day, clock = fields[:7]
        mtime = float(seconds)
        if "." in clock:
            mtime += float("0." + clock.split(".", 1)[1])
        return FileStat(
            size=int(size),
            inode=int(inode),
            mtime=mtime,
            mode=int(mode_hex, 16),
            device=int(device),
        )
    except ValueError:
        raise OSError(f"{host}: stat {path}: unexpected output {result.stdout!r}") from None
