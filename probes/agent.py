"""What the recorder's own requests say they are: `User-Agent: recorder/VERSION`, sent by
every probe that makes HTTP requests (http, upstreams) and by the lab's own checks, so the
access-log reader knows them by `accesslog.OWN_AGENT` and counts them apart."""

from __future__ import annotations

from importlib import metadata

from probes.accesslog import OWN_AGENT


def _version() -> str:
    try:
        return metadata.version("nginx-recorder")
    except metadata.PackageNotFoundError:  # run from a source tree without installing
        return "unknown"


USER_AGENT = OWN_AGENT.decode() + _version()
