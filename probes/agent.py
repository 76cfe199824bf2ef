"""The recorder's own HTTP requests, as every probe that makes them (http, upstreams)
sends them.

They say what they are, `User-Agent: recorder/VERSION` (also sent by the lab's own
checks), so the access-log reader knows them by `accesslog.OWN_AGENT` and counts them
apart. And a connection reset or closed before any answer, quickly, is asked once more
before it counts: `nginx -t`, which the config probe runs every interval, binds and
listens on the ports of the configuration it checks when they are free, so while nginx is
down a probe's connection can land in that check's backlog for a moment and be reset when
the check exits (or, when the reset comes before the request is sent, read as closed
without an answer). The second answer (connection refused) is the port's settled state.
A server that closes every connection unanswered (nginx's `return 444`) is asked twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib import metadata
from typing import Any

import requests

from probes.accesslog import OWN_AGENT
from probes.base import causes

# Long enough for a `nginx -t` that was listening to have exited (it closes its
# sockets as soon as the check ends: milliseconds on a small configuration).
RESET_RETRY_DELAY = 0.2
# Only a failure this quick is asked again: the second attempt gets the whole timeouts
# again, and a late one could then outlast the probe's job timeout.
RESET_RETRY_WITHIN = 1.0


def _version() -> str:
    try:
        return metadata.version("nginx-recorder")
    except metadata.PackageNotFoundError:  # run from a source tree without installing
        return "unknown"


USER_AGENT = OWN_AGENT.decode() + _version()


def connection_reset(exc: BaseException) -> bool:
    """Whether a failed request ended in a connection reset anywhere in its chain of
    causes: ECONNRESET, or closed without an answer (http.client's RemoteDisconnected is
    a ConnectionResetError; urllib3 reports a reset met while sending the request so)."""
    return any(isinstance(cause, ConnectionResetError) for cause in causes(exc))


def get(
    session: requests.Session,
    url: str,
    retrying: Callable[[], None] = lambda: None,
    **kwargs: Any,
) -> requests.Response:
    """`session.get`, asked once more `RESET_RETRY_DELAY` later when the connection was
    reset or closed before the response's headers within `RESET_RETRY_WITHIN` (see the
    module's docstring); `retrying` is called just before the second attempt (the caller's
    timings start again). Any other failure, and a second one, is raised as is."""
    started = time.monotonic()
    try:
        return session.get(url, **kwargs)
    except requests.exceptions.ConnectionError as exc:
        if not connection_reset(exc) or time.monotonic() - started > RESET_RETRY_WITHIN:
            raise
    time.sleep(RESET_RETRY_DELAY)
    retrying()
    return session.get(url, **kwargs)
