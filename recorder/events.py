"""Events people and pipelines report: deploys (`recorder event deploy`)."""

from __future__ import annotations

import os
from datetime import datetime

from recorder.model import utcnow
from recorder.store import Store


def record_deploy(
    state_dir: str | os.PathLike[str],
    service: str,
    version: str,
    *,
    source: str = "cli",
    at: datetime | None = None,
) -> int:
    """Record a deploy of `service`; it shows in open incidents' timelines and in ranking."""
    store = Store(state_dir)
    try:
        return store.add_deploy(service, version, at or utcnow(), source)
    finally:
        store.close()
