"""Every fault the lab can inject, defined once for both backends.

A fault is written against `NodeOps`, the few things one lab host must do (read and
write a file, move and link files, test, reload, start and stop nginx, all by the host's
own paths). The local backend implements them on this machine under the host's
directory; the docker backend implements them with `docker exec` through the recorder's
docker host type. So `missing-symlink` is the same code whether the link lives in
`./lab/lb-01/etc/nginx/sites-enabled/` or in a container's `/etc/nginx/sites-enabled/`.

Each injection returns its truth (what was done, where, since when, and the fault kind
the recorder should name), which the lab keeps in its state until the fault is fixed.
What a user sees for each is written next to its definition (`FaultDef.user_sees`) and
shown by `recorder lab break --help` and `fault_table()`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from probes.base import CommandResult, Fault
from recorder.lab import templates as t
from recorder.lab.state import LabError, now_iso


class NodeOps(Protocol):
    """One lab host, by its own paths (`/etc/nginx/...`). Errors raise LabError."""

    name: str
    role: str

    def read_text(self, path: str) -> str: ...

    def write_text(self, path: str, text: str) -> None:
        """Replace the file atomically (a reader never sees half of it)."""
        ...

    def exists(self, path: str) -> bool:
        """Whether the path resolves (a dangling link does not)."""
        ...

    def is_link(self, path: str) -> bool: ...

    def remove(self, path: str) -> None:
        """Remove a file or link; a missing one is fine."""
        ...

    def symlink(self, target: str, link: str) -> None:
        """Point `link` at `target` (both host paths), replacing what was there."""
        ...

    def move(self, src: str, dst: str) -> None: ...

    def nginx_test(self) -> CommandResult:
        """`nginx -t` on the host's configuration."""
        ...

    def nginx_running(self) -> bool: ...

    def nginx_start(self) -> CommandResult:
        """Start nginx; returns once it runs, or the failed command's result."""
        ...

    def nginx_stop(self) -> None:
        """Stop nginx (TERM to the master) and wait until it is gone."""
        ...

    def nginx_signal_reload(self) -> None:
        """SIGHUP to the master: it re-reads the configuration if it can."""
        ...


class LabHooks(Protocol):
    """What faults need from the lab beyond one host."""

    def record_deploy(self, service: str, version: str) -> None: ...

    def start_load(self, rps: float, seconds: float, clients: int) -> dict[str, Any]: ...

    def stop_load(self, truth: Mapping[str, Any]) -> None: ...


@dataclass
class FaultContext:
    ops: NodeOps
    hooks: LabHooks
    site: str
    params: dict[str, Any]
    others: list[dict[str, Any]] = field(default_factory=list)  # other active faults, this host


Inject = Callable[[FaultContext], dict[str, Any]]
Undo = Callable[[FaultContext, dict[str, Any]], None]


@dataclass(frozen=True)
class FaultDef:
    name: str
    kind: Fault  # what the recorder should call it (probes.base.Fault)
    default_host: str
    roles: tuple[str, ...]  # host roles it applies to
    # Faults on one host that touch the same thing exclude each other.
    resource: str
    summary: str
    user_sees: str
    inject: Inject
    undo: Undo
    params: Mapping[str, float] = field(default_factory=dict)  # accepted params, defaults
    closes_port: bool = False  # the host's port stops accepting once it takes effect


# ---- shared steps ------------------------------------------------------------------


def _first_line(result: CommandResult) -> str:
    text = (result.stderr or result.stdout).strip().splitlines()
    errors = [line for line in text if "[emerg]" in line or "failed" in line]
    return (errors or text or [f"exit {result.exit_code}"])[0]


def reload(ops: NodeOps) -> tuple[bool, str]:
    """What `systemctl reload nginx` does: test the configuration, then signal. A config
    that does not pass `nginx -t` is refused and the running nginx keeps the old one."""
    test = ops.nginx_test()
    if test.exit_code != 0:
        return False, f"reload refused: nginx -t failed: {_first_line(test)}"
    if not ops.nginx_running():
        return False, "not reloaded: nginx is not running"
    ops.nginx_signal_reload()
    return True, "reloaded"


PROCESS_FAULTS = ("nginx-down", "upstream-down")


def bring_back(ctx: FaultContext) -> None:
    """After an undo: nginx runs on the restored config (unless another active fault
    keeps it stopped on purpose)."""
    if any(f["fault"] in PROCESS_FAULTS for f in ctx.others):
        return
    ops = ctx.ops
    if ops.nginx_running():
        ok, message = reload(ops)
        if not ok:
            raise LabError(f"{ops.name}: {message}")
        return
    started = ops.nginx_start()
    if started.exit_code != 0 or not ops.nginx_running():
        raise LabError(f"{ops.name}: nginx does not start: {_first_line(started)}")


def _backup(ctx: FaultContext, fault: str) -> str:
    return f"{t.BACKUP_DIR}/{fault}/{ctx.site}"


# ---- sites -------------------------------------------------------------------------


def _missing_symlink(ctx: FaultContext) -> dict[str, Any]:
    link = t.site_enabled(ctx.site)
    ctx.ops.remove(link)
    ok, message = reload(ctx.ops)
    return {"link": link, "reload": message}


def _restore_symlink(ctx: FaultContext, truth: dict[str, Any]) -> None:
    ctx.ops.symlink(t.site_available(ctx.site), t.site_enabled(ctx.site))
    bring_back(ctx)


def _dangling_symlink(ctx: FaultContext) -> dict[str, Any]:
    target = t.site_available(ctx.site)
    link = t.site_enabled(ctx.site)
    if not ctx.ops.is_link(link):
        ctx.ops.symlink(target, link)
    ctx.ops.move(target, _backup(ctx, "dangling-symlink"))
    ok, message = reload(ctx.ops)
    return {"link": link, "missing_target": target, "reload": message}


def _restore_target(ctx: FaultContext, truth: dict[str, Any]) -> None:
    target = t.site_available(ctx.site)
    backup = _backup(ctx, "dangling-symlink")
    if not ctx.ops.exists(target) and ctx.ops.exists(backup):
        ctx.ops.move(backup, target)
    ctx.ops.symlink(target, t.site_enabled(ctx.site))
    bring_back(ctx)


def _config_syntax(ctx: FaultContext) -> dict[str, Any]:
    path = t.site_available(ctx.site)
    original = ctx.ops.read_text(path)
    ctx.ops.write_text(_backup(ctx, "config-syntax"), original)
    broken, line = t.break_syntax(original)
    ctx.ops.write_text(path, broken)
    ok, message = reload(ctx.ops)
    return {"file": path, "line": line, "reload": message}


def _restore_config(ctx: FaultContext, truth: dict[str, Any]) -> None:
    backup = _backup(ctx, "config-syntax")
    if ctx.ops.exists(backup):
        ctx.ops.move(backup, t.site_available(ctx.site))
    bring_back(ctx)


# ---- processes ---------------------------------------------------------------------


def _stop_nginx(ctx: FaultContext) -> dict[str, Any]:
    ctx.ops.nginx_stop()
    return {}


def _start_nginx(ctx: FaultContext, truth: dict[str, Any]) -> None:
    if ctx.ops.nginx_running():
        return
    started = ctx.ops.nginx_start()
    if started.exit_code != 0 or not ctx.ops.nginx_running():
        blockers = [f["fault"] for f in ctx.others]
        why = f" ({', '.join(blockers)} still active here: fix it first)" if blockers else ""
        raise LabError(f"{ctx.ops.name}: nginx does not start: {_first_line(started)}{why}")


# ---- the application ---------------------------------------------------------------


def _app_faults(ops: NodeOps) -> dict[str, Any]:
    if not ops.exists(t.APP_FAULTS):
        return {}
    try:
        data = json.loads(ops.read_text(t.APP_FAULTS))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _set_app_fault(ops: NodeOps, name: str, spec: dict[str, Any] | None) -> None:
    faults = _app_faults(ops)
    if spec is None:
        faults.pop(name, None)
    else:
        faults[name] = spec
    ops.write_text(t.APP_FAULTS, json.dumps(faults, sort_keys=True) + "\n")


def _backend_5xx(ctx: FaultContext) -> dict[str, Any]:
    rate = float(ctx.params["rate"])
    _set_app_fault(ctx.ops, "backend-5xx", {"error_rate": rate})
    return {"rate": rate, "by": "client address (X-Real-IP), hashed"}


def _bad_deploy(ctx: FaultContext) -> dict[str, Any]:
    rate = float(ctx.params["rate"])
    version = str(ctx.params.get("version") or f"lab-{datetime.now(UTC).strftime('%Y%m%d%H%M%S')}")
    ctx.hooks.record_deploy(t.SERVICE, version)
    deployed_at = now_iso()
    _set_app_fault(ctx.ops, "bad-deploy", {"error_rate": rate})
    return {"rate": rate, "service": t.SERVICE, "version": version, "deployed_at": deployed_at}


def _slow_backend(ctx: FaultContext) -> dict[str, Any]:
    delay, rate = float(ctx.params["delay"]), float(ctx.params["rate"])
    _set_app_fault(ctx.ops, "slow-backend", {"delay": delay, "rate": rate})
    return {"delay": delay, "rate": rate}


def _clear_app(name: str) -> Undo:
    def undo(ctx: FaultContext, truth: dict[str, Any]) -> None:
        _set_app_fault(ctx.ops, name, None)

    return undo


# ---- load --------------------------------------------------------------------------


def _traffic_spike(ctx: FaultContext) -> dict[str, Any]:
    rps, seconds = float(ctx.params["rps"]), float(ctx.params["seconds"])
    return ctx.hooks.start_load(rps, seconds, int(ctx.params["clients"]))


def _end_spike(ctx: FaultContext, truth: dict[str, Any]) -> None:
    ctx.hooks.stop_load(truth)


# ---- the registry ------------------------------------------------------------------

FAULTS: dict[str, FaultDef] = {
    f.name: f
    for f in (
        FaultDef(
            name="missing-symlink",
            kind=Fault.MISSING_SYMLINK,
            default_host=t.LB,
            roles=("lb", "web"),
            resource="site",
            summary="remove the site's link from sites-enabled and reload (a bad deploy)",
            user_sees=(
                "connection refused on the host's port: with its only site gone, nginx "
                "stops listening there after the reload (nginx -t still passes)"
            ),
            inject=_missing_symlink,
            undo=_restore_symlink,
            closes_port=True,
        ),
        FaultDef(
            name="dangling-symlink",
            kind=Fault.DANGLING_SYMLINK,
            default_host=t.LB,
            roles=("lb", "web"),
            resource="site",
            summary="move the site file away so its link in sites-enabled dangles",
            user_sees=(
                "nothing yet: nginx -t fails (open() ... failed (2: No such file)), the "
                "reload is refused and the old config keeps serving until a restart"
            ),
            inject=_dangling_symlink,
            undo=_restore_target,
        ),
        FaultDef(
            name="config-syntax",
            kind=Fault.CONFIG_SYNTAX,
            default_host=t.LB,
            roles=("lb", "web"),
            resource="site",
            summary="drop the ';' after proxy_pass in the site file and try to reload",
            user_sees=(
                "nothing yet: nginx -t fails ([emerg] invalid number of arguments), the "
                "reload is refused, the old config serves; a restart then fails"
            ),
            inject=_config_syntax,
            undo=_restore_config,
        ),
        FaultDef(
            name="nginx-down",
            kind=Fault.NGINX_DOWN,
            default_host=t.LB,
            roles=("lb", "web"),
            resource="process",
            summary="stop nginx on the host (TERM to the master)",
            user_sees="connection refused on the host's port; no pid file, no master process",
            inject=_stop_nginx,
            undo=_start_nginx,
            closes_port=True,
        ),
        FaultDef(
            name="upstream-down",
            kind=Fault.UPSTREAM_DOWN,
            default_host="web-02",
            roles=("web",),
            resource="process",
            summary="stop a backend's nginx: its port closes behind the load balancer",
            user_sees=(
                "mostly nothing: lb-01 retries the other backend, so users get 200; its "
                "error.log shows connect() failed (111: Connection refused) to the backend. "
                "After the fix lb-01 sends it traffic again within 10 s (fail_timeout)"
            ),
            inject=_stop_nginx,
            undo=_start_nginx,
            closes_port=True,
        ),
        FaultDef(
            name="backend-5xx",
            kind=Fault.HTTP_5XX,
            default_host="web-01",
            roles=("web",),
            resource="app-errors",
            summary="the host's app answers 500 to a share RATE of clients (by address)",
            user_sees=(
                "HTTP 500 for the clients whose address hashes below RATE, on the requests "
                "lb-01 sends to this host; other clients never see an error"
            ),
            inject=_backend_5xx,
            undo=_clear_app("backend-5xx"),
            params={"rate": 0.3},
        ),
        FaultDef(
            name="bad-deploy",
            kind=Fault.BAD_DEPLOY,
            default_host="web-01",
            roles=("web",),
            resource="app-errors",
            summary="record a deploy event, then the app fails like backend-5xx",
            user_sees=(
                "as backend-5xx, right after a deploy event of service web recorded with "
                "source lab; fixing it is the rollback"
            ),
            inject=_bad_deploy,
            undo=_clear_app("bad-deploy"),
            params={"rate": 0.3},
        ),
        FaultDef(
            name="slow-backend",
            kind=Fault.SLOW_RESPONSES,
            default_host="web-01",
            roles=("web",),
            resource="app-latency",
            summary="the host's app waits DELAY seconds before answering (RATE of clients)",
            user_sees="responses from this host take DELAY seconds longer (200, but slow)",
            inject=_slow_backend,
            undo=_clear_app("slow-backend"),
            params={"delay": 3.0, "rate": 1.0},
        ),
        FaultDef(
            name="traffic-spike",
            kind=Fault.CAPACITY,
            default_host=t.LB,
            roles=("lb",),
            resource="load",
            summary=(
                "a background burst of RPS requests/s for SECONDS from 50 extra clients, "
                f"far above lb-01's capacity ({t.CAPACITY_RPS} r/s, burst {t.CAPACITY_BURST})"
            ),
            user_sees=(
                "HTTP 503 from lb-01 (limit_req) for a share of everyone's requests while "
                "the burst lasts; error.log says limiting requests"
            ),
            inject=_traffic_spike,
            undo=_end_spike,
            params={"rps": 5.0 * t.CAPACITY_RPS, "seconds": 20.0, "clients": 50},
        ),
    )
}

PARAM_LIMITS: dict[str, tuple[float, float, bool]] = {
    # name: (low, high, low is exclusive)
    "rate": (0.0, 1.0, True),
    "delay": (0.0, 60.0, True),
    "seconds": (0.0, 3600.0, True),
    "rps": (0.0, 5000.0, True),
    "clients": (1.0, 5000.0, False),
}


def fault_def(name: str) -> FaultDef:
    try:
        return FAULTS[name]
    except KeyError:
        raise LabError(f"unknown fault {name!r}; valid faults: {', '.join(FAULTS)}", 2) from None


def resolve_params(fault: FaultDef, given: Mapping[str, Any]) -> dict[str, Any]:
    """The fault's parameters: its defaults, overridden by those given (None = default)."""
    params: dict[str, Any] = dict(fault.params)
    for name, value in given.items():
        if value is None:
            continue
        if name == "version" and fault.name == "bad-deploy":
            params[name] = str(value)
            continue
        if name not in fault.params:
            accepted = ", ".join(f"--{p}" for p in fault.params) or "no options"
            raise LabError(f"{fault.name} does not take --{name} (it takes {accepted})", 2)
        low, high, exclusive = PARAM_LIMITS[name]
        number = float(value)
        if number > high or number < low or (exclusive and number == low):
            bound = f"above {low:g}" if exclusive else f"at least {low:g}"
            raise LabError(f"--{name} must be {bound} and at most {high:g}", 2)
        params[name] = number
    return params


def truth_of(fault: FaultDef, host: str, since: str, extra: dict[str, Any]) -> dict[str, Any]:
    return {"fault": fault.name, "kind": str(fault.kind), "host": host, "since": since, **extra}


def fault_table() -> str:
    """The faults as a Markdown table: name, default host, what a user sees."""
    rows = [f"| `{f.name}` | {f.default_host} | {f.user_sees} |" for f in FAULTS.values()]
    return "\n".join(["| fault | default host | what a user sees |", "|---|---|---|", *rows])
