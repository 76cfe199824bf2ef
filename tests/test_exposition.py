"""The /metrics body of recorder/exposition.py is what prometheus_client writes for the same
registry state, byte for byte, in both formats: the kept text of the per-probe families
plus the rest built at the scrape, and the label-memo text encoder."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from probes.base import Observation, Status
from probes.facts import ClientHarm, Facts, LogCounters
from recorder.exposition import ExpositionCache, TextEncoder
from recorder.metrics import Metrics
from recorder.notify import NotifyMetrics
from recorder.store import Store

OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


def observe(metrics: Metrics, host: str, status: Status, duration: float) -> None:
    metrics.observe(
        Observation(
            host=host,
            probe="http",
            status=status,
            summary="",
            duration=duration,
            facts=Facts(
                error_ratio=0.25,
                clients=ClientHarm(8, 2),
                counters=LogCounters(responses=(1, 90, 3, 4, 5), lines=103, rotations=0),
            ),
        )
    )


@pytest.fixture
def metrics(tmp_path: Path) -> Metrics:
    """The daemon's families (probes, log counters, incidents, notifications) with many
    hosts, error counts, and label values that need escaping."""
    registry = CollectorRegistry()
    store = Store(tmp_path / "state")
    metrics = Metrics(registry, store=store)
    notify = NotifyMetrics(registry, store)
    notify.deliveries.labels('hook "a"\\b\nc', "sent").inc(2)
    notify.latency.observe(0.3)
    hosts = [f"target-{i:04d}" for i in range(300)] + ['we"ird\\host\nname', "hôte-é"]
    for i, host in enumerate(hosts):
        observe(metrics, host, (Status.OK, Status.FAIL, Status.ERROR)[i % 3], i / 7)
    Gauge("zz_nan", "not a number", registry=registry).set(float("nan"))
    Counter("zz_plain", "no labels\nsecond line \\ of help", registry=registry).inc(1e21)
    return metrics


@pytest.fixture
def registry(metrics: Metrics) -> CollectorRegistry:
    return metrics.registry


def test_text_encoder_writes_what_generate_latest_writes(registry: CollectorRegistry) -> None:
    encoder = TextEncoder()
    assert encoder(registry) == generate_latest(registry)
    assert encoder(registry) == generate_latest(registry)  # from the label memo this time


def test_a_scrape_is_byte_for_byte_generate_latest(registry: CollectorRegistry) -> None:
    cache = ExpositionCache(registry)
    body, content_type = cache.body("")
    assert content_type.startswith("text/plain; version=0.0.4")
    assert body == generate_latest(registry)
    again, _ = cache.body("")  # the kept probe text and a new rest
    assert again == generate_latest(registry)
    body, content_type = cache.body(OPENMETRICS)
    assert content_type.startswith("application/openmetrics-text")
    assert body == openmetrics_latest(registry)
    assert cache.body(OPENMETRICS)[0] == openmetrics_latest(registry)
    assert body.endswith(b"# EOF\n") and body.count(b"# EOF") == 1


def test_the_rest_is_read_at_each_scrape(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, store=Store(tmp_path / "state"))
    cache = ExpositionCache(registry, refresh=60, max_age=60)
    observe(metrics, "web-01", Status.OK, 0.5)
    assert b'recorder_log_lines_total{host="web-01"} 0.0' in cache.body("")[0]
    metrics.count_log_lines("web-01", 7)  # not a per-probe family: shown at once
    body, _ = cache.body("")
    assert b'recorder_log_lines_total{host="web-01"} 7.0' in body
    assert body == generate_latest(registry)


def test_probe_families_are_kept_between_scrapes_and_rebuilt_after_a_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, store=Store(tmp_path / "state"))
    observe(metrics, "web-01", Status.OK, 0.5)
    cache = ExpositionCache(registry, refresh=0.05, max_age=60)
    cache.body("")
    collected: list[str] = []
    real = Gauge.collect

    def counting(self: Any) -> Any:
        collected.append(self._name)
        return real(self)

    monkeypatch.setattr(Gauge, "collect", counting)
    for _ in range(5):
        cache.body("")
    assert "recorder_probe_success" not in collected  # unchanged: its kept text served
    observe(metrics, "web-01", Status.FAIL, 1.5)
    deadline = time.monotonic() + 10
    body = b""
    while time.monotonic() < deadline:  # the refresher thread rebuilds it, not the scrape
        body = cache.body("")[0]
        if b'recorder_probe_duration_seconds{host="web-01",probe="http"} 1.5' in body:
            break
        time.sleep(0.02)
    assert b'recorder_probe_success{host="web-01",probe="http"} 0.0' in body
    assert body == generate_latest(registry)


def test_a_changed_probe_family_older_than_max_age_is_built_in_the_scrape(
    tmp_path: Path,
) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, store=Store(tmp_path / "state"))
    observe(metrics, "web-01", Status.OK, 0.5)
    cache = ExpositionCache(registry, refresh=3600, max_age=0)  # no refresher in time
    cache.body("")
    observe(metrics, "web-01", Status.FAIL, 1.5)
    body = cache.body("")[0]
    assert b'recorder_probe_success{host="web-01",probe="http"} 0.0' in body
    assert body == generate_latest(registry)


def test_series_of_removed_hosts_leave_the_kept_text(metrics: Metrics) -> None:
    registry = metrics.registry
    cache = ExpositionCache(registry, refresh=3600, max_age=0)
    cache.body("")
    metrics.retain_hosts(["target-0001"])
    body = cache.body("")[0]
    assert b"target-0002" not in body
    assert body == generate_latest(registry)


def test_the_refresher_builds_near_the_next_scrape_expected(tmp_path: Path) -> None:
    # Scrapes 2 s apart: a change is rebuilt shortly before the next one is due, not at
    # once (a Prometheus server every 15 s would otherwise cost a build every second).
    registry = CollectorRegistry()
    metrics = Metrics(registry, store=Store(tmp_path / "state"))
    observe(metrics, "web-01", Status.OK, 0.5)
    cache = ExpositionCache(registry, refresh=0.1, max_age=60)
    cache.body("")
    time.sleep(2.0)
    cache.body("")
    asked = time.monotonic()
    observe(metrics, "web-01", Status.FAIL, 1.5)

    def kept() -> bytes:
        return cache._kept[next(iter(cache._kept))][3]

    time.sleep(0.8)
    assert b"1.5" not in kept()  # not yet: the next scrape is expected 2 s after the last
    while time.monotonic() < asked + 6 and b"1.5" not in kept():
        time.sleep(0.05)
    assert b'recorder_probe_duration_seconds{host="web-01",probe="http"} 1.5' in kept()
    assert time.monotonic() - asked > 1.5
