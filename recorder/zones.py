"""The machine's time zone, by name (kept apart from the config so that commands which
read no config, such as `logscan`, do not load it)."""

from __future__ import annotations

import os
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def machine_zone() -> str:
    """The IANA name of this machine's time zone: $TZ, else what /etc/localtime links to,
    else /etc/timezone (Debian), else UTC. Names only: a zone shown to people and written
    in postmortems must be one they can look up."""
    candidates = []
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz:
        candidates.append(tz.split("/zoneinfo/", 1)[-1])
    try:
        link = os.path.realpath("/etc/localtime")
    except OSError:
        link = ""
    if "/zoneinfo/" in link:
        candidates.append(link.split("/zoneinfo/", 1)[1])
    try:
        candidates.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    except (OSError, UnicodeDecodeError):
        pass
    for name in candidates:
        if name.startswith(("posix/", "right/")):  # the same zones, other leap-second rules
            name = name.split("/", 1)[1]
        if not name:
            continue
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue
        return name
    return "UTC"
