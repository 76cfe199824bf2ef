"""The recorder's configuration: one YAML file, validated by pydantic.

Every default lives here, once. Unknown keys are errors, so a typo never passes silently,
and every error names its field path (`hosts.web-01.ssh.address: ...`).
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from probes.durations import Duration
from probes.registry import CONFIGS
from recorder.yamlfile import YamlFileError, read_yaml
from recorder.zones import machine_zone


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Defaults(Strict):
    interval: Duration = 10.0
    for_: Duration = Field(0.0, alias="for")
    recover_after: Duration = 30.0
    timeout: Duration = 5.0  # one probe's whole run; the scheduler enforces it
    concurrency: int = Field(16, ge=1, le=256)  # probes in flight at once

    @field_validator("interval", "timeout")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("must be greater than 0")
        return v


class Service(Strict):
    entrypoints: list[str] = Field(default_factory=list)
    hosts: list[str] = Field(default_factory=list)
    escalation: str | None = None


class LocalHostConfig(Strict):
    prefix: str = "/"

    @field_validator("prefix")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("must be an absolute path")
        return v


class SSHHostConfig(Strict):
    address: str = Field(min_length=1)
    port: int = Field(22, ge=1, le=65535)
    user: str = Field(min_length=1)
    key: str | None = None  # private key file; None means the SSH agent
    known_hosts: str = "~/.ssh/known_hosts"
    # Explicit opt-in: trust and record a host key never seen before (first use).
    trust_on_first_use: bool = False
    connect_timeout: Duration = 5.0
    command_timeout: Duration = 10.0

    @field_validator("address")
    @classmethod
    def _no_spaces(cls, v: str) -> str:
        if any(c.isspace() for c in v):
            raise ValueError("must not contain spaces")
        return v


class DockerHostConfig(Strict):
    container: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    docker: str = "docker"  # the client binary


class HostConfig(Strict):
    local: LocalHostConfig | None = None
    ssh: SSHHostConfig | None = None
    docker: DockerHostConfig | None = None
    role: Literal["web", "lb"] = "web"
    # Where `{address}` in a probe URL points when the host is not reached by address.
    address: str | None = None

    @model_validator(mode="after")
    def _one_transport(self) -> HostConfig:
        given = [k for k in ("local", "ssh", "docker") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"exactly one of local, ssh, docker is required (got {given or 'none'})"
            )
        return self

    @property
    def kind(self) -> str:
        return "local" if self.local else "ssh" if self.ssh else "docker"

    @property
    def probe_address(self) -> str:
        """What `{address}` in a probe URL becomes for this host."""
        if self.address:
            return self.address
        if self.ssh:
            return self.ssh.address
        if self.docker:
            return self.docker.container
        return "127.0.0.1"


class Check(Strict):
    hosts: list[str] = Field(min_length=1)
    interval: Duration | None = None
    for_: Duration | None = Field(None, alias="for")
    recover_after: Duration | None = None
    timeout: Duration | None = None
    probes: dict[str, Any] = Field(min_length=1)  # probe name -> its validated Config

    @field_validator("interval", "timeout")
    @classmethod
    def _positive(cls, v: float | None) -> float | None:
        # The same rule as defaults': a 0 s interval would spin the scheduler.
        if v is not None and v <= 0:
            raise ValueError("must be greater than 0")
        return v

    @field_validator("probes", mode="before")
    @classmethod
    def _known_probes(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        checked: dict[str, Any] = {}
        errors: list[str] = []
        for name, body in value.items():
            model = CONFIGS.get(name)
            if model is None:
                known = ", ".join(sorted(CONFIGS))
                errors.append(f"{name}: unknown probe (known: {known})")
                continue
            try:
                checked[name] = model.model_validate(body or {})
            except ValidationError as exc:
                errors.extend(_prefixed(exc, (name,)))
        if errors:
            raise ValueError("; ".join(errors))
        rate, http = checked.get("error_rate"), checked.get("http")
        if rate is not None and http is not None and "slow" not in rate.model_fields_set:
            # One bar for "slow": what the check's http probe calls slow is what counts a
            # client's response as slow in the log (the affected share of slow-responses).
            checked["error_rate"] = rate.model_copy(update={"slow": http.slow})
        _share_nginx(checked)
        return checked


_NGINX_FIELDS = ("nginx", "conf", "prefix")


def _share_nginx(checked: dict[str, Any]) -> None:
    """One nginx per check: the http and error_rate probes run `nginx -T` (to name the
    file of a failing server block) with the binary, config and prefix the check's config
    (or upstreams) probe names, and error_rate reads the process probe's pid file; a
    setting of their own wins."""
    source = checked.get("config") or checked.get("upstreams")
    process = checked.get("process")
    for name in ("http", "error_rate"):
        probe = checked.get(name)
        if probe is None:
            continue
        update = {
            f: getattr(source, f)
            for f in _NGINX_FIELDS
            if source is not None and f not in probe.model_fields_set
        }
        if (
            name == "error_rate"
            and process is not None
            and "pid_file" not in probe.model_fields_set
        ):
            update["pid_file"] = process.pid_file
        if update:
            checked[name] = probe.model_copy(update=update)


def _prefixed(exc: ValidationError, prefix: tuple[str, ...]) -> list[str]:
    return [f"{'.'.join((*prefix, *map(str, e['loc'])))}: {e['msg']}" for e in exc.errors()]


ERROR_LINE_MAX = 300  # characters of one error line; values quoted in it can be huge


def _clip(line: str) -> str:
    """One error line, cut short: a 200 KB value must not make a 200 KB error."""
    if len(line) <= ERROR_LINE_MAX:
        return line
    return f"{line[:ERROR_LINE_MAX]}... ({len(line):,} characters in all)"


class AlertmanagerConfig(Strict):
    token_file: str | None = None
    max_body: int = Field(1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    # Which alert labels name our host and service, and how alert names map to faults.
    host_label: str = "instance"
    service_label: str = "service"
    fault_label: str = "fault"
    host_map: dict[str, str] = Field(default_factory=dict)  # label value -> host name
    fault_map: dict[str, str] = Field(default_factory=dict)  # alertname -> fault kind


# The incident lifecycle events a route can ask for (DESIGN.md `notify.routes`).
NOTIFY_EVENTS = (
    "opened",
    "cause-changed",
    "affected-step",
    "resolved",
    "reopened",
    "closed",
    "overdue",
)
NotifyEvent = Literal[
    "opened", "cause-changed", "affected-step", "resolved", "reopened", "closed", "overdue"
]


def read_secret(path: str) -> str:
    """The first line of a secret file; ValueError when it is missing, empty, or readable
    by anyone but its owner (a secret the whole machine can read is no secret)."""
    p = Path(path).expanduser()
    try:
        mode = p.stat().st_mode & 0o777
        text = p.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    if mode & 0o077:
        raise ValueError(f"{path} is readable by others (mode {mode:o}), chmod 600 it")
    if not text:
        raise ValueError(f"{path} is empty")
    return text


class _Secrets(Strict):
    """A receiver's `*_file` fields are secrets: checked (0600, not empty) at load."""

    @model_validator(mode="after")
    def _secret_files(self) -> _Secrets:
        problems = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name.endswith("_file") and isinstance(value, str):
                try:
                    read_secret(value)
                except ValueError as exc:
                    problems.append(f"{name}: {exc}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class WebhookReceiver(_Secrets):
    url: str | None = None
    url_file: str | None = None
    secret_file: str | None = None  # HMAC-SHA256 key; unsigned without it

    @model_validator(mode="after")
    def _endpoint(self) -> WebhookReceiver:
        if (self.url is None) == (self.url_file is None):
            raise ValueError("exactly one of url, url_file is required")
        return self


class SlackReceiver(_Secrets):
    url: str | None = None  # the incoming-webhook URL is itself the secret: prefer url_file
    url_file: str | None = None

    @model_validator(mode="after")
    def _endpoint(self) -> SlackReceiver:
        if (self.url is None) == (self.url_file is None):
            raise ValueError("exactly one of url, url_file is required")
        return self


PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"


class PagerDutyReceiver(_Secrets):
    url: str = PAGERDUTY_URL
    routing_key_file: str = Field(min_length=1)
    severity: Literal["critical", "error", "warning", "info"] = "critical"


class EmailReceiver(_Secrets):
    smtp: str | None = None  # HOST:PORT
    url: str | None = None  # smtp://HOST:PORT, the same as `smtp`
    from_: str = Field(alias="from", min_length=3)
    to: list[str] = Field(min_length=1)
    starttls: bool = True
    ca_cert: str | None = None  # to verify a server certificate no public CA signed
    username: str | None = None
    password_file: str | None = None

    @model_validator(mode="after")
    def _server(self) -> EmailReceiver:
        if (self.smtp is None) == (self.url is None):
            raise ValueError("exactly one of smtp, url is required")
        try:
            split_listen(self.address)
        except ValueError:
            raise ValueError(f"invalid SMTP server {self.address!r}: expected HOST:PORT") from None
        if (self.username is None) != (self.password_file is None):
            raise ValueError("username and password_file go together")
        return self

    @property
    def address(self) -> str:
        return self.smtp or (self.url or "").removeprefix("smtp://").rstrip("/")


class Receiver(Strict):
    webhook: WebhookReceiver | None = None
    slack: SlackReceiver | None = None
    pagerduty: PagerDutyReceiver | None = None
    email: EmailReceiver | None = None
    timeout: Duration = 5.0  # one delivery attempt
    rate_limit: int = Field(30, ge=1, le=10000)  # messages per minute; the rest wait

    @model_validator(mode="after")
    def _one_kind(self) -> Receiver:
        given = [k for k in RECEIVER_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"exactly one of {', '.join(RECEIVER_KINDS)} is required (got {given or 'none'})"
            )
        return self

    @property
    def kind(self) -> str:
        return next(k for k in RECEIVER_KINDS if getattr(self, k) is not None)


RECEIVER_KINDS = ("webhook", "slack", "pagerduty", "email")


class Route(Strict):
    services: list[str] = Field(default_factory=list)  # empty: every service
    events: list[NotifyEvent] = Field(min_length=1)
    receivers: list[str] = Field(min_length=1)


class NotifyConfig(Strict):
    receivers: dict[str, Receiver] = Field(default_factory=dict)
    routes: list[Route] = Field(default_factory=list)
    # An incident still open is announced again (its `opened` routes) this often; 0: never.
    repeat_interval: Duration = 4 * 3600.0
    overdue_after: Duration = 3 * 86400.0  # resolved this long and not closed: `overdue`
    max_age: Duration = 86400.0  # a delivery still failing this long after its event: given up
    retry_max: Duration = 300.0  # retries back off 1s, 2s, 4s, ... up to this
    affected_steps: list[float] = Field(default_factory=lambda: [0.1, 0.5, 0.9])

    @field_validator("affected_steps")
    @classmethod
    def _steps(cls, v: list[float]) -> list[float]:
        if any(not 0 < s <= 1 for s in v):
            raise ValueError("each step is a share between 0 and 1")
        return sorted(set(v))

    def receivers_for(self, service: str, event: str) -> list[str]:
        """The receivers routed this service's event, each once, in route order."""
        chosen: list[str] = []
        for route in self.routes:
            if (not route.services or service in route.services) and event in route.events:
                chosen += [r for r in route.receivers if r not in chosen]
        return chosen


MAINTENANCE_START = re.compile(r"^(?:(Mon|Tue|Wed|Thu|Fri|Sat|Sun)\s+)?([01]?\d|2[0-3]):([0-5]\d)$")


class MaintenanceWindow(Strict):
    """A recurring window: `start` is `"Sun 02:00"` (weekly) or `"02:00"` (daily)."""

    services: list[str] = Field(min_length=1)
    hosts: list[str] = Field(default_factory=list)  # empty: every host of the services
    start: str
    duration: Duration
    timezone: str | None = None  # default: the config's
    reason: str = "recurring maintenance window"

    @field_validator("start")
    @classmethod
    def _start(cls, v: str) -> str:
        if not MAINTENANCE_START.match(v.strip()):
            raise ValueError(
                f"invalid start {v!r}: expected HH:MM (daily) or a day and HH:MM such as"
                " 'Sun 02:00' (weekly)"
            )
        return v

    @field_validator("duration")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("must be greater than 0")
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                ZoneInfo(v)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {v!r}") from None
        return v


class WebConfig(Strict):
    # The one base for links to the pages (notifications, the demo); None: the listen address.
    base_url: str | None = None
    # The token the pages, /api/v1 reads and /metrics need; required off loopback.
    read_token_file: str | None = None
    # Days of probe history the status page's availability reads (hourly for two days,
    # daily after that: recorder/history.py).
    history_days: int = Field(30, ge=1, le=400)


class ApiConfig(Strict):
    # The token that writes over HTTP (maintenance windows). Its own: the Alertmanager
    # webhook's token must not be able to silence paging. Unset: no writes over HTTP.
    write_token_file: str | None = None


class StoreConfig(Strict):
    # Unset: SQLite in state_dir, nothing to set up. postgresql://user@host:5432/db: a
    # shared PostgreSQL (pip install 'nginx-recorder[postgres]'); libpq's own settings
    # apply too (PGHOST, PGSSLMODE, ...).
    url: str | None = None
    # The password, from a 0600 file; without one libpq reads PGPASSWORD or ~/.pgpass.
    password_file: str | None = None
    # With url set, recorders sharing the store elect one leader (#21): only it opens,
    # joins and resolves incidents and sends notifications; the others probe and serve
    # reads. The lease lasts this long unless renewed (every third of it), so a dead
    # leader is replaced within lease + one renewal. Ignored without url (SQLite is one
    # recorder's own: always the leader).
    lease: Duration = Field(15.0, gt=0)
    # Who holds the lease, as shown by /healthz and in the logs; default hostname/listen.
    holder: str | None = None

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not v.startswith(("postgresql://", "postgres://")):
            raise ValueError("expected postgresql://user@host:port/database (or unset: SQLite)")
        userinfo = v.split("://", 1)[1].split("/", 1)[0].rpartition("@")[0]
        if ":" in userinfo or "password=" in v:
            # The URL shows in logs, errors and `ps`; a secret belongs in a 0600 file.
            raise ValueError("no password in the URL: use store.password_file or ~/.pgpass")
        return v


class Config(Strict):
    # Times are shown in this zone (stored in UTC); by default the machine's own.
    timezone: str = Field(default_factory=machine_zone)
    state_dir: str = "/var/lib/recorder"
    listen: str = "127.0.0.1:9468"
    defaults: Defaults = Field(default_factory=Defaults)
    services: dict[str, Service] = Field(default_factory=dict)
    hosts: dict[str, HostConfig] = Field(min_length=1)
    checks: list[Check] = Field(default_factory=list)
    alertmanager: AlertmanagerConfig = Field(default_factory=AlertmanagerConfig)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    maintenance: list[MaintenanceWindow] = Field(default_factory=list)
    web: WebConfig = Field(default_factory=WebConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {v!r} (an IANA name such as Africa/Nairobi)"
            ) from None
        return v

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        split_listen(v)
        return v

    @model_validator(mode="after")
    def _references(self) -> Config:
        problems = reference_errors(
            {
                "hosts": self.hosts,
                "checks": [{"hosts": c.hosts} for c in self.checks],
                "services": {n: svc.model_dump() for n, svc in self.services.items()},
            }
        )
        for i, route in enumerate(self.notify.routes):
            for r in route.receivers:
                if r not in self.notify.receivers:
                    problems.append(f"notify.routes.{i}.receivers: unknown receiver {r!r}")
            for wanted in route.services:
                if self.services and wanted not in self.services:
                    problems.append(f"notify.routes.{i}.services: unknown service {wanted!r}")
        for i, window in enumerate(self.maintenance):
            for wanted in window.services:
                if self.services and wanted not in self.services:
                    problems.append(f"maintenance.{i}.services: unknown service {wanted!r}")
            for h in window.hosts:
                if h not in self.hosts:
                    problems.append(f"maintenance.{i}.hosts: unknown host {h!r}")
        write, hook = self.api.write_token_file, self.alertmanager.token_file
        if write and hook and Path(write).expanduser() == Path(hook).expanduser():
            problems.append(
                "api.write_token_file: must not be alertmanager.token_file (whoever can post "
                "alerts must not be able to silence paging)"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # ---- derived views -------------------------------------------------------------

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def service_of(self, host: str) -> str:
        """The service a host belongs to: the one naming it, else the only one, else the host."""
        for name, svc in self.services.items():
            if host in svc.hosts or host in svc.entrypoints:
                return name
        if len(self.services) == 1:
            return next(iter(self.services))
        return host

    def hosts_of(self, service: str) -> list[str]:
        svc = self.services.get(service)
        if svc is None:
            return [service] if service in self.hosts else []
        named = list(dict.fromkeys([*svc.entrypoints, *svc.hosts]))
        if len(self.services) == 1:
            # A set to look in: a fleet's one service has thousands of hosts.
            known = set(named)
            named += [h for h in self.hosts if h not in known]
        return named

    def entrypoints_of(self, service: str) -> list[str]:
        svc = self.services.get(service)
        return list(svc.entrypoints) if svc else []

    def checks_for(self, host: str) -> Iterable[tuple[Check, str, BaseModel]]:
        for check in self.checks:
            if host in check.hosts:
                for name, cfg in check.probes.items():
                    yield check, name, _as_model(cfg)

    def interval(self, check: Check) -> float:
        return check.interval if check.interval is not None else self.defaults.interval

    def for_(self, check: Check) -> float:
        return check.for_ if check.for_ is not None else self.defaults.for_

    def recover_after(self, check: Check) -> float:
        return (
            check.recover_after if check.recover_after is not None else self.defaults.recover_after
        )

    def timeout(self, check: Check) -> float:
        return check.timeout if check.timeout is not None else self.defaults.timeout

    @property
    def base_url(self) -> str:
        """Where the pages are, ending in `/`: web.base_url, else the listen address."""
        if self.web.base_url:
            return self.web.base_url.rstrip("/") + "/"
        host, port = split_listen(self.listen)
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir).expanduser()


def reference_errors(data: dict[str, Any]) -> list[str]:
    """Hosts named by checks and services that `hosts` does not define. Works on the raw
    data as well as on a validated config, so a config with schema errors gets these too
    in the same report (pydantic runs `_references` only once every field is valid)."""
    hosts = data.get("hosts")
    if not isinstance(hosts, dict):
        return []  # `hosts` itself is wrong, and its error says so
    problems: list[str] = []
    checks = data.get("checks")
    for i, check in enumerate(checks if isinstance(checks, list) else []):
        named = check.get("hosts") if isinstance(check, dict) else None
        for h in named if isinstance(named, list) else []:
            if isinstance(h, str) and h not in hosts:
                problems.append(f"checks.{i}.hosts: unknown host {h!r}")
    services = data.get("services")
    for name, svc in (services if isinstance(services, dict) else {}).items():
        for field_name in ("entrypoints", "hosts"):
            named = svc.get(field_name) if isinstance(svc, dict) else None
            for h in named if isinstance(named, list) else []:
                if isinstance(h, str) and h not in hosts:
                    problems.append(f"services.{name}.{field_name}: unknown host {h!r}")
    return problems


def _as_model(cfg: Any) -> BaseModel:
    assert isinstance(cfg, BaseModel)
    return cfg


def split_listen(value: str) -> tuple[str, int]:
    """`127.0.0.1:9468` or `[::1]:9468` to (host, port)."""
    match = re.match(r"^(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]]+)):(\d{1,5})$", value.strip())
    if not match:
        raise ValueError(f"invalid listen address {value!r}: expected HOST:PORT")
    port = int(match.group(3))
    if not 0 < port < 65536:
        raise ValueError(f"invalid port {port} in {value!r}")
    return (match.group(1) or match.group(2)), port


def is_loopback_host(host: str) -> bool:
    """Whether a listen address's host is loopback (a name other than localhost may
    resolve to anything: not loopback)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ConfigError(Exception):
    """A config that cannot be used; `errors` lists one line per problem with its field path."""

    def __init__(self, path: str, errors: list[str]) -> None:
        errors = [_clip(line) for line in errors]
        super().__init__(f"{path}: " + "; ".join(errors))
        self.path = path
        self.errors = errors


_PATHED = re.compile(r"^[\w-]+(?:\.[\w-]+)*: ")


def _format_errors(exc: ValidationError) -> list[str]:
    lines: list[str] = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        for part in msg.split("; "):
            if (loc.endswith("probes") or loc.startswith("notify.receivers.")) and _PATHED.match(
                part
            ):
                lines.append(f"{loc}.{part}")  # a probe's or secret's own error: join paths
            elif not loc:
                lines.append(part)  # cross-reference errors carry their own paths
            else:
                lines.append(f"{loc}: {part}")
    return lines


def parse_config(data: Any, path: str = "<config>") -> Config:
    """Validate data; ConfigError lists every schema and cross-reference error at once."""
    if not isinstance(data, dict):
        raise ConfigError(path, ["the file must hold a YAML mapping at the top level"])
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        errors = [*_format_errors(exc), *reference_errors(data)]
        # Once each, in order: with every field valid, pydantic already reported them.
        raise ConfigError(path, list(dict.fromkeys(errors))) from None
    except RecursionError:
        raise ConfigError(path, ["not a usable config: nested too deeply"]) from None


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a config file; raises ConfigError with every problem found."""
    p = Path(path)
    return parse_config(_read_yaml(p), str(p))


def _read_yaml(p: Path) -> Any:
    try:
        return read_yaml(p, "config")
    except YamlFileError as exc:
        raise ConfigError(str(p), [exc.message]) from None


# ---- the files a config names (`recorder config check`) --------------------------------------

SECRET_MODE_MASK = 0o077  # what OpenSSH refuses on a private key: any access by group or others


def check_config(path: str | os.PathLike[str], *, files: bool = True) -> Config:
    """What `recorder config check` does: `load_config`, and with `files` the files the
    config names, on this machine: every problem in one ConfigError. `recorder run`
    loads without the file checks (a missing token file only disables the webhook)."""
    p = Path(path)
    data = _read_yaml(p)
    errors: list[str] = []
    config: Config | None = None
    try:
        config = parse_config(data, str(p))
    except ConfigError as exc:
        errors = exc.errors
    if config is not None:
        # `recorder run` refuses this config (daemon.read_access_refusal): say so here,
        # not when systemd starts the service after `config check` said ok.
        host, _ = split_listen(config.listen)
        if not is_loopback_host(host) and not config.web.read_token_file:
            errors.append(
                f"listen: {config.listen} is not a loopback address and web.read_token_file "
                "is not set: recorder run refuses to start (anyone who reaches the port "
                "could read every incident); set web.read_token_file to a 0600 file holding "
                "a read token, or listen on 127.0.0.1"
            )
    if files and isinstance(data, dict):
        errors += file_problems(data)
    if errors or config is None:
        raise ConfigError(str(p), errors)
    return config


def referenced_files(data: dict[str, Any]) -> list[tuple[str, str, bool, bool]]:
    """(field path, file, is a secret, may be missing) for each file the raw config data
    names on this machine; defaults from the models, so an unset known_hosts counts."""
    found: list[tuple[str, str, bool, bool]] = []
    hosts = data.get("hosts")
    for name, host in (hosts if isinstance(hosts, dict) else {}).items():
        ssh = host.get("ssh") if isinstance(host, dict) else None
        if not isinstance(ssh, dict):
            continue
        key = ssh.get("key")
        if isinstance(key, str):
            found.append((f"hosts.{name}.ssh.key", key, True, False))
        known = ssh.get("known_hosts", SSHHostConfig.model_fields["known_hosts"].default)
        if isinstance(known, str):
            # Trusting on first use, the recorder writes it: missing is fine then.
            first_use = ssh.get("trust_on_first_use") is True
            found.append((f"hosts.{name}.ssh.known_hosts", known, False, first_use))
    # The webhook's token, the read token (pages, the API's reads and /metrics off loopback),
    # the maintenance API's write token and the store's password: a typo there is found by
    # `config check`, not by the first person locked out.
    tokens = (
        ("alertmanager", "token_file"),
        ("web", "read_token_file"),
        ("api", "write_token_file"),
        ("store", "password_file"),
    )
    for section, key in tokens:
        block = data.get(section)
        named = block.get(key) if isinstance(block, dict) else None
        if isinstance(named, str):
            found.append((f"{section}.{key}", named, True, False))
    return found


def file_problems(data: dict[str, Any]) -> list[str]:
    """Named files that are missing, unreadable, empty where a secret should be, or open
    to group or others when they hold a secret, each with its field path."""
    problems: list[str] = []
    for field_path, name, secret, may_be_missing in referenced_files(data):
        path = Path(name).expanduser()
        try:
            info = path.stat()
            if not stat.S_ISREG(info.st_mode):  # a directory, or a FIFO that would block
                problems.append(f"{field_path}: {name}: not a regular file")
                continue
            with open(path, "rb") as f:
                empty = not f.read(1)
        except FileNotFoundError:
            if not may_be_missing:
                problems.append(f"{field_path}: {name}: no such file")
            continue
        except OSError as exc:
            problems.append(f"{field_path}: {name}: cannot read: {exc.strerror or exc}")
            continue
        if secret and empty:
            problems.append(f"{field_path}: {name}: the file is empty")
        mode = stat.S_IMODE(info.st_mode)
        if secret and mode & SECRET_MODE_MASK:
            problems.append(
                f"{field_path}: {name}: holds a secret but is open to group or others "
                f"(mode {mode:04o}; chmod 600 {name})"
            )
    return problems
