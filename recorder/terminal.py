"""Text bound for a terminal: what a probe read (a file name, an nginx message, a log
line) may hold escape sequences that would rewrite the operator's screen or title bar.
Every C0/C1 control character but tab becomes a visible `\\xNN`."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` with each control character (newlines too: one value, one line) escaped."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


# Control characters but the whitespace a line may hold (tab): what folds to a space.
_CONTROL_OR_BREAK = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def has_control(text: str) -> bool:
    """True when `text` holds a control character other than tab (newlines included)."""
    return _CONTROL_OR_BREAK.search(text) is not None


def fold_lines(text: str) -> str:
    """`text` as one line: each newline (with the spaces around it) one space, stripped.
    Other control characters are kept: the caller refuses them (`has_control`)."""
    return re.sub(r"[ \t]*(?:(?:\r\n|[\r\n\v\f\u2028\u2029])[ \t]*)+", " ", text).strip()


def json_safe(text: str) -> str:
    """JSON text with DEL and the C1 controls (which json.dumps leaves raw; U+009B is CSI
    to many terminals) escaped as \\u00NN."""
    return re.sub(r"[\x7f-\x9f]", lambda m: f"\\u{ord(m.group()):04x}", text)
