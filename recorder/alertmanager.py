"""The Alertmanager webhook: parse and validate a notification (payload version 4), and map
each alert onto our vocabulary (service, host, fault).

Alertmanager POSTs one notification per alert group:

    {"version": "4", "status": "firing", "receiver": "recorder", "groupKey": "...",
     "alerts": [{"status": "firing", "labels": {...}, "annotations": {...},
                 "startsAt": "2026-11-23T12:00:00.123Z", "endsAt": "0001-01-01T00:00:00Z",
                 "fingerprint": "a1b2c3d4e5f60718", "generatorURL": "..."}], ...}

Everything a client sends is checked here, before the engine sees it: a wrong shape is a
`PayloadError` whose message names the field (`alerts[2].labels.instance: must be a
string, got number`), which the HTTP layer returns as 400. Fields we do not use are
ignored so that newer Alertmanagers keep working.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from probes.base import Fault
from recorder.config import Config
from recorder.model import TimeRangeError, check_time

# Bounds on one notification. The body size limit already caps the total; these keep a
# single field from being absurd and give the sender a precise reason.
MAX_ALERTS = 1000
MAX_LABELS = 128
MAX_KEY = 256
MAX_LABEL_VALUE = 4096
MAX_ANNOTATION_VALUE = 64 * 1024
MAX_TEXT = 300  # the summary and alert name as they reach titles and timelines

# Where no host label names one: the alert's source stands in for the host.
NO_HOST = "alertmanager"

_FAULTS = frozenset(str(f) for f in Fault)
_EMPTY: Mapping[str, str] = MappingProxyType({})


def _empty() -> Mapping[str, str]:
    return _EMPTY


class PayloadError(ValueError):
    """The request body is not a valid Alertmanager notification; str() is the reason."""


@dataclass(frozen=True)
class WebhookAlert:
    """One alert exactly as Alertmanager sent it (validated, times parsed)."""

    status: str  # "firing" or "resolved"
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime | None  # None: Alertmanager's "0001-01-01T00:00:00Z" (unset)
    fingerprint: str
    generator_url: str = ""


@dataclass(frozen=True)
class WebhookPayload:
    """One notification (an alert group)."""

    version: str
    status: str
    receiver: str
    group_key: str
    alerts: tuple[WebhookAlert, ...]
    group_labels: Mapping[str, str] = field(default_factory=_empty)
    common_labels: Mapping[str, str] = field(default_factory=_empty)
    common_annotations: Mapping[str, str] = field(default_factory=_empty)
    external_url: str = ""
    truncated_alerts: int = 0


@dataclass(frozen=True)
class Alert:
    """An alert in our terms: what `IncidentBook.on_alert` takes."""

    fingerprint: str
    firing: bool
    name: str  # the alertname, kept as the incident title when no fault matches
    service: str
    host: str
    fault: Fault | None
    summary: str
    starts_at: datetime
    # When it ended; None while firing (a firing alert's endsAt is only Prometheus'
    # expiry guess, not an end).
    ends_at: datetime | None
    labels: Mapping[str, str] = field(default_factory=_empty)


# ---- parsing ----------------------------------------------------------------------------------


def parse_payload(body: bytes) -> WebhookPayload:
    """Decode and validate a webhook body; raises PayloadError with the reason."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"body is not UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise PayloadError("empty body: expected an Alertmanager JSON notification")
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except PayloadError:
        raise
    except json.JSONDecodeError as exc:
        raise PayloadError(
            f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise PayloadError("malformed JSON: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer longer than Python converts
        raise PayloadError(f"malformed JSON: {exc}") from None
    return _payload(data)


def _no_constant(name: str) -> Any:
    raise PayloadError(f"malformed JSON: {name} is not a JSON value")


def _payload(data: Any) -> WebhookPayload:
    if not isinstance(data, dict):
        raise PayloadError(f"body must be a JSON object, got {_kind(data)}")
    version = _opt_str(data, "version", "")
    # Version 4 has been the only one since Alertmanager 0.x; a missing version is
    # tolerated for hand-written test requests, a different one is not.
    if version and version != "4":
        raise PayloadError(f'version: unsupported payload version {version!r} (expected "4")')
    status = _status(data, "status", "")
    alerts_raw = data.get("alerts")
    if alerts_raw is None:
        raise PayloadError("alerts: missing")
    if not isinstance(alerts_raw, list):
        raise PayloadError(f"alerts: must be a list, got {_kind(alerts_raw)}")
    if len(alerts_raw) > MAX_ALERTS:
        raise PayloadError(
            f"alerts: {len(alerts_raw)} alerts in one notification, at most {MAX_ALERTS} "
            "(set max_alerts in the Alertmanager webhook config)"
        )
    truncated = data.get("truncatedAlerts", 0)
    if isinstance(truncated, bool) or not isinstance(truncated, int) or truncated < 0:
        raise PayloadError(
            f"truncatedAlerts: must be a non-negative integer, got {_kind(truncated)}"
        )
    return WebhookPayload(
        version=version or "4",
        status=status,
        receiver=_opt_str(data, "receiver", ""),
        group_key=_opt_str(data, "groupKey", ""),
        alerts=tuple(_alert(a, f"alerts[{i}]") for i, a in enumerate(alerts_raw)),
        group_labels=_strings(data.get("groupLabels"), "groupLabels", MAX_LABEL_VALUE),
        common_labels=_strings(data.get("commonLabels"), "commonLabels", MAX_LABEL_VALUE),
        common_annotations=_strings(
            data.get("commonAnnotations"), "commonAnnotations", MAX_ANNOTATION_VALUE
        ),
        external_url=_opt_str(data, "externalURL", ""),
        truncated_alerts=truncated,
    )


def _alert(data: Any, path: str) -> WebhookAlert:
    if not isinstance(data, dict):
        raise PayloadError(f"{path}: must be an object, got {_kind(data)}")
    status = _status(data, "status", path + ".")
    if "labels" not in data:
        raise PayloadError(f"{path}.labels: missing")
    labels = _strings(data["labels"], f"{path}.labels", MAX_LABEL_VALUE)
    annotations = _strings(data.get("annotations"), f"{path}.annotations", MAX_ANNOTATION_VALUE)
    if "startsAt" not in data:
        raise PayloadError(f"{path}.startsAt: missing")
    starts_at = _time(data["startsAt"], f"{path}.startsAt")
    if starts_at is None:
        raise PayloadError(f"{path}.startsAt: must be set (got Alertmanager's zero time)")
    ends_at = _time(data.get("endsAt"), f"{path}.endsAt")
    fingerprint = _opt_str(data, "fingerprint", "", path + ".")
    if len(fingerprint) > MAX_KEY or any(not c.isprintable() for c in fingerprint):
        raise PayloadError(f"{path}.fingerprint: must be at most {MAX_KEY} printable characters")
    # Alertmanager before 0.19 sent no fingerprint; its fingerprint is a hash of the label
    # set, so hashing the labels gives the same identity for the same alert.
    fingerprint = fingerprint or label_fingerprint(labels)
    return WebhookAlert(
        status=status,
        labels=labels,
        annotations=annotations,
        starts_at=starts_at,
        ends_at=ends_at,
        fingerprint=fingerprint,
        generator_url=_opt_str(data, "generatorURL", "", path + "."),
    )


def label_fingerprint(labels: Mapping[str, str]) -> str:
    """A stable identity for an alert that came without a fingerprint."""
    canonical = json.dumps(sorted(labels.items()), ensure_ascii=False)
    return "labels-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def _status(data: dict[str, Any], key: str, prefix: str) -> str:
    value = data.get(key)
    if value is None:
        raise PayloadError(f"{prefix}{key}: missing")
    if value not in ("firing", "resolved"):
        shown = repr(value)[:40] if isinstance(value, str) else _kind(value)
        raise PayloadError(f'{prefix}{key}: must be "firing" or "resolved", got {shown}')
    return str(value)


def _opt_str(data: dict[str, Any], key: str, default: str, prefix: str = "") -> str:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise PayloadError(f"{prefix}{key}: must be a string, got {_kind(value)}")
    return value


def _strings(value: Any, path: str, max_value: int) -> Mapping[str, str]:
    """A label or annotation set: an object of string to string, bounded."""
    if value is None:
        return _EMPTY
    if not isinstance(value, dict):
        raise PayloadError(f"{path}: must be an object of strings, got {_kind(value)}")
    if len(value) > MAX_LABELS:
        raise PayloadError(f"{path}: {len(value)} entries, at most {MAX_LABELS}")
    for key, item in value.items():
        name = key if len(key) <= 40 else key[:40] + "..."
        if len(key) > MAX_KEY:
            raise PayloadError(f"{path}: the name {name!r} is longer than {MAX_KEY} characters")
        if not isinstance(item, str):
            raise PayloadError(f"{path}.{name}: must be a string, got {_kind(item)}")
        if len(item) > max_value:
            raise PayloadError(f"{path}.{name}: longer than {max_value} characters")
    return MappingProxyType(dict(value))


def _time(value: Any, path: str) -> datetime | None:
    """RFC 3339 as Alertmanager writes it; its zero time (year 1) means unset."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise PayloadError(f"{path}: must be an RFC 3339 time string, got {_kind(value)}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise PayloadError(
            f"{path}: {value[:40]!r} is not an RFC 3339 time (2026-11-23T12:00:00Z)"
        ) from None
    if parsed.year == 1:
        return None
    # RFC 3339 always carries an offset; a time without one is read as UTC.
    if not parsed.tzinfo:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        check_time(parsed, path)
    except TimeRangeError as exc:
        raise PayloadError(str(exc)) from None
    return parsed.astimezone(UTC)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


# ---- mapping onto our vocabulary --------------------------------------------------------------


def to_alerts(payload: WebhookPayload, config: Config) -> list[Alert]:
    return [to_alert(raw, config) for raw in payload.alerts]


def to_alert(raw: WebhookAlert, config: Config) -> Alert:
    """Name the service, host and fault an alert is about, by the `alertmanager` config."""
    am = config.alertmanager
    name = _one_line(raw.labels.get("alertname", "")) or "unnamed alert"
    host = resolve_host(raw.labels.get(am.host_label), config)
    return Alert(
        fingerprint=raw.fingerprint,
        firing=raw.status == "firing",
        name=name,
        service=resolve_service(raw.labels.get(am.service_label), host, config),
        host=host,
        fault=resolve_fault(raw, name, config),
        summary=_one_line(
            raw.annotations.get("summary")
            or raw.annotations.get("description")
            or raw.annotations.get("message")
            or ""
        ),
        starts_at=raw.starts_at,
        ends_at=raw.ends_at if raw.status == "resolved" else None,
        labels=raw.labels,
    )


def resolve_host(value: str | None, config: Config) -> str:
    """The configured host an alert label names.

    `web-01:9113`, `10.0.0.11:9100`, `[::1]:9100` and `http://web-01:80/` (blackbox
    targets) all name a host; `host_map` is consulted with and without the port, then
    host names, then the addresses and containers hosts are reached by. A value naming
    none of them is kept (without its port) so the timeline still says where.
    """
    if not value:
        return NO_HOST
    value = value.strip()
    bare = _strip_port(value)
    host_map = config.alertmanager.host_map
    for candidate in (value, bare):
        if candidate in host_map:
            return host_map[candidate]
    if bare in config.hosts:
        return bare
    for name, hc in config.hosts.items():
        reached = {
            hc.address,
            hc.ssh.address if hc.ssh else None,
            hc.docker.container if hc.docker else None,
        }
        if bare in reached:
            return name
    return _one_line(bare) or NO_HOST


def _strip_port(value: str) -> str:
    if "://" in value:
        try:
            return urlsplit(value).hostname or value
        except ValueError:
            return value
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else value
    if value.count(":") == 1:
        host, port = value.rsplit(":", 1)
        if port.isascii() and port.isdigit():
            return host
    return value


def resolve_service(label: str | None, host: str, config: Config) -> str:
    """The alert's service label when it names a configured service; else the host's
    service; else the first configured one. With no services configured, incidents are
    per host, as the probes' are."""
    if label and label in config.services:
        return label
    if host in config.hosts:
        return config.service_of(host)
    if config.services:
        return next(iter(config.services))
    return _one_line(label or "") or host


def resolve_fault(raw: WebhookAlert, name: str, config: Config) -> Fault | None:
    """The fault label or annotation when it names one of ours, else `fault_map` by alert
    name, else None (the incident keeps the alert name as its title)."""
    key = config.alertmanager.fault_label
    for source in (raw.labels, raw.annotations):
        value = source.get(key, "").strip()
        if value in _FAULTS:
            return Fault(value)
    mapped = config.alertmanager.fault_map.get(name)
    if mapped in _FAULTS:
        return Fault(mapped)
    return None


def is_stale(alert: Alert, seen: Mapping[str, Any] | None) -> bool:
    """True when a delivery is older than what the store already knows of its alert, so
    applying it would move the incident backwards. Alertmanager retries, an HA pair sends
    every notification twice, and nothing orders their arrival. Occurrences of one alert
    (one fingerprint) do not overlap: a new one starts after the previous one ended.

    - A firing of an occurrence already resolved (started no later than the stored
      end): sent before the resolution, delivered after it.
    - A firing that started before the stored occurrence: an older occurrence (or the
      same one with an earlier startsAt, which Alertmanager merges in; already firing).
    - A resolution that ended no later than the stored occurrence started: it ends an
      older occurrence, not the one we know.

    `seen` is the store's row for the fingerprint (`Store.alert`), or None."""
    if not seen:
        return False
    known_start = _stored_time(seen.get("starts_at"))
    # Compared at the store's precision (milliseconds), so an alert equals its own row.
    starts = _millis(alert.starts_at)
    if not alert.firing:
        ended = _millis(alert.ends_at or alert.starts_at)
        return known_start is not None and ended <= known_start
    if known_start is not None and starts < known_start:
        return True
    if seen.get("status") == "resolved":
        known_end = _stored_time(seen.get("ends_at")) or known_start
        return known_end is not None and starts <= known_end
    return False


def _millis(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _stored_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _one_line(text: str) -> str:
    # Control characters (ESC, BEL, OSC...) are spaces too: the text reaches terminals.
    line = re.sub(r"[\s\x00-\x1f\x7f-\x9f]+", " ", text).strip()
    return line if len(line) <= MAX_TEXT else line[: MAX_TEXT - 3] + "..."
