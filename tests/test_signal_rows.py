"""Alerts and an incident's signals are rows (#22.2): applying one alert writes what it
changed, not the incident's whole state, however many signals the incident holds; and
incidents stored before the signals became rows read, show and draft the same.

The work is counted, not timed: the bytes the process hands to write(2) (the store's WAL
frames), from /proc/self/io."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from probes.base import Fault
from recorder.alertmanager import Alert
from recorder.incidents import IncidentBook, apply_alerts
from recorder.store import Store
from tests.fixtures import T0, lab_config

IO = Path("/proc/self/io")


def written() -> int:
    """Bytes this process passed to write(2) and pwrite(2) so far."""
    for line in IO.read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/self/io")


def alert(n: int) -> Alert:
    return Alert(
        fingerprint=f"{n:016x}",
        firing=True,
        name="BenchHighErrorRate",
        service="web",
        host="lb-01",
        fault=Fault.HTTP_5XX,
        summary=f"5xx above 5% on backend pool {n}",
        starts_at=T0 + timedelta(milliseconds=n),
        ends_at=None,
    )


@pytest.mark.skipif(not IO.exists(), reason="needs Linux /proc/self/io")
def test_bytes_written_per_alert_stay_flat_as_the_incident_grows(tmp_path: Path) -> None:
    config = lab_config(tmp_path / "state", prefix="/")
    store = Store(config.state_path)
    now = [T0]
    book = IncidentBook(config, store, clock=lambda: now[0])

    def apply(first: int, count: int) -> float:
        """Bytes written per alert over `count` new alerts, one webhook each."""
        before = written()
        for n in range(first, first + count):
            now[0] = T0 + timedelta(seconds=n / 100)
            assert apply_alerts(book, store, [alert(n)]) == [1]
        return (written() - before) / count

    apply(0, 50)  # the incident opens; the tables and the WAL take their shape
    early = apply(50, 100)
    apply(150, 1850)
    late = apply(2000, 100)  # 2,000 signals in the incident by now
    incident = store.get(1)
    assert incident is not None and len(incident.data["signals"]) == 2100
    # One alert adds a signal, a timeline entry and an alert row, and updates the
    # incident's fixed-size fields: the same work at 2,000 signals as at 50. The whole
    # incident rewritten per alert grew it about 40 times over (issue 22: 3.5 s, 7.6 s,
    # then over 10 s for three batches of 1,000).
    assert late < 1.5 * early, (early, late)
