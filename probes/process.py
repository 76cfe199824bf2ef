"""Process probe: is the nginx master process alive?"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from probes.base import Host, Observation


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pid_file: str = "/run/nginx.pid"


def probe(host: Host, config: Config) -> Observation:
    raise NotImplementedError("being written")  # TODO(probes helper)
