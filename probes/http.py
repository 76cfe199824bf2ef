"""HTTP probe: is the site answering on its port, with the expected status, in time?"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from probes.base import Host, Observation
from probes.durations import Duration


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = "http://{address}:80/"  # {address} and {host} are filled from the host
    expect: list[int] = Field(default_factory=lambda: [200])
    body: str | None = None  # a regular expression the body must match
    connect_timeout: Duration = 3.0
    read_timeout: Duration = 5.0
    slow: Duration = 2.0  # slower than this is `slow-responses`
    headers: dict[str, str] = Field(default_factory=dict)
    verify_tls: bool = True


def probe(host: Host, config: Config) -> Observation:
    raise NotImplementedError("being written")  # TODO(probes helper)
