"""The Alertmanager webhook payload: validation with precise reasons, and the mapping of
alerts onto our services, hosts and fault kinds."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from probes.base import Fault
from recorder.alertmanager import (
    MAX_ALERTS,
    NO_HOST,
    PayloadError,
    is_stale,
    label_fingerprint,
    parse_payload,
    to_alert,
    to_alerts,
)
from recorder.config import Config, parse_config


def config(**alertmanager: Any) -> Config:
    return parse_config(
        {
            "services": {
                "web": {"entrypoints": ["lb-01"], "hosts": ["web-01", "web-02"]},
                "api": {"hosts": ["api-01"]},
            },
            "hosts": {
                "lb-01": {"ssh": {"address": "10.0.0.10", "user": "ops"}, "role": "lb"},
                "web-01": {"ssh": {"address": "10.0.0.11", "user": "ops"}},
                "web-02": {"docker": {"container": "lab-web-02"}},
                "api-01": {"local": {}, "address": "10.0.0.20"},
            },
            "alertmanager": alertmanager,
        }
    )


def alert(**overrides: Any) -> dict[str, Any]:
    """One alert as Alertmanager 0.27 sends it."""
    body: dict[str, Any] = {
        "status": "firing",
        "labels": {
            "alertname": "NginxHigh5xxRatio",
            "instance": "web-01:9113",
            "job": "nginx",
            "severity": "page",
        },
        "annotations": {"summary": "30% of responses on web-01 are 5xx"},
        "startsAt": "2026-11-23T12:00:00.123456789Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=...",
        "fingerprint": "a1b2c3d4e5f60718",
    }
    body.update(overrides)
    return body


def payload(*alerts: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "version": "4",
        "groupKey": '{}:{alertname="NginxHigh5xxRatio"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "recorder",
        "groupLabels": {"alertname": "NginxHigh5xxRatio"},
        "commonLabels": {"alertname": "NginxHigh5xxRatio"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts) if alerts else [alert()],
    }
    body.update(overrides)
    return body


def encode(data: Any) -> bytes:
    return json.dumps(data).encode()


# ---- parsing ----------------------------------------------------------------------------------


def test_a_real_payload_parses() -> None:
    parsed = parse_payload(encode(payload()))
    assert parsed.version == "4"
    assert parsed.status == "firing"
    assert parsed.receiver == "recorder"
    assert parsed.group_key == '{}:{alertname="NginxHigh5xxRatio"}'
    assert parsed.external_url == "http://alertmanager:9093"
    (only,) = parsed.alerts
    assert only.fingerprint == "a1b2c3d4e5f60718"
    assert only.labels["instance"] == "web-01:9113"
    # Nanoseconds (Go's RFC 3339) are cut to microseconds; the zero endsAt is unset.
    assert only.starts_at == datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC)
    assert only.ends_at is None


def test_times_with_offsets_are_read_as_utc() -> None:
    parsed = parse_payload(
        encode(
            payload(
                alert(
                    status="resolved",
                    startsAt="2026-11-23T15:00:00+03:00",
                    endsAt="2026-11-23T15:10:00.5+03:00",
                )
            )
        )
    )
    (only,) = parsed.alerts
    assert only.starts_at == datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert only.ends_at == datetime(2026, 11, 23, 12, 10, 0, 500000, tzinfo=UTC)


def test_unused_and_future_fields_are_ignored() -> None:
    body = payload(alert(newField={"x": [1, 2]}), somethingNew=True)
    assert len(parse_payload(encode(body)).alerts) == 1


def test_missing_fingerprint_gets_a_stable_one_from_the_labels() -> None:
    first = alert()
    del first["fingerprint"]
    second = alert(labels=dict(reversed(list(first["labels"].items()))))
    del second["fingerprint"]
    a, b = parse_payload(encode(payload(first, second))).alerts
    assert a.fingerprint == b.fingerprint == label_fingerprint(a.labels)
    assert a.fingerprint.startswith("labels-")


BAD_SHAPES: list[tuple[Any, str]] = [
    ([], "body must be a JSON object, got list"),
    ("firing", "body must be a JSON object, got string"),
    (payload(version="3"), "version: unsupported payload version '3' (expected \"4\")"),
    (payload(status="broken"), 'status: must be "firing" or "resolved", got \'broken\''),
    ({k: v for k, v in payload().items() if k != "status"}, "status: missing"),
    ({k: v for k, v in payload().items() if k != "alerts"}, "alerts: missing"),
    (payload(alerts={"a": 1}), "alerts: must be a list, got object"),
    (payload(alerts=[1]), "alerts[0]: must be an object, got number"),
    (payload(receiver=7), "receiver: must be a string, got number"),
    (payload(truncatedAlerts=-1), "truncatedAlerts: must be a non-negative integer, got number"),
    (payload(groupLabels=["a"]), "groupLabels: must be an object of strings, got list"),
    (payload(alert(), alert(status=None)), "alerts[1].status: missing"),
    (
        payload(alert(status="pending")),
        'alerts[0].status: must be "firing" or "resolved", got \'pending\'',
    ),
    (payload({k: v for k, v in alert().items() if k != "labels"}), "alerts[0].labels: missing"),
    (payload(alert(labels="x")), "alerts[0].labels: must be an object of strings, got string"),
    (
        payload(alert(labels={"instance": 9113})),
        "alerts[0].labels.instance: must be a string, got number",
    ),
    (payload(alert(labels={"a": {"b": "c"}})), "alerts[0].labels.a: must be a string, got object"),
    (payload(alert(labels={"a": None})), "alerts[0].labels.a: must be a string, got null"),
    (
        payload(alert(annotations={"summary": ["x"]})),
        "alerts[0].annotations.summary: must be a string, got list",
    ),
    (payload({k: v for k, v in alert().items() if k != "startsAt"}), "alerts[0].startsAt: missing"),
    (
        payload(alert(startsAt="0001-01-01T00:00:00Z")),
        "alerts[0].startsAt: must be set (got Alertmanager's zero time)",
    ),
    (
        payload(alert(startsAt="yesterday")),
        "alerts[0].startsAt: 'yesterday' is not an RFC 3339 time (2026-11-23T12:00:00Z)",
    ),
    (payload(alert(endsAt=12)), "alerts[0].endsAt: must be an RFC 3339 time string, got number"),
    (payload(alert(fingerprint=["x"])), "alerts[0].fingerprint: must be a string, got list"),
    (
        payload(alert(fingerprint="a\nb")),
        "alerts[0].fingerprint: must be at most 256 printable characters",
    ),
    (
        payload(alert(labels={f"l{i}": "v" for i in range(200)})),
        "alerts[0].labels: 200 entries, at most 128",
    ),
    (payload(alert(labels={"a": "x" * 5000})), "alerts[0].labels.a: longer than 4096 characters"),
    (
        payload(*[alert()] * (MAX_ALERTS + 1)),
        f"alerts: {MAX_ALERTS + 1} alerts in one notification, at most {MAX_ALERTS} "
        "(set max_alerts in the Alertmanager webhook config)",
    ),
]


@pytest.mark.parametrize(("body", "reason"), BAD_SHAPES, ids=[r for _, r in BAD_SHAPES])
def test_wrong_shapes_are_refused_with_the_field(body: Any, reason: str) -> None:
    with pytest.raises(PayloadError) as info:
        parse_payload(encode(body))
    assert str(info.value) == reason


BAD_BYTES: list[tuple[bytes, str]] = [
    (b"", "empty body: expected an Alertmanager JSON notification"),
    (b"   \n", "empty body: expected an Alertmanager JSON notification"),
    (b"\xff\xfe{}", "body is not UTF-8 (byte 0)"),
    (
        b'{"status": "firing",',
        "malformed JSON at line 1 column 21: Expecting property name enclosed in double quotes",
    ),
    (
        b"{'status': 'firing'}",
        "malformed JSON at line 1 column 2: Expecting property name enclosed in double quotes",
    ),
    (b'{"a": NaN}', "malformed JSON: NaN is not a JSON value"),
    (b'{"a": Infinity}', "malformed JSON: Infinity is not a JSON value"),
    (b"[" * 100_000 + b"]" * 100_000, "malformed JSON: nested too deeply"),
    (
        b'{"a": ' + b"9" * 5000 + b"}",
        "malformed JSON: Exceeds the limit (4300 digits) for integer string conversion: "
        "value has 5000 digits; use sys.set_int_max_str_digits() to increase the limit",
    ),
]


@pytest.mark.parametrize(("body", "reason"), BAD_BYTES, ids=[r[:40] for _, r in BAD_BYTES])
def test_malformed_bodies_are_refused_with_the_reason(body: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as info:
        parse_payload(body)
    assert str(info.value) == reason


def test_parsed_payloads_cannot_be_changed() -> None:
    (only,) = parse_payload(encode(payload())).alerts
    with pytest.raises(TypeError):
        only.labels["instance"] = "other"  # type: ignore[index]


# ---- mapping ----------------------------------------------------------------------------------

HOSTS: list[tuple[str, dict[str, Any], str]] = [
    ("web-01", {}, "web-01"),
    ("web-01:9113", {}, "web-01"),
    ("10.0.0.11:9100", {}, "web-01"),  # an SSH host by its address
    ("10.0.0.20:9100", {}, "api-01"),  # a host by its `address`
    ("lab-web-02", {}, "web-02"),  # a docker host by its container
    ("http://10.0.0.10:80/health", {}, "lb-01"),  # a blackbox target URL
    ("[::1]:9100", {"host_map": {"::1": "lb-01"}}, "lb-01"),
    ("node-7.example:9100", {"host_map": {"node-7.example:9100": "web-02"}}, "web-02"),
    ("node-7.example:9100", {"host_map": {"node-7.example": "web-02"}}, "web-02"),
    ("node-9.example:9100", {}, "node-9.example"),  # not ours: kept, without its port
]


@pytest.mark.parametrize(("label", "settings", "host"), HOSTS, ids=[h[0] for h in HOSTS])
def test_host_from_the_instance_label(label: str, settings: dict[str, Any], host: str) -> None:
    raw = parse_payload(
        encode(payload(alert(labels={"alertname": "X", "instance": label})))
    ).alerts[0]
    assert to_alert(raw, config(**settings)).host == host


def test_host_label_is_configurable_and_may_be_absent() -> None:
    cfg = config(host_label="node")
    raw = parse_payload(encode(payload(alert(labels={"alertname": "X", "node": "web-02"})))).alerts[
        0
    ]
    assert to_alert(raw, cfg).host == "web-02"
    raw = parse_payload(encode(payload(alert(labels={"alertname": "X"})))).alerts[0]
    mapped = to_alert(raw, cfg)
    assert mapped.host == NO_HOST
    assert mapped.service == "web"  # no host: the first configured service


def test_service_from_label_else_host_else_first() -> None:
    cfg = config()

    def service(labels: dict[str, str]) -> str:
        raw = parse_payload(encode(payload(alert(labels={"alertname": "X", **labels})))).alerts[0]
        return to_alert(raw, cfg).service

    assert service({"service": "api", "instance": "web-01:9113"}) == "api"
    assert service({"instance": "api-01"}) == "api"
    assert service({"instance": "web-02"}) == "web"
    assert service({"service": "payments", "instance": "web-02"}) == "web"  # not ours
    assert service({"service": "payments", "instance": "elsewhere"}) == "web"


def test_without_services_incidents_are_per_host() -> None:
    cfg = parse_config({"hosts": {"web-01": {"local": {}}, "web-02": {"local": {}}}})
    raw = parse_payload(
        encode(payload(alert(labels={"alertname": "X", "instance": "web-02:80"})))
    ).alerts[0]
    assert to_alert(raw, cfg).service == "web-02"


def test_fault_from_label_annotation_or_map() -> None:
    def fault(labels: dict[str, str], annotations: dict[str, str], **settings: Any) -> Fault | None:
        body = payload(alert(labels={"alertname": "NginxDown", **labels}, annotations=annotations))
        return to_alert(parse_payload(encode(body)).alerts[0], config(**settings)).fault

    assert fault({"fault": "http-5xx"}, {}) is Fault.HTTP_5XX
    assert fault({}, {"fault": "upstream-down"}) is Fault.UPSTREAM_DOWN
    # A label that names none of ours does not hide a valid annotation.
    assert fault({"fault": "disk-full"}, {"fault": "config-syntax"}) is Fault.CONFIG_SYNTAX
    assert fault({}, {}, fault_map={"NginxDown": "nginx-down"}) is Fault.NGINX_DOWN
    assert fault({"kind": "port-closed"}, {}, fault_label="kind") is Fault.PORT_CLOSED
    assert fault({"fault": "disk-full"}, {}) is None
    assert fault({}, {}, fault_map={"NginxDown": "not-a-fault"}) is None


def test_alert_fields_for_the_engine() -> None:
    body = payload(
        alert(annotations={"description": "many\nlines   of\ttext"}),
        alert(
            status="resolved",
            fingerprint="ffff000011112222",
            labels={"alertname": "NginxDown", "instance": "lb-01"},
            endsAt="2026-11-23T12:30:00Z",
        ),
    )
    firing, resolved = to_alerts(parse_payload(encode(body)), config())
    assert firing.firing and not resolved.firing
    assert firing.name == "NginxHigh5xxRatio"
    assert firing.summary == "many lines of text"
    assert firing.service == "web" and firing.host == "web-01"
    assert firing.ends_at is None  # a firing alert's endsAt is only an expiry guess
    assert resolved.ends_at == datetime(2026, 11, 23, 12, 30, tzinfo=UTC)
    assert resolved.fault is None and resolved.name == "NginxDown"
    assert firing.labels["severity"] == "page"


def test_an_alert_without_a_name_still_maps() -> None:
    raw = parse_payload(
        encode(payload(alert(labels={"instance": "web-01"}, annotations={})))
    ).alerts[0]
    mapped = to_alert(raw, config())
    assert mapped.name == "unnamed alert"
    assert mapped.summary == ""


def test_stale_deliveries_are_older_than_what_the_store_knows() -> None:
    def firing(starts: str) -> Any:
        return to_alert(parse_payload(encode(payload(alert(startsAt=starts)))).alerts[0], config())

    def resolved(starts: str, ends: str) -> Any:
        body = payload(alert(status="resolved", startsAt=starts, endsAt=ends))
        return to_alert(parse_payload(encode(body)).alerts[0], config())

    def row(status: str, starts: str, ends: str | None = None) -> dict[str, Any]:
        return {"status": status, "starts_at": starts, "ends_at": ends}  # as Store.alert

    noon = "2026-11-23T12:00:00.123456Z"
    stored_noon = "2026-11-23T12:00:00.123+00:00"  # the store keeps milliseconds
    assert not is_stale(firing(noon), None)  # never seen
    # The same occurrence firing again is a repeat, not stale (the book deduplicates it).
    assert not is_stale(firing(noon), row("firing", stored_noon))
    # Its firing delivered after its resolution: stale, with or without a stored end.
    assert is_stale(firing(noon), row("resolved", stored_noon, "2026-11-23T12:10:00.000+00:00"))
    assert is_stale(firing(noon), row("resolved", stored_noon))
    # A new occurrence starts after the stored end.
    assert not is_stale(
        firing("2026-11-23T12:30:00Z"), row("resolved", stored_noon, "2026-11-23T12:10:00+00:00")
    )
    # An older occurrence's firing or resolution after a newer occurrence was seen.
    newer = row("firing", "2026-11-23T12:30:00.000+00:00")
    assert is_stale(firing(noon), newer)
    assert is_stale(resolved(noon, "2026-11-23T12:10:00Z"), newer)
    # The resolution of the occurrence we know, even with an earlier startsAt (merged in
    # by Alertmanager), and resolving twice, are not stale.
    assert not is_stale(resolved("2026-11-23T12:29:00Z", "2026-11-23T12:40:00Z"), newer)
    done = row("resolved", "2026-11-23T12:30:00+00:00", "2026-11-23T12:40:00+00:00")
    assert not is_stale(resolved("2026-11-23T12:30:00Z", "2026-11-23T12:40:00Z"), done)
    assert not is_stale(firing(noon), {"status": "resolved", "ends_at": "garbage"})
