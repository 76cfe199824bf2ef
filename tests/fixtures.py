"""Fixtures several test modules share: the lab's own recorder config and an incident book
fed by hand.

The config is the one `recorder lab up` writes (recorder/lab/templates.py
`recorder_config`), not a copy of it, so a change to the lab's config reaches every test
that stands in for the lab. Tests pin what the lab leaves to the machine: the time zone
(their times read in EAT), the sites' ports and the hosts' prefixes.
"""

from __future__ import annotations

import ast
import gc
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from probes.base import Fault, Observation, Status
from probes.facts import ClientHarm, Facts, Subjects
from recorder.config import Config, parse_config
from recorder.detector import Detector
from recorder.incidents import IncidentBook
from recorder.lab import templates as lab
from recorder.store import MIGRATIONS, Store

ZONE = "Africa/Nairobi"
HOSTS = lab.HOSTS
SERVICE = lab.SERVICE
PORTS = {"lb-01": 18080, "web-01": 18081, "web-02": 18082}
LISTEN = "127.0.0.1:9468"  # never bound by these tests: the config only names it


def lab_config_data(
    state_dir: Path | str,
    *,
    prefix: str = "/srv/lab/{name}",
    token_file: Path | str | None = None,
    max_body: int | None = None,
) -> dict[str, Any]:
    """The lab's recorder config as data, in the zone the tests read times in."""
    _, data = lab.recorder_config(
        state_dir=str(state_dir),
        listen=LISTEN,
        hosts={name: {"local": {"prefix": prefix.format(name=name)}} for name in HOSTS},
        urls={name: f"http://127.0.0.1:{PORTS[name]}/" for name in HOSTS},
        header="",
        token_file=str(token_file) if token_file is not None else None,
    )
    if max_body is not None:
        data["alertmanager"]["max_body"] = max_body
    return {"timezone": ZONE, **data}


def lab_config(state_dir: Path | str = "/var/lib/recorder-test", **kw: Any) -> Config:
    """The configuration `recorder lab up` writes for its local stack."""
    return parse_config(lab_config_data(state_dir, **kw))


# ---- an incident book fed by hand -------------------------------------------------------

T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
PROBES = ("http", "sites", "config", "process", "error_rate")


class Harness:
    """The lab's config, a real store, a detector and an incident book, with observations
    made up by the test (`sweep` is one round of every probe on every host)."""

    def __init__(self, state: Path) -> None:
        self.config = lab_config(state, prefix="/")
        self.store = Store(state)
        self.now = T0
        self.detector = Detector()
        self.diagnosed: list[list[str]] = []
        self.book = IncidentBook(
            self.config,
            self.store,
            clock=lambda: self.now,
            request_diagnostics=self.diagnosed.append,
        )
        self.healthy: dict[tuple[str, str], Observation] = {}

    def restart(self) -> None:
        """What `kill -9` and a restart do: a new detector and book over the same store."""
        self.store = Store(self.config.state_path)
        self.detector = Detector()
        self.book = IncidentBook(
            self.config,
            self.store,
            clock=lambda: self.now,
            request_diagnostics=self.diagnosed.append,
        )
        for host, probe, since, fault in self.book.restore():
            self.detector.assume_firing(host, probe, since, fault)

    def feed(
        self,
        host: str,
        probe: str,
        status: Status,
        fault: Fault | None = None,
        summary: str = "",
        **details: Any,
    ) -> None:
        # What error_rate and upstreams state as facts (the engine reads nothing else).
        first_5xx = details.pop("first_5xx", None)
        first_slow = details.pop("first_slow", None)
        slow, slow_above = details.pop("slow", None), details.pop("slow_above", None)
        facts = Facts(
            subjects=details.pop("subjects", None) or Subjects(),
            clients=ClientHarm(
                details["clients"], details["clients_with_5xx"], slow=slow, slow_above=slow_above
            )
            if "clients" in details
            else None,
            first_5xx=datetime.fromisoformat(first_5xx) if first_5xx else None,
            first_slow=datetime.fromisoformat(first_slow) if first_slow else None,
            dead_weight=details.pop("dead_weight_share", None),
            terms=details.pop("terms", None) or {},
        )
        obs = Observation(
            host=host,
            probe=probe,
            status=status,
            fault=fault,
            summary=summary or f"{probe} {status}",
            details=details,
            at=self.now,
            facts=facts,
        )
        self.book.observe(obs)
        for sig in self.detector.observe(obs, 0.0, 5.0):
            self.book.on_signal(sig)

    def sweep(
        self,
        failing: dict[tuple[str, str], tuple[Fault, str, dict[str, Any]]],
        advance: float = 1.0,
        passing: dict[tuple[str, str], dict[str, Any]] | None = None,
    ) -> None:
        """One round of every probe on every host; `failing` names the broken ones,
        `passing` what some passing ones state (an error_rate that sees slow lines)."""
        for host in HOSTS:
            for probe in (*PROBES, "upstreams") if host == lab.LB else PROBES:
                if (host, probe) in failing:
                    fault, summary, details = failing[(host, probe)]
                    self.feed(host, probe, Status.FAIL, fault, summary, **details)
                elif passing and (host, probe) in passing:
                    details = dict(passing[(host, probe)])
                    self.feed(host, probe, Status.OK, None, f"{probe} fine on {host}", **details)
                else:
                    details = (
                        {"clients": 100, "clients_with_5xx": 0, "requests": 500}
                        if probe == "error_rate"
                        else {}
                    )
                    self.feed(host, probe, Status.OK, None, f"{probe} fine on {host}", **details)
        self.book.tick()
        self.now += timedelta(seconds=advance)

    def only_incident(self) -> Any:
        incidents = self.store.list()
        assert len(incidents) == 1, [i.title for i in incidents]
        full = self.store.get(incidents[0].id)
        assert full is not None
        return full


MISSING_SYMLINK = {
    ("lb-01", "sites"): (
        Fault.MISSING_SYMLINK,
        "sites-available/default is not linked in sites-enabled",
        {"missing": ["default"]},
    ),
    ("lb-01", "http"): (Fault.PORT_CLOSED, "connection refused on http://127.0.0.1:18080/", {}),
}


def store_at(state: Path, version: int, rows: Path) -> Path:
    """A store as an earlier recorder left it: the shipped migrations up to `version`,
    then `rows` (SQL it wrote). Store(state) migrates it to today's schema."""
    state.mkdir(parents=True, exist_ok=True)
    path = state / "recorder.db"
    with sqlite3.connect(path) as db:
        for migration in MIGRATIONS[:version]:
            db.executescript(migration if isinstance(migration, str) else migration.sqlite)
        db.execute(f"PRAGMA user_version = {version}")
        db.executescript(rows.read_text())
    path.chmod(0o600)
    return path


def parse_source(path: Path) -> ast.Module:
    """`ast.parse` of a source file, with the garbage collector held off. CPython before
    3.11.8 keeps the AST conversion's depth count in one struct shared by every thread
    (gh-106905): a collection during the conversion runs finalizers, another thread gets
    the GIL and converts an AST too (a test server's thread printing a traceback: 3.11's
    traceback module parses the line), and the parse fails with "SystemError: AST
    constructor recursion depth mismatch". Seen in CI in test_private."""
    text = path.read_text(encoding="utf-8")
    enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(text, filename=str(path))
    finally:
        if enabled:
            gc.enable()
