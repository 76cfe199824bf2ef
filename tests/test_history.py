"""Probe history for the status page: states and since when, availability per window from
hour and day buckets, error samples apart, pruning, and a history that cannot be written
never stopping anything. The page itself over the real HTTP server, hostile text escaped."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from probes.base import Observation, Status
from recorder.api import make_app, serve
from recorder.config import parse_config
from recorder.history import DAY, HOUR, History
from recorder.store import Store
from tests.test_incidents import Harness
from tests.test_web import Engine, tags

T0 = datetime(2026, 11, 23, 0, 0, 0, tzinfo=UTC)


def obs(at: datetime, status: Status, host: str = "lb-01", probe: str = "http") -> Observation:
    return Observation(host, probe, status, f"{probe} {status} on {host}", at=at)


def rows(history: History, width: int) -> int:
    db = sqlite3.connect(history.path)
    try:
        return int(db.execute("SELECT COUNT(*) FROM samples WHERE width=?", (width,)).fetchone()[0])
    finally:
        db.close()


def test_state_since_and_availability(tmp_path: Path) -> None:
    history = History(tmp_path, days=30)
    at = T0
    # Three days at one sample a minute: day 1 all ok, day 2 a quarter failing, day 3 ok
    # with an hour the recorder could not look.
    for minute in range(3 * 1440):
        at = T0 + timedelta(minutes=minute)
        day, in_day = divmod(minute, 1440)
        if day == 1 and in_day < 360:
            status = Status.FAIL
        elif day == 2 and 600 <= in_day < 660:
            status = Status.ERROR
        else:
            status = Status.OK
        history.add(obs(at, status))
        if minute % 60 == 59:
            history.flush(at)
    history.refresh(at)
    state = history.states()[("lb-01", "http")]
    assert state.status == "ok" and state.since == T0 + timedelta(days=2, minutes=660)
    figures = history.availability()[("lb-01", "http")]
    assert figures["24 h"].ratio == 1.0 and figures["24 h"].unknown == 60
    # 7 d and 30 d read the day buckets: 360 failing of 3 * 1440 - 60 judged.
    assert figures["7 d"].judged == 3 * 1440 - 60
    assert figures["7 d"].ratio == pytest.approx(1 - 360 / (3 * 1440 - 60))
    assert figures["30 d"] == figures["7 d"]
    # Hour rows for two days, one day row a day.
    assert rows(history, HOUR) <= 49 and rows(history, DAY) == 3
    history.close()


def test_pruning_keeps_days_and_drops_old_hours(tmp_path: Path) -> None:
    history = History(tmp_path, days=3)
    for day in range(6):
        at = T0 + timedelta(days=day, hours=12)
        history.add(obs(at, Status.OK))
        history.flush(at)
    assert rows(history, DAY) == 3
    assert rows(history, HOUR) == 3  # the hours of the last 48 h only (day 3 12:00 on)
    assert history.windows() == ["24 h"]  # 7 d and 30 d need more days than are kept
    history.close()


def test_a_state_survives_a_restart(tmp_path: Path) -> None:
    first = History(tmp_path)
    first.add(obs(T0, Status.FAIL))
    first.flush(T0)
    first.close()
    second = History(tmp_path)
    second.add(obs(T0 + timedelta(minutes=5), Status.FAIL))
    second.flush(T0 + timedelta(minutes=5))
    assert second.states()[("lb-01", "http")].since == T0
    second.close()


def test_unwritable_history_is_logged_not_raised(tmp_path: Path) -> None:
    # A file where the state dir should be (root writes anywhere else).
    blocker = tmp_path / "state"
    blocker.write_text("not a directory")
    history = History(blocker)
    history.add(obs(T0, Status.OK))
    history.flush(T0)  # logged, not raised
    assert history.states() == {}


def test_status_page_shows_every_check_escaped(tmp_path: Path) -> None:
    h = Harness(tmp_path / "h")
    history = History(tmp_path / "history")
    history.add(obs(T0, Status.OK, "lb-01", "http"))
    history.add(
        Observation("web-01", "sites", Status.FAIL, '"><img src=x onerror=alert(1)> missing', at=T0)
    )
    history.flush(T0)
    engine = Engine(h.config, h.store)
    engine.history = history
    server = serve("127.0.0.1:0", make_app(engine))
    try:
        page = requests.get(f"http://127.0.0.1:{server.port}/status", timeout=5)
        assert page.status_code == 200
        html = page.text
        for host in ("lb-01", "web-01", "web-02"):
            assert f'id="host-{host}"' in html
        assert "not run yet" in html  # configured, never observed
        assert 'class="check-fail"' in html and "100%" in html
        assert not any(t == "img" or "onerror" in a for t, a in tags(html))
        assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt; missing" in html
        assert "Content-Security-Policy" in page.headers
    finally:
        server.close()
        history.close()


def test_status_pages_a_fleet_by_100_hosts_and_names_the_hosts_not_ok(tmp_path: Path) -> None:
    """250 hosts: three pages; the hosts failing now are named on every page, linked to the
    page they are on, so a failure on page 3 is not hidden behind page 1."""
    hosts = [f"web-{i:04d}" for i in range(250)]
    config = parse_config(
        {
            "state_dir": str(tmp_path / "state"),
            "services": {"web": {"hosts": hosts}},
            "hosts": {h: {"local": {"prefix": "/"}} for h in hosts},
            "checks": [{"hosts": hosts, "probes": {"sites": {}, "config": {}}}],
        }
    )
    history = History(tmp_path / "history")
    for host in hosts:
        broken = host in ("web-0005", "web-0210")
        history.add(obs(T0, Status.FAIL if broken else Status.OK, host, "sites"))
        history.add(obs(T0, Status.OK, host, "config"))
    history.flush(T0)
    engine = Engine(config, Store(config.state_path))
    engine.history = history
    server = serve("127.0.0.1:0", make_app(engine))

    def page(query: str) -> tuple[list[str], str]:
        got = requests.get(f"http://127.0.0.1:{server.port}/status{query}", timeout=5)
        assert got.status_code == 200, got.text
        shown = [a["id"] or "" for t, a in tags(got.text) if t == "section"]
        return [i.removeprefix("host-") for i in shown], got.text

    try:
        first, html = page("")
        assert first == hosts[:100]
        links = [a["href"] for t, a in tags(html) if t == "a"]
        assert "?page=1#host-web-0005" in links and "?page=3#host-web-0210" in links
        assert "hosts 1-100 of 250" in html and "?page=2" in links
        assert html.count('class="check-fail"') == 1  # web-0005's; web-0210 is on page 3
        last, html = page("?page=3")
        assert last == hosts[200:]
        links = [a["href"] for t, a in tags(html) if t == "a"]
        assert "hosts 201-250 of 250" in html and "?page=2" in links and "?page=4" not in links
        assert 'id="host-web-0210"' in html and html.count('class="check-fail"') == 1
        assert page("?page=99")[0] == hosts[200:]  # past the end: the last page
        assert page("?page=2")[0] == hosts[100:200]
    finally:
        server.close()
        history.close()
        engine.store.close()


def test_history_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        history = History(tmp_path / "state")
        history.add(obs(T0, Status.OK))
        history.flush(T0)
        names = sorted(p.name for p in (tmp_path / "state").iterdir())
        assert {"history.db", "history.db-wal", "history.db-shm"} <= set(names), names
        for name in names:
            mode = (tmp_path / "state" / name).stat().st_mode & 0o777
            assert mode == 0o600, f"{name} is {oct(mode)}"
        history.close()
    finally:
        os.umask(old)
