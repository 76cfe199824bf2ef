"""Metrics with a fresh registry and a real store: what the engine pushes, and the incident
state the collector reads from the store at scrape time."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from probes.base import Fault, Observation, Status
from probes.facts import ClientHarm, Facts, LogCounters
from recorder import __version__
from recorder.metrics import FAULT_LABELS, METRIC_NAMES, Metrics
from recorder.model import Incident
from recorder.store import Store

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
CONTRACT = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "state")


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry, store: Store) -> Metrics:
    return Metrics(registry, store=store)


def obs(
    host: str,
    probe: str,
    status: Status,
    duration: float = 0.05,
    error_ratio: float | None = None,
    clients: int | None = None,
    hurt: int = 0,
) -> Observation:
    """An observation with the facts error_rate states; no display details at all, so
    nothing can be read from them."""
    return Observation(
        host=host,
        probe=probe,
        status=status,
        summary=f"{probe} {status} on {host}",
        fault=Fault.HTTP_5XX if status is Status.FAIL else None,
        duration=duration,
        facts=Facts(
            error_ratio=error_ratio,
            clients=ClientHarm(clients, hurt) if clients is not None else None,
        ),
    )


def incident(status: str, fault: str | None, delay: float, severity: str = "outage") -> Incident:
    return Incident(
        id=0,
        status=status,
        title="web: trouble",
        service="web",
        fault=fault,
        started_at=T0,
        detected_at=T0 + timedelta(seconds=delay),
        severity=severity,
        hosts=["lb-01"],
    )


def test_probe_results(metrics: Metrics, registry: CollectorRegistry) -> None:
    metrics.observe(obs("web-01", "http", Status.OK, duration=0.25))
    metrics.observe(obs("web-02", "http", Status.FAIL, duration=0.5))
    metrics.observe(obs("web-03", "http", Status.ERROR, duration=5.0))
    metrics.observe(obs("web-03", "http", Status.ERROR, duration=5.0))

    def value(name: str, host: str) -> float | None:
        return registry.get_sample_value(name, {"host": host, "probe": "http"})

    assert value("recorder_probe_success", "web-01") == 1
    assert value("recorder_probe_success", "web-02") == 0
    assert value("recorder_probe_success", "web-03") == 0  # could not look: not success
    assert value("recorder_probe_duration_seconds", "web-02") == 0.5
    assert value("recorder_probe_errors_total", "web-01") == 0  # exported before the first
    assert value("recorder_probe_errors_total", "web-02") == 0  # a failure is not an error
    assert value("recorder_probe_errors_total", "web-03") == 2


def test_error_rate_ratios(metrics: Metrics, registry: CollectorRegistry) -> None:
    """The ratios come from the facts the probe states (no details are given here)."""
    metrics.observe(obs("lb-01", "error_rate", Status.FAIL, error_ratio=0.3, clients=20, hurt=9))
    assert registry.get_sample_value("recorder_http_5xx_ratio", {"host": "lb-01"}) == 0.3
    assert registry.get_sample_value("recorder_affected_clients_ratio", {"host": "lb-01"}) == 0.45
    # "Could not look" keeps the last measured values instead of claiming 0.
    metrics.observe(obs("lb-01", "error_rate", Status.ERROR))
    assert registry.get_sample_value("recorder_http_5xx_ratio", {"host": "lb-01"}) == 0.3
    # Nonsense is ignored or clamped; a window without clients hurt nobody.
    metrics.observe(
        obs("lb-01", "error_rate", Status.OK, error_ratio=float("nan"), clients=200, hurt=50)
    )
    assert registry.get_sample_value("recorder_http_5xx_ratio", {"host": "lb-01"}) == 0.3
    assert registry.get_sample_value("recorder_affected_clients_ratio", {"host": "lb-01"}) == 0.25
    metrics.observe(obs("lb-01", "error_rate", Status.OK, error_ratio=1.7, clients=0))
    assert registry.get_sample_value("recorder_http_5xx_ratio", {"host": "lb-01"}) == 1.0
    assert registry.get_sample_value("recorder_affected_clients_ratio", {"host": "lb-01"}) == 0.0
    # Probes that state no shares never touch the ratios.
    metrics.observe(obs("web-01", "http", Status.OK))
    assert registry.get_sample_value("recorder_http_5xx_ratio", {"host": "web-01"}) is None


def test_counters_stay_bounded_and_never_fall(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    metrics.count_responses("lb-01", {"2xx": 90, "5xx": 10, "9xx": 5, "client=1.2.3.4": 1})
    metrics.count_responses("lb-01", {"5xx": 3, "2xx": -40})
    metrics.count_log_lines("lb-01", 100)
    metrics.count_log_lines("lb-01", -5)
    metrics.count_log_lines("web-01", 0)  # exported as 0 from the first sweep
    metrics.count_rotations("lb-01", 1)
    text = generate_latest(registry).decode()
    classes = set(re.findall(r'recorder_http_responses_total\{class="([^"]*)"', text))
    assert classes == {"2xx", "5xx"}
    assert (
        registry.get_sample_value(
            "recorder_http_responses_total", {"host": "lb-01", "class": "5xx"}
        )
        == 13
    )
    assert (
        registry.get_sample_value(
            "recorder_http_responses_total", {"host": "lb-01", "class": "2xx"}
        )
        == 90
    )
    assert registry.get_sample_value("recorder_log_lines_total", {"host": "lb-01"}) == 100
    assert registry.get_sample_value("recorder_log_lines_total", {"host": "web-01"}) == 0
    assert registry.get_sample_value("recorder_log_rotations_total", {"host": "lb-01"}) == 1


def test_log_counters_of_observations(metrics: Metrics, registry: CollectorRegistry) -> None:
    """Responses count from zero (the log's own count by class); lines and rotations
    count what is new since the first totals; totals that fell start a new count."""

    def seen(lines: int, rotations: int, responses: tuple[int, int, int, int, int]) -> None:
        counters = LogCounters(lines=lines, rotations=rotations, responses=responses)
        metrics.observe(
            replace(obs("lb-01", "error_rate", Status.OK), facts=Facts(counters=counters))
        )

    def responses(cls: str) -> float | None:
        return registry.get_sample_value(
            "recorder_http_responses_total", {"host": "lb-01", "class": cls}
        )

    seen(100, 2, (0, 90, 0, 0, 10))
    assert (responses("2xx"), responses("5xx"), responses("1xx")) == (90, 10, 0)
    assert registry.get_sample_value("recorder_log_lines_total", {"host": "lb-01"}) == 0
    seen(130, 3, (0, 115, 0, 0, 15))
    assert (responses("2xx"), responses("5xx")) == (115, 15)
    assert registry.get_sample_value("recorder_log_lines_total", {"host": "lb-01"}) == 30
    assert registry.get_sample_value("recorder_log_rotations_total", {"host": "lb-01"}) == 1
    seen(4, 0, (0, 4, 0, 0, 0))  # the probe's saved state was lost: counted anew
    assert (responses("2xx"), responses("5xx")) == (119, 15)
    metrics.retain_hosts([])
    seen(10, 0, (0, 10, 0, 0, 0))  # back after a reload dropped it: from zero again
    assert responses("2xx") == 10


def test_build_info(registry: CollectorRegistry, metrics: Metrics) -> None:
    assert registry.get_sample_value("recorder_build_info", {"version": __version__}) == 1


def test_retain_hosts_drops_series_of_removed_hosts(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    for host in ("web-01", "web-02"):
        metrics.observe(obs(host, "error_rate", Status.OK, error_ratio=0.0, clients=0))
        metrics.count_log_lines(host, 5)
        metrics.count_responses(host, {"2xx": 5})
    metrics.retain_hosts(["web-01"])
    text = generate_latest(registry).decode()
    assert 'host="web-02"' not in text
    assert registry.get_sample_value("recorder_log_lines_total", {"host": "web-01"}) == 5


def test_incident_state_comes_from_the_store(
    store: Store, registry: CollectorRegistry, metrics: Metrics
) -> None:
    assert registry.get_sample_value("recorder_incidents_open") == 0
    assert registry.get_sample_value("recorder_detection_delay_seconds_count") == 0
    store.create_incident(incident("open", "http-5xx", 12.0))
    store.create_incident(incident("resolved", "missing-symlink", 30.0))
    store.create_incident(incident("closed", None, 8.0))
    # A monitoring gap is an open incident, but no harm was detected: not in the delays.
    store.create_incident(incident("open", None, 600.0, severity="monitoring"))

    assert registry.get_sample_value("recorder_incidents_open") == 2
    opened = {
        f: registry.get_sample_value("recorder_incidents_opened_total", {"fault": f})
        for f in FAULT_LABELS
    }
    assert opened == {f: 0 for f in FAULT_LABELS} | {
        "http-5xx": 1,
        "missing-symlink": 1,
        "unknown": 2,
    }
    assert registry.get_sample_value("recorder_detection_delay_seconds_count") == 3
    assert registry.get_sample_value("recorder_detection_delay_seconds_sum") == 50.0


def test_an_unreadable_store_drops_incident_families_not_the_scrape(
    store: Store, registry: CollectorRegistry, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    store.create_incident(incident("open", "http-5xx", 5.0))
    metrics.observe(obs("web-01", "http", Status.OK))
    side = sqlite3.connect(store.path)
    side.execute("ALTER TABLE incidents RENAME TO incidents_away")
    side.commit()
    text = generate_latest(registry).decode()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert "recorder_probe_success" in names
    assert not names & {
        "recorder_incidents_open",
        "recorder_incidents_opened",
        "recorder_detection_delay_seconds",
    }
    assert "cannot read incidents for /metrics" in caplog.text
    side.execute("ALTER TABLE incidents_away RENAME TO incidents")
    side.commit()
    side.close()
    assert registry.get_sample_value("recorder_incidents_open") == 1


def scrape_families(registry: CollectorRegistry) -> set[str]:
    """Family names as the exposition names them (counters with their _total)."""
    text = generate_latest(registry).decode()
    return set(re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE))


def test_every_metric_is_exported_with_help(metrics: Metrics, registry: CollectorRegistry) -> None:
    metrics.observe(obs("lb-01", "error_rate", Status.OK, error_ratio=0.0, clients=0))
    metrics.count_responses("lb-01", {"2xx": 1})
    metrics.count_log_lines("lb-01", 1)
    metrics.count_rotations("lb-01", 0)
    families = {
        f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())
    }
    exported = {n.removesuffix("_created") for n in scrape_families(registry)}
    assert set(METRIC_NAMES) <= exported
    for name in METRIC_NAMES:
        family = families[name.removesuffix("_total")]
        assert family.documentation, f"{name} has no help text"
        assert family.samples, f"{name} has no samples"


def contract() -> dict[str, set[str]]:
    """The metric contract of docs/metrics.md (from DESIGN.md): name -> label names."""
    text = CONTRACT.read_text(encoding="utf-8")
    found = re.findall(r"^- `(recorder_[a-z0-9_]+)(?:\{([a-z_,]*)\})?`", text, re.MULTILINE)
    return {name: set(filter(None, labels.split(","))) for name, labels in found}


def test_every_metric_of_the_contract_keeps_its_name_and_labels(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    expected = contract()
    assert len(expected) == 13, expected  # the list was read, not skipped
    metrics.observe(obs("lb-01", "error_rate", Status.OK, error_ratio=0.0, clients=0))
    metrics.count_responses("lb-01", {"2xx": 1})
    metrics.count_log_lines("lb-01", 1)
    metrics.count_rotations("lb-01", 1)
    exported: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            name = sample.name
            if family.type == "summary":
                name = family.name  # _sum and _count of one summary
            exported.setdefault(name, set()).update(sample.labels)
    for name, labels in expected.items():
        assert name in exported, f"{name} is not exported"
        assert exported[name] == labels, f"{name} has labels {exported[name]}, not {labels}"
    assert set(METRIC_NAMES) >= set(expected)  # extra metrics are allowed, not fewer
