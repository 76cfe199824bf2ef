"""Upstreams probe: on a load balancer, does every backend of its upstream blocks answer?

The backends come from the configuration nginx would load (`nginx -T`, parsed by
probes/nginxconf.py: includes, comments, quoted strings, `server` parameters), not from a
list kept by hand that drifts. Each backend is then probed directly.

Assumption: the recorder reaches the backends at the addresses the load balancer uses
(true when they are on the LB's own network, or in the lab on loopback). When it cannot
(the backends sit on a network only the LB sees), every backend shows dead: run the
recorder where it sees that network, or leave this probe off. details["vantage"] says
from where the backends were probed.

Servers marked `down` are skipped (the operator took them out). `backup` servers are
probed and reported, but carry no share of the weight: a dead backup alone does not fail
the probe. unix: sockets are listed and not probed (they live on the LB's filesystem).

When `nginx -T` refuses the configuration there are no upstreams to read, but the host
answered: that is the configuration error itself (`config-syntax`, with nginx's message),
evidence for the incident the broken config opens, not a host the recorder cannot reach.
"""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import requests
from pydantic import BaseModel, ConfigDict

from probes import agent, nginxconf
from probes.agent import USER_AGENT
from probes.base import (
    Fault,
    Host,
    HostUnreachable,
    LocalResourceError,
    Observation,
    Status,
    error_observation,
    local_resource_error,
    measured,
)
from probes.durations import Duration
from probes.facts import Facts, Subjects
from probes.nginxcli import ConfigRefused, read_tree

NAME = "upstreams"
_MAX_PARALLEL = 16


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    nginx: str = "nginx"
    conf: str = "/etc/nginx/nginx.conf"
    check: Literal["tcp", "http"] = "http"
    path: str = "/"
    timeout: Duration = 2.0
    prefix: str | None = None  # nginx -p, as in the config probe
    dump_timeout: Duration = 10.0  # for `nginx -T`


def check_backend(host: str, port: int, check: str, path: str, timeout: float) -> str | None:
    """None when the backend answers; otherwise why not. For "http" any HTTP answer
    counts (a 404 or a 500 is a live server; the error-rate probes judge answers), and so
    does a connection accepted but slow to answer: nginx waits proxy_read_timeout (60 s
    by default) for it, so users see it slow, which the http probe reports, not dead."""
    if check == "tcp":
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return None
        except OSError as exc:
            local = local_resource_error(exc)
            if local is not None:
                raise local from exc
            return _os_reason(exc)
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    session = requests.Session()
    session.trust_env = False
    session.headers["User-Agent"] = USER_AGENT  # not a client in the backend's own log
    try:
        with agent.get(
            session,
            f"http://{netloc}{path}",
            timeout=(timeout, timeout),
            allow_redirects=False,
            stream=True,
        ):
            return None
    except requests.exceptions.ConnectTimeout:
        return f"no connection within {timeout:g}s"
    except requests.exceptions.ReadTimeout:
        return None
    except requests.exceptions.ConnectionError as exc:
        local = local_resource_error(exc)
        if local is not None:
            raise local from exc
        return "connection refused" if "refused" in str(exc).lower() else "connection failed"
    except requests.exceptions.RequestException as exc:
        return type(exc).__name__
    finally:
        session.close()


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "no connection (timeout)"
    if isinstance(exc, socket.gaierror):
        return f"name does not resolve ({exc.strerror})"
    return exc.strerror or str(exc)


def read_upstreams(host: Host, config: Config) -> list[nginxconf.Upstream]:
    """The upstream blocks of the configuration nginx would load on the host. Without a
    configuration nginx accepts there are none to read (ConfigRefused); the config probe
    reports the syntax error itself."""
    tree = read_tree(host, config.nginx, config.conf, config.prefix, config.dump_timeout)
    return nginxconf.upstreams(tree)


def _check(host: Host, config: Config) -> Observation:
    try:
        blocks = read_upstreams(host, config)
    except ConfigRefused as exc:
        return Observation(
            host=host.name,
            probe=NAME,
            status=Status.FAIL,
            fault=Fault.CONFIG_SYNTAX,
            summary=f"cannot read the upstreams: nginx -T refuses the configuration: {exc.why}",
            details={"reason": "config-refused", "errors": exc.errors},
        )
    except nginxconf.ConfigParseError as exc:
        return error_observation(host, NAME, ValueError(f"cannot parse nginx -T output: {exc}"))
    except (HostUnreachable, OSError) as exc:
        return error_observation(host, NAME, local_resource_error(exc) or exc)
    if not blocks:
        return Observation(
            host=host.name,
            probe=NAME,
            status=Status.OK,
            summary="no upstream blocks in the configuration",
            details={"upstreams": [], "dead": [], "dead_weight_share": 0.0},
        )

    targets = sorted(
        {
            (s.host, s.port)
            for u in blocks
            for s in u.servers
            if not s.down and not s.unix and s.host
        }
    )
    try:
        with ThreadPoolExecutor(max_workers=min(_MAX_PARALLEL, max(1, len(targets)))) as pool:
            check: Literal["tcp", "http"] = config.check
            reasons = dict(
                zip(
                    targets,
                    pool.map(
                        lambda t: check_backend(t[0], t[1], check, config.path, config.timeout),
                        targets,
                    ),
                    strict=True,
                )
            )
    except LocalResourceError as exc:
        return error_observation(host, NAME, exc)

    upstream_details: list[dict[str, Any]] = []
    dead: list[dict[str, Any]] = []
    dead_backups: list[str] = []
    worst_share = 0.0
    worst: tuple[str, list[str], float] | None = None
    worst_subjects = Subjects()
    for u in blocks:
        servers: list[dict[str, Any]] = []
        live_weight = total_weight = dead_weight = 0
        dead_names: list[str] = []
        dead_addresses: list[str] = []
        for s in u.servers:
            entry: dict[str, Any] = {
                "address": s.address,
                "label": s.label or None,
                "weight": s.weight,
                "backup": s.backup,
                "down": s.down,
                "alive": None,
                "error": None,
                "where": f"{s.file}:{s.line}",
            }
            if s.down:
                entry["error"] = "marked down in the configuration (not probed)"
            elif s.unix:
                entry["error"] = "unix socket on the load balancer (not probed)"
            else:
                reason = reasons[(s.host, s.port)]
                entry["alive"] = reason is None
                entry["error"] = reason
                named = f"{s.label} {s.address}" if s.label else s.address
                if not s.backup:
                    total_weight += s.weight
                    if reason is None:
                        live_weight += s.weight
                    else:
                        dead_weight += s.weight
                        dead_names.append(named)
                        dead_addresses.append(s.address)
                        dead.append({"upstream": u.name, "address": s.address, "error": reason})
                elif reason is not None:
                    dead_backups.append(named)
            servers.append(entry)
        share = dead_weight / total_weight if total_weight else 0.0
        upstream_details.append(
            {
                "name": u.name,
                "where": f"{u.file}:{u.line}",
                "servers": servers,
                "dead_weight_share": round(share, 4),
            }
        )
        if dead_names and (worst is None or share > worst_share):
            worst_share, worst = share, (u.name, dead_names, share)
            worst_subjects = Subjects(
                file=(u.file,) if u.file else (), line=u.line, backend=tuple(dead_addresses)
            )

    details: dict[str, Any] = {
        "upstreams": upstream_details,
        "dead": dead,
        "dead_backups": dead_backups,
        "dead_weight_share": round(worst_share, 4),
        "check": config.check,
        "vantage": "the recorder (backends probed directly from where the recorder runs)",
    }
    probed = sum(1 for u in upstream_details for s in u["servers"] if s["alive"] is not None)
    if worst is not None:
        name, names, share = worst
        verb = "does not answer" if len(names) == 1 else "do not answer"
        summary = f"upstream {name}: {', '.join(names)} {verb} ({share:.0%} of weight)"
        others = len({d["upstream"] for d in dead}) - 1
        if others > 0:
            summary += f"; dead backends in {others} more upstream(s)"
        return Observation(
            host=host.name,
            probe=NAME,
            status=Status.FAIL,
            fault=Fault.UPSTREAM_DOWN,
            summary=summary,
            details=details,
            facts=Facts(subjects=worst_subjects, dead_weight=round(worst_share, 4)),
        )
    summary = f"all {probed} probed backend(s) of {len(blocks)} upstream(s) answer"
    if dead_backups:
        summary += f"; backup {', '.join(dead_backups)} does not"
    return Observation(
        host=host.name, probe=NAME, status=Status.OK, summary=summary, details=details
    )


probe = measured(_check)
