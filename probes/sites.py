"""Sites probe: is every expected site of sites-available linked in sites-enabled?"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from probes.base import Host, Observation


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    expect_enabled: list[str] = Field(default_factory=list)
    available_dir: str = "/etc/nginx/sites-available"
    enabled_dir: str = "/etc/nginx/sites-enabled"


def probe(host: Host, config: Config) -> Observation:
    raise NotImplementedError("being written")  # TODO(probes helper)
