"""Prometheus metrics: the names of DESIGN.md, in base units, with bounded labels only.

Two kinds of state, exported two ways (as prometheus/client_python recommends):

- what the engine sees as it happens (probe results, log counters) is pushed into
  ordinary gauges and counters by the engine thread through `Metrics`;
- incident state lives in the store, so `IncidentCollector` reads it at scrape time, by
  aggregate queries only (a scrape costs the same with 20 incidents or 20,000)
  instead of gauges being poked from the many places that change incidents. A scrape
  therefore always agrees with `recorder incidents list`, across restarts too.

Label values come only from the config (host and probe names), the fault vocabulary and
the five HTTP status classes: never URLs, client addresses or alert labels.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from probes.base import Fault, Observation, Status
from probes.facts import STATUS_CLASSES, LogCounters
from recorder import __version__
from recorder.exposition import CachedFamilies
from recorder.store import Store

log = logging.getLogger("recorder.metrics")

UNKNOWN_FAULT = "unknown"  # an incident whose cause is not (yet) one of our fault kinds
FAULT_LABELS = (*(str(f) for f in Fault), UNKNOWN_FAULT)

# Every metric family the recorder exports; DESIGN.md is the contract, a test holds both
# to it.
METRIC_NAMES = (
    "recorder_probe_success",
    "recorder_probe_duration_seconds",
    "recorder_probe_errors_total",
    "recorder_http_responses_total",
    "recorder_http_5xx_ratio",
    "recorder_affected_clients_ratio",
    "recorder_incidents_open",
    "recorder_incidents_opened_total",
    "recorder_detection_delay_seconds",
    "recorder_log_lines_total",
    "recorder_log_rotations_total",
    "recorder_build_info",
    "recorder_leader",
)


class Metrics:
    """The engine's metrics. Pass a fresh `CollectorRegistry()` in tests; the default is
    the process-wide registry."""

    def __init__(
        self,
        registry: CollectorRegistry = REGISTRY,
        *,
        store: Store,
        version: str = __version__,
    ) -> None:
        self.registry = registry
        # The per-probe families hold most of the series (three per target): they are
        # collected together, first, so /metrics can keep their text between scrapes
        # (recorder/exposition.py) and build the rest in the request.
        self.probe_success = Gauge(
            "recorder_probe_success",
            "1 when the last run of the probe found the host healthy, 0 when it failed "
            "or could not look",
            ["host", "probe"],
            registry=None,
        )
        self.probe_duration = Gauge(
            "recorder_probe_duration_seconds",
            "How long the last run of the probe took",
            ["host", "probe"],
            registry=None,
        )
        self.probe_errors = Counter(
            "recorder_probe_errors_total",
            "Probe runs that could not look at the host (unreachable, timeout, permission)",
            ["host", "probe"],
            registry=None,
        )
        self.probe_families = CachedFamilies(
            registry, (self.probe_success, self.probe_duration, self.probe_errors)
        )
        self.http_responses = Counter(
            "recorder_http_responses_total",
            "Responses in the host's access log, by status class",
            ["host", "class"],
            registry=registry,
        )
        self.http_5xx_ratio = Gauge(
            "recorder_http_5xx_ratio",
            "Share of responses with a 5xx status in the error_rate probe's last window",
            ["host"],
            registry=registry,
        )
        self.affected_ratio = Gauge(
            "recorder_affected_clients_ratio",
            "Share of distinct clients that got at least one 5xx in the error_rate "
            "probe's last window",
            ["host"],
            registry=registry,
        )
        self.log_lines = Counter(
            "recorder_log_lines_total",
            "Access log lines read",
            ["host"],
            registry=registry,
        )
        self.log_rotations = Counter(
            "recorder_log_rotations_total",
            "Access log rotations noticed (the file was replaced or truncated)",
            ["host"],
            registry=registry,
        )
        self.build_info = Gauge(
            "recorder_build_info",
            "Always 1; the recorder's version as a label",
            ["version"],
            registry=registry,
        )
        self.build_info.labels(version).set(1)
        # 1 while this recorder holds the leadership lease (#21); the daemon sets it.
        self.leader = Gauge(
            "recorder_leader",
            "1 while this recorder holds the leadership lease (always with SQLite), else 0",
            registry=registry,
        )
        self.leader.set(1)
        self.incidents = IncidentCollector(store)
        registry.register(self.incidents)
        # (host, probe) pairs seen, so series of hosts dropped by a reload can be removed.
        self._seen: set[tuple[str, str]] = set()
        # The last log counters of each host (probes/facts.py), to count what is new.
        self._counted: dict[str, LogCounters] = {}
        self._lock = threading.Lock()

    # ---- the engine's inputs --------------------------------------------------------------

    def observe(self, obs: Observation) -> None:
        """One probe result: success, duration, errors; the error_rate ratios."""
        with self._lock:
            self._seen.add((obs.host, obs.probe))
        self.probe_success.labels(obs.host, obs.probe).set(1 if obs.status is Status.OK else 0)
        self.probe_duration.labels(obs.host, obs.probe).set(max(0.0, obs.duration))
        errors = self.probe_errors.labels(obs.host, obs.probe)  # exported as 0 until one
        if obs.status is Status.ERROR:
            errors.inc()
        self.probe_families.changed()  # after the values: a rebuild then has them
        if obs.status is not Status.ERROR:
            self._ratios(obs)
        if obs.facts.counters is not None:
            self._count_log(obs.host, obs.facts.counters)

    def _count_log(self, host: str, now: LogCounters) -> None:
        """Counters from a log's cumulative totals (the engine thread only).

        Responses count from zero: the first totals seen are responses nginx logged, and
        the counter then equals the log's own count by class (after a restart too, as the
        probe's totals survive it). A total that fell (the probe's saved state lost) is a
        new count from zero. Lines and rotations count what is new since the first totals
        this process saw."""
        with self._lock:
            before = self._counted.get(host)
            self._counted[host] = now
        previous = before.responses if before else (0, 0, 0, 0, 0)
        fell = any(n < p for n, p in zip(now.responses, previous, strict=True))
        self.count_responses(
            host,
            {
                cls: n - (0 if fell else p)
                for cls, n, p in zip(STATUS_CLASSES, now.responses, previous, strict=True)
            },
        )
        if before is None:
            self.count_log_lines(host, 0)  # exported as 0 from the first totals
            return
        if now.lines >= before.lines:
            self.count_log_lines(host, now.lines - before.lines)
        if now.rotations > before.rotations:
            self.count_rotations(host, now.rotations - before.rotations)

    def _ratios(self, obs: Observation) -> None:
        """The shares a log-reading probe states as facts (error_rate's window)."""
        error_ratio = _ratio(obs.facts.error_ratio)
        if error_ratio is not None:
            self.http_5xx_ratio.labels(obs.host).set(error_ratio)
        harm, affected = obs.facts.clients, None
        if harm is not None:
            clients, hurt = _count(harm.clients), _count(harm.hurt)
            if clients == 0:
                affected = 0.0  # nobody in the window: nobody hurt
            elif clients and hurt is not None:
                affected = _ratio(hurt / clients)
        if affected is not None:
            self.affected_ratio.labels(obs.host).set(affected)

    def count_responses(self, host: str, classes: Mapping[str, int]) -> None:
        """New responses since the last call, by class (`5xx`: 12). Other keys and
        negative counts are ignored: the label set stays bounded, counters never fall."""
        for cls, n in classes.items():
            if cls in STATUS_CLASSES and _count(n) is not None:
                self.http_responses.labels(host, cls).inc(n)

    def count_log_lines(self, host: str, n: int) -> None:
        if _count(n) is not None:
            self.log_lines.labels(host).inc(n)

    def count_rotations(self, host: str, n: int) -> None:
        if _count(n) is not None:
            self.log_rotations.labels(host).inc(n)

    def retain_hosts(self, hosts: Iterable[str]) -> None:
        """Drop the series of hosts no longer configured (after a reload)."""
        keep = set(hosts)
        with self._lock:
            gone = {(h, p) for h, p in self._seen if h not in keep}
            self._seen -= gone
            for host in [h for h in self._counted if h not in keep]:
                del self._counted[host]
        for host, probe in gone:
            for metric in (self.probe_success, self.probe_duration, self.probe_errors):
                _remove(metric, host, probe)
        self.probe_families.changed()
        for host in {h for h, _ in gone}:
            for metric in (self.http_5xx_ratio, self.affected_ratio):
                _remove(metric, host)
            for metric in (self.log_lines, self.log_rotations):
                _remove(metric, host)
            for cls in STATUS_CLASSES:
                _remove(self.http_responses, host, cls)


def _remove(metric: Gauge | Counter, *labels: str) -> None:
    try:
        metric.remove(*labels)
    except KeyError:
        pass  # never had that child


def _ratio(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value):
        return None
    return min(1.0, max(0.0, float(value)))


def _count(value: Any) -> int | None:
    """A usable non-negative integer count, else None."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


class IncidentCollector(Collector):
    """Incident state read from the store at scrape time.

    - `recorder_incidents_open`: incidents open now (outages and monitoring gaps).
    - `recorder_incidents_opened_total{fault}`: incidents ever opened, by their fault
      kind (`unknown` while no kind is known); every kind is exported, 0 included, so
      `increase()` sees the first one.
    - `recorder_detection_delay_seconds`: a summary over every outage ever opened of
      detected_at minus started_at. `_sum / _count` is the mean delay; the rate of both
      over a window gives the mean of the incidents opened in it.

    A store that cannot be read gives no samples for these families (the scrape itself
    still succeeds, and the absence is what an alert on `absent()` sees).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._failing: str | None = None

    def describe(self) -> Iterator[Metric]:
        # Names only, so registering does not read the store.
        yield GaugeMetricFamily("recorder_incidents_open", "")
        yield CounterMetricFamily("recorder_incidents_opened", "", labels=["fault"])
        yield SummaryMetricFamily("recorder_detection_delay_seconds", "")

    def collect(self) -> Iterator[Metric]:
        try:
            counts = self.store.counts()
            by_fault = self.store.counts_by_fault()
            delay_count, delay_sum = self.store.detection_delays()
        except Exception as exc:  # a scrape must not fail because of incident state
            # sqlite3.Error/StoreError/OSError: the store; ValueError, KeyError, TypeError:
            # a row the model cannot read back. Whatever it is, the rest of /metrics stands.
            reason = f"{type(exc).__name__}: {exc}"
            if reason != self._failing:
                log.warning("cannot read incidents for /metrics: %s", reason)
            self._failing = reason
            return
        if self._failing:
            log.info("incidents readable again for /metrics")
            self._failing = None
        yield GaugeMetricFamily(
            "recorder_incidents_open",
            "Incidents open now",
            value=counts.get("open", 0),
        )
        opened = CounterMetricFamily(
            "recorder_incidents_opened",
            "Incidents opened, by fault kind",
            labels=["fault"],
        )
        totals = dict.fromkeys(FAULT_LABELS, 0)
        for fault, n in by_fault.items():
            key = fault if fault in totals else UNKNOWN_FAULT
            totals[key] += n
        for fault, n in totals.items():
            opened.add_metric([fault], n)
        yield opened
        yield SummaryMetricFamily(
            "recorder_detection_delay_seconds",
            "Time from the first evidence of harm to the incident being opened, over every outage",
            count_value=delay_count,
            sum_value=delay_sum,
        )
