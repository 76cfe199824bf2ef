"""The recorder's configuration: one YAML file, validated by pydantic.

Every default lives here, once. Unknown keys are errors, so a typo never passes silently,
and every error names its field path (`hosts.web-01.ssh.address: ...`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
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
        return checked


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


class WebConfig(Strict):
    # The one base for links to the pages (notifications, the demo); None: the listen address.
    base_url: str | None = None
    # The token the pages, /api/v1 reads and /metrics need; required off loopback.
    read_token_file: str | None = None
    # Days of probe history the status page's availability reads (hourly for two days,
    # daily after that: recorder/history.py).
    history_days: int = Field(30, ge=1, le=400)


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
    web: WebConfig = Field(default_factory=WebConfig)

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
        problems: list[str] = []
        for i, check in enumerate(self.checks):
            for h in check.hosts:
                if h not in self.hosts:
                    problems.append(f"checks.{i}.hosts: unknown host {h!r}")
        for name, svc in self.services.items():
            for field_name in ("entrypoints", "hosts"):
                for h in getattr(svc, field_name):
                    if h not in self.hosts:
                        problems.append(f"services.{name}.{field_name}: unknown host {h!r}")
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
        named = [*svc.entrypoints, *(h for h in svc.hosts if h not in svc.entrypoints)]
        if len(self.services) == 1:
            named += [h for h in self.hosts if h not in named]
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
            if loc.endswith("probes") and _PATHED.match(part):
                lines.append(f"{loc}.{part}")  # a probe's own error: join the paths
            elif not loc:
                lines.append(part)  # cross-reference errors carry their own paths
            else:
                lines.append(f"{loc}: {part}")
    return lines


def parse_config(data: Any, path: str = "<config>") -> Config:
    if not isinstance(data, dict):
        raise ConfigError(path, ["the file must hold a YAML mapping at the top level"])
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(path, _format_errors(exc)) from None
    except RecursionError:
        raise ConfigError(path, ["not a usable config: nested too deeply"]) from None


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a config file; raises ConfigError with every problem found."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), [f"cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError(str(p), ["not UTF-8 text"]) from None
    try:
        data = yaml.safe_load(text)
    except RecursionError:
        raise ConfigError(str(p), ["not a usable config: nested too deeply"]) from None
    except ValueError as exc:  # e.g. an integer of thousands of digits
        raise ConfigError(str(p), [f"not a usable config: {exc}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(str(p), [f"not valid YAML{where}: {problem}"]) from None
    return parse_config(data, str(p))
