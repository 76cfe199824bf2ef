"""Text bound for a terminal: what a probe read (a file name, an nginx message, a log
line) may hold escape sequences that would rewrite the operator's screen or title bar.
Every C0/C1 control character but tab becomes a visible `\\xNN`."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` with each control character (newlines too: one value, one line) escaped."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
