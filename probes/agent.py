"""The recorder's own HTTP requests, as every probe that makes them (http, upstreams)
sends them.

They say what they are, `User-Agent: recorder/VERSION` (also sent by the lab's own
checks), so the access-log reader knows them by `accesslog.OWN_AGENT` and counts them
apart. And a connection reset before any answer is asked once more before it counts:
`nginx -t`, which the config probe runs every interval, binds and listens on the ports of
the configuration it checks when they are free, so while nginx is down a probe's
connection can land in that check's backlog for a moment and be reset when the check
exits. The second answer (connection refused) is the port's settled state.
"""

from __future__ import annotations

import time
from importlib import metadata
from typing import Any

import requests

from probes.accesslog import OWN_AGENT
from probes.base import causes

# Long enough for a `nginx -t` that was listening to have exited (it closes its
# sockets as soon as the check ends: milliseconds on a small configuration).
RESET_RETRY_DELAY = 0.2


def _version() -> str:
    try:
        return metadata.version("nginx-recorder")
    except metadata.PackageNotFoundError:  # run from a source tree without installing
        return "unknown"


USER_AGENT = OWN_AGENT.decode() + _version()


def connection_reset(exc: BaseException) -> bool:
    """Whether a failed request ended in a connection reset (ECONNRESET) anywhere in its
    chain of causes."""
    return any(isinstance(cause, ConnectionResetError) for cause in causes(exc))


def get(session: requests.Session, url: str, **kwargs: Any) -> requests.Response:
    """`session.get`, asked once more `RESET_RETRY_DELAY` later when the connection is
    reset before the response's headers (see the module's docstring); any other failure,
    and a second reset, is raised as is."""
    try:
        return session.get(url, **kwargs)
    except requests.exceptions.ConnectionError as exc:
        if not connection_reset(exc):
            raise
    time.sleep(RESET_RETRY_DELAY)
    return session.get(url, **kwargs)
