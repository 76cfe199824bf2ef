"""Error-rate probe: 5xx share and affected clients from the access log, tailed."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from probes.base import Host, Observation
from probes.durations import Duration


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    log: str = "/var/log/nginx/access.log"
    window: Duration = 60.0
    threshold: float = Field(0.05, ge=0.0, le=1.0)  # 5xx share above this fails
    min_requests: int = Field(10, ge=1)  # fewer requests in the window never fail
    log_format: str | None = None  # an nginx log_format string; None is "combined"
    capacity_factor: float = Field(3.0, gt=1.0)  # rate above factor x baseline is capacity
    state_dir: str | None = None  # set by the engine: where offsets survive restarts


def probe(host: Host, config: Config) -> Observation:
    raise NotImplementedError("being written")  # TODO(probes helper)
