"""What people read of an observation beyond its summary: the one place above `probes/`
that reads a probe's `details`.

`details` is free-form and for display only (and for `--json` readers). The engine, the
metrics and the postmortem drafter read `Observation.facts` (probes/facts.py) instead;
tests/test_layers.py fails on any other read of `details` under recorder/.
"""

from __future__ import annotations

from probes.base import Observation


def shown(obs: Observation, key: str) -> str | None:
    """One display detail of `obs` as text, or None when the probe gave none."""
    value = obs.details.get(key)
    return None if value is None else str(value)
