"""Delivering notifications from the outbox.

The incident book queues notices in the store in the same transaction as the incident
change that produced them (`Store.create_incident`, `save_detection`, `close_incident`).
Here one thread per receiver takes its oldest pending delivery, sends it, and marks it
sent; a failure is retried with exponential backoff until `notify.max_age`, then marked
failed. Nothing here runs on the engine thread, so a receiver that hangs or refuses slows
only its own queue, never probing or detection.

At least once: a daemon killed between a receiver's acknowledgement and the commit of
`sent` sends that one delivery again after the restart, with the same delivery id.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from recorder.config import Config
from recorder.model import (
    Incident,
    IncidentStatus,
    Notice,
    Severity,
    duration_words,
    parse_iso,
    utcnow,
)
from recorder.receivers import Delivery, DeliveryError, Skipped, incident_link, send
from recorder.store import Store, StoreError, delivery_id, notice_snapshot

log = logging.getLogger("recorder.notify")

BACKOFF_FIRST = 1.0  # seconds before the first retry; doubles each time
BACKOFF_MAX = 300.0  # the default of notify.retry_max
POLL = 0.2  # seconds between looks at an empty queue
REMINDERS_EVERY = 10.0  # seconds between looks for repeat and overdue reminders

OUTCOMES = ("sent", "failed", "expired", "skipped")


def backoff(attempts: int, cap: float = BACKOFF_MAX) -> float:
    """Seconds to wait after the `attempts`-th failure: 1, 2, 4, ... up to `cap`."""
    return float(min(cap, BACKOFF_FIRST * 2 ** min(30, max(0, attempts - 1))))


class RateLimit:
    """A token bucket: `per_minute` messages a minute, in bursts of up to that many."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self.tokens = self.capacity
        self.clock = clock
        self.last = clock()

    def wait_time(self) -> float:
        """0 and a token taken, or the seconds until one is available."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class NotifyMetrics:
    def __init__(self, registry: CollectorRegistry, store: Store) -> None:
        self.deliveries = Counter(
            "recorder_notifications",
            "Delivery attempts by receiver and outcome (sent, failed: will retry, expired: "
            "given up after notify.max_age, skipped: nothing to send for the event)",
            ["receiver", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "recorder_notify_delivery_seconds",
            "From the event to the receiver's acknowledgement",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600),
            registry=registry,
        )
        registry.register(OutboxCollector(store))


class OutboxCollector(Collector):
    """`recorder_notify_outbox_depth`: deliveries waiting, read from the store at scrape."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("recorder_notify_outbox_depth", "")

    def collect(self) -> Iterator[Metric]:
        try:
            depth = self.store.outbox_depth()
        except Exception:  # noqa: BLE001 (a scrape must not fail on the store)
            return
        yield GaugeMetricFamily(
            "recorder_notify_outbox_depth", "Notifications waiting to be delivered", value=depth
        )


def delivery_of(config: Config, row: dict[str, Any]) -> Delivery:
    return Delivery(
        delivery_id=row["delivery_id"],
        receiver=row["receiver"],
        event=row["event"],
        snapshot=json.loads(row["payload"]),
        link=incident_link(config, int(row["incident_id"])),
    )


def deliver_one(
    config: Config,
    store: Store,
    name: str,
    now: datetime,
    metrics: NotifyMetrics | None = None,
) -> str | None:
    """Try the receiver's oldest due delivery; the outcome, or None when none is due."""
    row = store.next_delivery(name, now)
    if row is None:
        return None
    receiver = config.notify.receivers.get(name)
    created = parse_iso(row["created_at"]) or now
    outcome, error = "sent", None
    if receiver is None:
        outcome, error = "failed", f"no receiver {name!r} in the config"
    else:
        try:
            send(name, receiver, delivery_of(config, row))
        except Skipped as exc:
            outcome, error = "skipped", str(exc)
        except DeliveryError as exc:
            outcome, error = "failed", str(exc)
    if outcome == "failed":
        if now - created >= timedelta(seconds=config.notify.max_age):
            outcome = "expired"
            store.delivery_done(row["id"], "failed", now, error)
            log.error("gave up delivering %s to %s: %s", row["delivery_id"], name, error)
        else:
            wait = backoff(int(row["attempts"]) + 1, config.notify.retry_max)
            store.delivery_retry(row["id"], now + timedelta(seconds=wait), error or "")
            log.warning("delivery to %s failed (retry in %gs): %s", name, wait, error)
    else:
        store.delivery_done(row["id"], "sent" if outcome == "sent" else "skipped", utcnow(), error)
        if metrics and outcome == "sent":
            metrics.latency.observe(max(0.0, (utcnow() - created).total_seconds()))
    if metrics:
        metrics.deliveries.labels(name, outcome).inc()
    return outcome


def reminders(config: Config, store: Store, now: datetime) -> int:
    """Queue what time alone produces: `opened` again for incidents still open after each
    `repeat_interval`, and `overdue` for incidents resolved `overdue_after` ago and not
    closed. Idempotent (the keys are fixed by the clock), so calling it often is cheap."""
    notify = config.notify
    if not notify.routes:
        return 0
    added = 0
    for incident in store.list(status=IncidentStatus.OPEN):
        if incident.severity is not Severity.OUTAGE or not notify.repeat_interval:
            continue
        if incident.planned:
            continue  # inside its maintenance window still
        n = int((now - incident.detected_at).total_seconds() // notify.repeat_interval)
        receivers = notify.receivers_for(incident.service, "opened")
        if n >= 1 and receivers:
            text = f"Still open after {duration_words(now - incident.detected_at)}"
            added += store.add_notices(
                incident, [Notice("opened", f"repeat:{n}", now, receivers, text)]
            )
    for incident in store.list(status=IncidentStatus.RESOLVED):
        if incident.resolved_at is None or incident.severity is not Severity.OUTAGE:
            continue
        if incident.planned:
            continue  # planned work, over inside its window: nobody was told
        late = now - incident.resolved_at
        receivers = notify.receivers_for(incident.service, "overdue")
        if late.total_seconds() >= notify.overdue_after and receivers:
            text = f"Resolved {duration_words(late)} ago; the postmortem is not closed"
            added += store.add_notices(
                incident, [Notice("overdue", "overdue", now, receivers, text)]
            )
    return added


class Sender:
    """One thread per configured receiver, plus the reminder loop; `update()` takes a new
    config (reload). Daemon threads: a receiver that hangs never holds up a stop."""

    def __init__(
        self,
        config: Config,
        store: Store,
        metrics: NotifyMetrics | None,
        active: Callable[[], bool] = lambda: True,
    ) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        # False while this recorder does not hold the leadership lease (#21): a leader
        # resumed after a pause past its lease sends nothing, even before its engine
        # notices and stops this sender.
        self.active = active
        self._stop = threading.Event()
        self._threads: dict[str, threading.Thread] = {}

    def start(self) -> None:
        self.update(self.config)
        t = threading.Thread(target=self._reminder_loop, name="notify-reminders", daemon=True)
        t.start()
        self._threads[""] = t

    def update(self, config: Config) -> None:
        self.config = config
        for name in config.notify.receivers:
            if name not in self._threads:
                t = threading.Thread(
                    target=self._loop, args=(name,), name=f"notify-{name}", daemon=True
                )
                t.start()
                self._threads[name] = t

    def stop(self) -> None:
        self._stop.set()

    def _loop(self, name: str) -> None:
        limit: RateLimit | None = None
        while not self._stop.is_set():
            receiver = self.config.notify.receivers.get(name)
            if receiver is None:
                self._stop.wait(1.0)  # removed by a reload; its rows wait in the outbox
                continue
            if limit is None or limit.capacity != receiver.rate_limit:
                limit = RateLimit(receiver.rate_limit)
            if not self.active():
                self._stop.wait(POLL)
                continue
            try:
                if self.store.next_delivery(name, utcnow()) is None:
                    self._stop.wait(POLL)
                    continue
                wait = limit.wait_time()
                if wait:
                    self._stop.wait(wait)
                    continue
                deliver_one(self.config, self.store, name, utcnow(), self.metrics)
            except (StoreError, OSError) as exc:
                log.warning("notify %s: store not usable now: %s", name, exc)
                self._stop.wait(1.0)
            except Exception:  # the sender must outlive any one bad row
                log.exception("notify %s: unexpected error", name)
                self._stop.wait(1.0)

    def _reminder_loop(self) -> None:
        while not self._stop.is_set():
            try:
                if self.active():
                    reminders(self.config, self.store, utcnow())
            except Exception as exc:  # noqa: BLE001 (next round tries again)
                log.warning("notify reminders: %s", exc)
            self._stop.wait(REMINDERS_EVERY)


def status(store: Store) -> list[dict[str, Any]]:
    """Pending and failed deliveries, oldest first (`recorder notify status`)."""
    return store.deliveries(("pending", "failed"))


def send_test(config: Config, name: str) -> str:
    """Send a test message to one receiver now, not through the outbox; its delivery id,
    or DeliveryError when the receiver refused it."""
    now = utcnow()
    incident = Incident(
        id=0,
        status=IncidentStatus.OPEN,
        title="test message from the recorder: no incident",
        service="test",
        fault=None,
        started_at=now,
        detected_at=now,
        hosts=["test"],
    )
    notice = Notice("test", f"test:{now.timestamp()}", now, [name], "A test: ignore me.")
    delivery = Delivery(
        delivery_id=delivery_id(0, now, notice.key, name),
        receiver=name,
        event="test",
        snapshot=notice_snapshot(incident, notice),
        link=incident_link(config, 0).rsplit("/", 1)[0],
    )
    send(name, config.notify.receivers[name], delivery)
    return delivery.delivery_id
