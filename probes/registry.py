"""The probes, listed here by hand (no discovery by import side effects).

Kept out of `probes/__init__.py` so that importing one sensor module, such as the log
reader `recorder logscan` uses, does not import every probe and their libraries
(pydantic, requests): that was half of a short command's run time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from probes import config, error_rate, http, process, sites, upstreams
from probes.base import Host, Observation

ProbeFn = Callable[[Host, Any], Observation]

PROBES: dict[str, ProbeFn] = {
    "http": http.probe,
    "sites": sites.probe,
    "config": config.probe,
    "process": process.probe,
    "error_rate": error_rate.probe,
    "upstreams": upstreams.probe,
}

# Probes that remember what they read between calls: how to make the state one job owns,
# and the probe taking it as its third argument. The scheduler gives every job of such a
# probe its own state and keeps it for the job's life (a reload carries it over).
StatefulProbeFn = Callable[[Host, Any, Any], Observation]
STATEFUL: dict[str, tuple[Callable[[], Any], StatefulProbeFn]] = {
    "error_rate": (error_rate.LogState, error_rate.probe),
}

CONFIGS: dict[str, type[BaseModel]] = {
    "http": http.Config,
    "sites": sites.Config,
    "config": config.Config,
    "process": process.Config,
    "error_rate": error_rate.Config,
    "upstreams": upstreams.Config,
}
