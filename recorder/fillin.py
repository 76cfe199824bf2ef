"""The `[[FILL IN: ...]]` marker: what only a person can supply.

The runbooks put it in a task whose value nothing observed, the drafter wherever a person
must write, and `lint` and `close` refuse a document that still holds one. It lives here,
below all three, so none of them imports another for it.
"""

from __future__ import annotations

PLACEHOLDER_MARK = "[[FILL IN"


def fill_in(what: str) -> str:
    """The marker for something only a person can supply; `lint` and `close` refuse it."""
    return f"{PLACEHOLDER_MARK}: {what}]]"
