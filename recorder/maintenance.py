"""Maintenance windows: planned work that pages nobody.

Two sources: recurring windows in the config (`start: "Sun 02:00"` weekly or `"02:00"`
daily, a `duration`, a `timezone`) and one-off windows people start and end
(`recorder maintenance start/list/end`), kept in the store. Probing goes on inside a
window. Harm that begins inside one opens an incident marked `planned` that notifies
nobody; if the harm outlasts the window, the incident becomes a normal one when the window
ends (a `maintenance` timeline entry says so) and its notifications start then.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from recorder.config import MAINTENANCE_START, Config, MaintenanceWindow
from recorder.model import iso, parse_iso
from recorder.store import Store

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass
class Window:
    """One window as it applies now: a one-off (id > 0) or an occurrence of a recurring
    one (id 0)."""

    id: int
    service: str
    host: str | None  # None: every host of the service
    starts_at: datetime
    ends_at: datetime
    reason: str
    source: str

    def covers(self, service: str, hosts: Iterable[str], at: datetime) -> bool:
        if service != self.service or not self.starts_at <= at < self.ends_at:
            return False
        return self.host is None or self.host in set(hosts)

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "service": self.service,
            "host": self.host,
            "starts_at": iso(self.starts_at),
            "ends_at": iso(self.ends_at),
            "reason": self.reason,
            "source": self.source,
        }


def occurrence(
    window: MaintenanceWindow, zone: ZoneInfo, at: datetime
) -> tuple[datetime, datetime]:
    """The latest start of a recurring window at or before `at`, and its end."""
    match = MAINTENANCE_START.match(window.start.strip())
    assert match, window.start  # the config validated it
    day, hour, minute = match.group(1), int(match.group(2)), int(match.group(3))
    local = at.astimezone(zone)
    start = datetime.combine(local.date(), time(hour, minute), tzinfo=zone)
    if day is None:
        if start > local:
            start = datetime.combine(local.date() - timedelta(days=1), time(hour, minute), zone)
    else:
        back = (local.weekday() - DAYS.index(day)) % 7
        start = datetime.combine(local.date() - timedelta(days=back), time(hour, minute), zone)
        if start > local:
            start = datetime.combine(start.date() - timedelta(days=7), time(hour, minute), zone)
    return start, start + timedelta(seconds=window.duration)


def recurring(config: Config, at: datetime) -> list[Window]:
    """Occurrences of the config's recurring windows that are on at `at`."""
    found = []
    for window in config.maintenance:
        zone = ZoneInfo(window.timezone) if window.timezone else config.zone
        start, end = occurrence(window, zone, at)
        if start <= at < end:
            hosts: list[str | None] = [*window.hosts] or [None]
            for service in window.services:
                for host in hosts:
                    found.append(Window(0, service, host, start, end, window.reason, "config"))
    return found


def active(config: Config, store: Store | None, at: datetime) -> list[Window]:
    """Every window on at `at`, one-off (from the store; none without one) and recurring."""
    rows = store.windows(at) if store is not None else []
    return [*(one_off(r) for r in rows), *recurring(config, at)]


def covering(
    config: Config, store: Store | None, service: str, hosts: Iterable[str], at: datetime
) -> Window | None:
    """The window covering harm on `hosts` of `service` at `at`: the one ending last.
    With no store, only the config's recurring windows count."""
    hosts = list(hosts)
    on = [w for w in active(config, store, at) if w.covers(service, hosts, at)]
    return max(on, key=lambda w: w.ends_at) if on else None


def one_off(row: dict[str, object]) -> Window:
    starts, ends = parse_iso(str(row["starts_at"])), parse_iso(str(row["ends_at"]))
    assert starts and ends
    host = row["host"]
    return Window(
        int(str(row["id"])),
        str(row["service"]),
        str(host) if host else None,
        starts,
        ends,
        str(row["reason"]),
        str(row["source"]),
    )


def upcoming(config: Config, now: datetime) -> list[Window]:
    """Each recurring window's occurrence that is on now, else its next one."""
    found = []
    for window in config.maintenance:
        zone = ZoneInfo(window.timezone) if window.timezone else config.zone
        start, end = occurrence(window, zone, now)
        if end <= now:
            step = timedelta(
                days=1
                if MAINTENANCE_START.match(window.start.strip())
                and not window.start.strip()[0].isalpha()
                else 7
            )
            start, end = occurrence(window, zone, start + step + timedelta(minutes=1))
        hosts: list[str | None] = [*window.hosts] or [None]
        for service in window.services:
            for host in hosts:
                found.append(Window(0, service, host, start, end, window.reason, "config"))
    return found


def start(
    config: Config,
    store: Store,
    service: str,
    host: str | None,
    for_: str,
    reason: str,
    source: str,
    now: datetime,
) -> Window:
    """Start a one-off window now (the CLI's `maintenance start` and the API's POST: one set
    of checks). ValueError, naming the field, when the service, host or length is wrong."""
    from probes.durations import parse_duration

    if config.services and service not in config.services:
        raise ValueError(
            f"service: unknown service {service!r} (known: {', '.join(sorted(config.services))})"
        )
    if host is not None and host not in config.hosts:
        raise ValueError(f"host: unknown host {host!r} (known: {', '.join(sorted(config.hosts))})")
    try:
        seconds = parse_duration(for_)
    except ValueError as exc:
        raise ValueError(f"for: {exc}") from None
    if seconds <= 0:
        raise ValueError("for: must be greater than 0")
    if not reason.strip():
        raise ValueError("reason: must not be empty")
    ends = now + timedelta(seconds=seconds)
    window_id = store.add_window(service, host, now, ends, reason, source)
    return Window(window_id, service, host, now, ends, reason, source)


def listing(config: Config, store: Store, now: datetime) -> list[Window]:
    """One-off windows on now or later, then each recurring window's current or next one."""
    return [one_off(r) for r in store.windows()] + upcoming(config, now)
