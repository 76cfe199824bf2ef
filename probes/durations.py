"""Durations in probe configs: `10s`, `1m`, `500ms`, or a bare number of seconds."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
MAX_DURATION = 7 * 86400.0


def parse_duration(value: Any) -> float:
    """`10s`, `1m`, `500ms`, `2h`, or a bare number of seconds, to seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 10s, 1m or 500ms")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"invalid duration {value!r}: expected a number with ms, s, m, h or d")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError("expected a duration such as 10s, 1m or 500ms")
    if not math.isfinite(seconds) or seconds < 0 or seconds > MAX_DURATION:
        raise ValueError(f"duration {value!r} out of range (0 to 7d)")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
