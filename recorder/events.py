"""Events people and pipelines report: deploys (`recorder event deploy`)."""

from __future__ import annotations

import os
from datetime import datetime

from recorder.model import utcnow
from recorder.store import Store
from recorder.terminal import has_control, printable


def record_deploy(
    state_dir: str | os.PathLike[str],
    service: str,
    version: str,
    *,
    source: str = "cli",
    at: datetime | None = None,
    url: str | None = None,
    password_file: str | None = None,
) -> int:
    """Record a deploy of `service`; it shows in open incidents' timelines and in ranking.
    ValueError for a version or service that is empty or holds a newline or another
    control character (it would print as another timeline line)."""
    for what, value in (("service", service), ("version", version)):
        if not value.strip() or has_control(value):
            raise ValueError(
                f"{what} {printable(value)!r}: must be one line without control characters"
            )
    store = Store(state_dir, url=url, password_file=password_file)
    try:
        return store.add_deploy(service, version, at or utcnow(), source)
    finally:
        store.close()
