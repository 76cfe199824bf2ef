"""Upstreams probe: on a load balancer, does every backend of its upstream blocks answer?"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from probes.base import Host, Observation
from probes.durations import Duration


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    nginx: str = "nginx"
    conf: str = "/etc/nginx/nginx.conf"
    check: Literal["tcp", "http"] = "http"
    path: str = "/"
    timeout: Duration = 2.0


def probe(host: Host, config: Config) -> Observation:
    raise NotImplementedError("being written")  # TODO(probes helper)
