"""The /metrics body, mostly built off the request path (issue 19).

At 1,000 targets almost every series is one of the three per-probe families (success,
duration, errors: one series each per target), and building them took most of a scrape:
collecting some 3,000 samples and formatting each label set again (prometheus_client
escapes and validates every label name and value), while the probe threads compete for
the interpreter lock. As Prometheus exporters with many series do, their text is kept:

- `CachedFamilies` holds those families; `ExpositionCache` keeps their text in each format
  scraped, and a thread of its own rebuilds it after they change, shortly before the next
  scrape is expected (at most every `refresh` seconds, only while someone scrapes). A
  scrape builds the other families (incidents, notifications, log counters: about a
  hundred series, and the store's counts read now, so they always agree with `recorder
  incidents list`) and appends them to the kept text.
  The per-probe values are at most `max_age` seconds old, less than a probe interval
  (text older than that, and changed, is rebuilt in the request as before).
- `TextEncoder` writes what `generate_latest` writes, byte for byte (a test holds them
  equal), but formats each series' `name{labels}` once and keeps it while it exists.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

log = logging.getLogger("recorder.exposition")

Encoder = Callable[[Collector], bytes]
_LabelKey = tuple[str, tuple[tuple[str, str], ...]]
_OM_SUFFIXES = ("_created", "_gsum", "_gcount")
_ESCAPING = openmetrics.UNDERSCORES  # generate_latest's default


class TextEncoder:
    """The Prometheus text format (0.0.4), byte for byte what `generate_latest` writes,
    with each series' name and labels formatted once (the memo holds the series of the
    last build only, so series removed by a reload are forgotten)."""

    def __init__(self) -> None:
        self._prefixes: dict[_LabelKey, str] = {}
        self._lock = threading.Lock()  # one build at a time shares the memo

    def __call__(self, registry: Collector) -> bytes:
        with self._lock:
            return self._build(registry)

    def _build(self, registry: Collector) -> bytes:
        old, new = self._prefixes, dict[_LabelKey, str]()
        output: list[str] = []

        def line(s: Sample) -> str:
            key = (s.name, tuple(s.labels.items()))
            prefix = new.get(key) or old.get(key) or _prefix(s)
            new[key] = prefix
            stamp = "" if s.timestamp is None else f" {int(float(s.timestamp) * 1000):d}"
            value = floatToGoString(s.value)  # type: ignore[no-untyped-call]
            return f"{prefix} {value}{stamp}\n"

        for metric in registry.collect():
            mname, mtype = metric.name, metric.type
            # The same munging from OpenMetrics types as generate_latest.
            if mtype == "counter":
                mname += "_total"
            elif mtype == "info":
                mname, mtype = mname + "_info", "gauge"
            elif mtype == "stateset":
                mtype = "gauge"
            elif mtype == "gaugehistogram":
                mtype = "histogram"
            elif mtype == "unknown":
                mtype = "untyped"
            doc = _doc(metric.documentation)
            name = openmetrics.escape_metric_name(mname, _ESCAPING)
            output.append(f"# HELP {name} {doc}\n# TYPE {name} {mtype}\n")
            om_samples: dict[str, list[str]] = {}
            for s in metric.samples:
                for suffix in _OM_SUFFIXES:
                    if s.name == metric.name + suffix:
                        om_samples.setdefault(suffix, []).append(line(s))
                        break
                else:
                    output.append(line(s))
            for suffix, lines in sorted(om_samples.items()):
                om_name = openmetrics.escape_metric_name(metric.name + suffix, _ESCAPING)
                output.append(f"# HELP {om_name} {doc}\n# TYPE {om_name} gauge\n")
                output.extend(lines)
        self._prefixes = new
        return "".join(output).encode("utf-8")


def _doc(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _prefix(s: Sample) -> str:
    """`name{label="value",...}` as generate_latest formats it (UNDERSCORES escaping)."""
    name = openmetrics.escape_metric_name(s.name, _ESCAPING)
    if not s.labels:
        return name
    pairs = []
    for k, v in sorted(s.labels.items()):
        # generate_latest escapes values as OpenMetrics' ALLOWUTF8 scheme does
        value = v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
        pairs.append(f'{openmetrics.escape_label_name(k, _ESCAPING)}="{value}"')
    labels = ",".join(pairs)
    return f"{name}{{{labels}}}"


_OPENMETRICS_EOF = b"# EOF\n"
# The collector of cached families of each registry (one per registry: the daemon's Metrics).
_CACHED: weakref.WeakKeyDictionary[CollectorRegistry, CachedFamilies] = weakref.WeakKeyDictionary()
_building = threading.local()  # .rest: this thread builds the families not cached


class CachedFamilies(Collector):
    """Families whose text /metrics keeps between scrapes; `changed()` after each update.
    Registered first in its registry, so the kept text leads the body in the same order
    as a plain `generate_latest`."""

    def __init__(self, registry: CollectorRegistry, metrics: Sequence[MetricWrapperBase]) -> None:
        self.metrics = tuple(metrics)
        self.version = 0
        registry.register(self)
        _CACHED[registry] = self

    def changed(self) -> None:
        self.version += 1  # one writer (the engine thread); readers only compare

    def describe(self) -> Iterator[Metric]:
        for metric in self.metrics:
            yield from metric.describe()

    def collect(self) -> Iterator[Metric]:
        if getattr(_building, "rest", False):
            return  # their kept text is in the body already
        yield from self.own()

    def own(self) -> Iterator[Metric]:
        for metric in self.metrics:
            yield from metric.collect()


class _Only(Collector):
    """The cached families as a registry of their own, for the encoders."""

    def __init__(self, families: CachedFamilies) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return self.families.own()


class ExpositionCache:
    """/metrics bodies for one registry (see the module)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        refresh: float = 1.0,
        max_age: float = 2.0,
        idle: float = 300.0,
    ) -> None:
        self.registry = registry
        self.refresh = refresh
        self.max_age = max_age
        self.idle = idle  # the refresher stops when nobody scraped for this long
        self._rest_text = TextEncoder()
        self._kept_text = TextEncoder()
        # content type -> (encoder, version, built at (monotonic), text) of the cached families
        self._kept: dict[str, tuple[Encoder, int, float, bytes]] = {}
        self._asked = 0.0  # when the last scrape came (monotonic)
        self._gap = 0.0  # the time between the last two scrapes: the next one is expected then
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def body(self, accept: str) -> tuple[bytes, str]:
        """The body for an Accept header, and its content type."""
        encoder, content_type = choose_encoder(accept)
        text = encoder is generate_latest  # the plain text format, default escaping
        families = _CACHED.get(self.registry)
        if families is None:
            return (self._rest_text if text else encoder)(self.registry), content_type
        now = time.monotonic()
        with self._lock:
            self._gap, self._asked = (now - self._asked if self._asked else 0.0), now
            kept = self._kept.get(content_type)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, args=(families,), name="metrics-exposition", daemon=True
                )
                self._thread.start()
        if kept is None or (kept[1] != families.version and now - kept[2] > self.max_age):
            kept_encoder = self._kept_text if text else encoder
            head = self._keep(content_type, kept_encoder, families)
        else:
            head = kept[3]
        _building.rest = True
        try:
            rest = (self._rest_text if text else encoder)(self.registry)
        finally:
            _building.rest = False
        return head + rest, content_type

    def _keep(self, content_type: str, encoder: Encoder, families: CachedFamilies) -> bytes:
        """Build and keep the cached families' text (without OpenMetrics' end marker)."""
        version, built_at = families.version, time.monotonic()
        body = encoder(_Only(families))
        body = body.removesuffix(_OPENMETRICS_EOF)
        with self._lock:
            current = self._kept.get(content_type)
            if current is None or current[2] < built_at:
                self._kept[content_type] = (encoder, version, built_at, body)
        return body

    def _run(self, families: CachedFamilies) -> None:
        while True:
            time.sleep(self.refresh)
            with self._lock:
                now = time.monotonic()
                if now - self._asked > self.idle:
                    self._kept.clear()
                    self._thread = None
                    return
                # Rebuild only near the next scrape expected (a Prometheus server scrapes
                # at a steady interval): a scrape every 15 s then costs one or two builds,
                # not fifteen; one that comes unexpectedly late builds in the request.
                expected = self._asked + self._gap
                if not expected - 2 * self.refresh <= now <= expected + self.refresh:
                    continue
                stale = [(c, k[0]) for c, k in self._kept.items() if k[1] != families.version]
            for content_type, encoder in stale:
                try:
                    self._keep(content_type, encoder, families)
                except Exception:  # a scrape then builds it in the request, and fails there
                    log.exception("cannot build the probe families of /metrics")
