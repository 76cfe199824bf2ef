"""Config probe: does `nginx -t` accept the configuration?"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from probes.base import Host, Observation
from probes.durations import Duration


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    nginx: str = "nginx"  # the binary on the host
    conf: str = "/etc/nginx/nginx.conf"
    timeout: Duration = 10.0


def probe(host: Host, config: Config) -> Observation:
    raise NotImplementedError("being written")  # TODO(probes helper)
