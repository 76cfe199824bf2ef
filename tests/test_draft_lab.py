"""Drafts from the real lab, end to end through the engine's parts: break a fault, run
every probe (the engine's own sweep), feed the observations through the detector, a real
IncidentBook and Store, fix it, feed the recovery, and render the stored incident's draft.

What a probe names (the dead backend, the file and line nginx rejects, the site whose link
is missing or dangles) must reach the draft's tasks: no `[[FILL IN: ...]]` is left for a
value the evidence holds."""

from __future__ import annotations

import http.client
import math
import os
import re
import shutil
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from probes.agent import USER_AGENT
from probes.base import Observation
from recorder.config import Config, load_config
from recorder.detector import Detector
from recorder.incidents import IncidentBook
from recorder.lab.core import Lab
from recorder.lab.faults import FAULTS
from recorder.lab.templates import SITE
from recorder.lab.traffic import SPIKE_BASE, client_addresses
from recorder.lab.traffic import USER_AGENT as TRAFFIC_AGENT
from recorder.model import Incident
from recorder.postmortem.draft import render_draft
from recorder.scheduler import sweep
from recorder.store import Store

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")

# The placeholders a probe can fill (probes/facts.py Subjects), and the host and url.
EVIDENCE_PLACEHOLDERS = ("site", "file", "line", "backend", "url", "host")


def evidence_left(text: str) -> list[str]:
    """The `[[FILL IN: name]]` markers of a draft for a value a probe could have named."""
    names = re.findall(r"\[\[FILL IN: ([a-z]+)\]\]", text)
    return [name for name in names if name in EVIDENCE_PLACEHOLDERS]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(tmp_path_factory.mktemp("draftlab") / "lab")
    lab.up()
    try:
        yield lab
    finally:
        lab.down()


def feed(book: IncidentBook, detector: Detector, observations: list[Observation]) -> None:
    if os.environ.get("DBG"):
        print(
            [
                (o.host, o.probe, str(o.status), o.summary)
                for o in observations
                if o.status.value != "ok"
            ]
        )
    """What the daemon's engine does with each observation (`for` and `recover_after` 0)."""
    for obs in observations:
        book.observe(obs)
        for sig in detector.observe(obs, 0.0, 0.0):
            book.on_signal(sig)


def recorded(lab: Lab, fault: str, config: Config, state: Path) -> Incident:
    store = Store(state)
    book = IncidentBook(config, store)
    detector = Detector()
    feed(book, detector, sweep(config))  # healthy: nothing opens
    lab.break_(fault)
    try:
        feed(book, detector, sweep(config))
        feed(book, detector, sweep(config))
    finally:
        lab.fix()
    feed(book, detector, sweep(config))
    (listed,) = store.list()
    incident = store.get(listed.id)
    store.close()
    assert incident is not None
    return incident


@pytest.mark.parametrize(
    ("fault", "filled"),
    [
        ("missing-symlink", {"site": "example", "host": "lb-01"}),
        ("dangling-symlink", {"file": "/etc/nginx/sites-enabled/example"}),
        ("config-syntax", {"file": "/etc/nginx/sites-enabled/example"}),
        ("upstream-down", {"backend": "127.0.0.1:", "file": "/etc/nginx/sites-enabled/example"}),
    ],
)
def test_draft_tasks_hold_what_the_probes_named(
    lab: Lab, fault: str, filled: dict[str, str], tmp_path: Path
) -> None:
    config = load_config(str(lab.config_path))
    incident = recorded(lab, fault, config, tmp_path / "state")
    assert incident.status == "resolved", incident.to_json()
    assert incident.root_causes[0].fault == fault
    text = render_draft(incident, config)
    tasks = text.split("## Corrective and Preventative Measures", 1)[1]
    assert not evidence_left(tasks), tasks
    for value in filled.values():
        assert value in tasks, tasks
    if fault == "config-syntax":
        assert re.search(r"Fix /etc/nginx/sites-enabled/example line \d+ on lb-01", tasks), tasks


# ---- golden drafts from real observations ------------------------------------------------
# The faults that one sweep shows (no traffic needed). Their drafts are rendered from what
# the real probes observed in the lab and compared with tests/golden/lab/<fault>.md after
# the run-specific parts (times, durations, ports, the lab's directory) are normalized.
# `UPDATE_GOLDEN=1 pytest tests/test_draft_lab.py` rewrites them: read the diff first.
GOLDEN_LAB = Path(__file__).parent / "golden" / "lab"
SWEEP_FAULTS = (
    "missing-symlink",
    "dangling-symlink",
    "config-syntax",
    "nginx-down",
    "upstream-down",
)
_NORMALIZE = (
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?"), "<time>"),
    (re.compile(r"\b\d\d:\d\d(?::\d\d)?\b"), "<hh:mm>"),
    (re.compile(r"\b\d+(?:\.\d+)? ?(?:ms|s|min)\b"), "<n> <unit>"),
    (re.compile(r"(127\.0\.0\.1|localhost):\d+"), r"\1:<port>"),
    (re.compile(r"\bpid \d+"), "pid <n>"),
)


def normalized(text: str, lab: Lab) -> str:
    text = text.replace(str(lab.dir), "<lab>")
    for pattern, repl in _NORMALIZE:
        text = pattern.sub(repl, text)
    # Probes of one sweep run in parallel: which answers first, and so the order of the
    # timeline's entries of one sweep, varies by run (the checks a host passed are in
    # probe order in the draft itself).
    lines = text.splitlines(keepends=True)
    timed = [n for n, line in enumerate(lines) if line.startswith("- <time> ")]
    for n, line in zip(timed, sorted(lines[n] for n in timed), strict=True):
        lines[n] = line
    return "".join(lines)


@pytest.mark.parametrize("fault", SWEEP_FAULTS)
def test_lab_draft_matches_golden(lab: Lab, fault: str, tmp_path: Path) -> None:
    config = load_config(str(lab.config_path))
    incident = recorded(lab, fault, config, tmp_path / "state")
    draft = render_draft(incident, config)
    assert not evidence_left(draft), draft  # only what only people know stays to fill
    text = normalized(draft, lab)
    path = GOLDEN_LAB / f"{fault}.md"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing: run UPDATE_GOLDEN=1 pytest {__file__}"
    assert text == path.read_text(encoding="utf-8"), f"{path.name} differs; UPDATE_GOLDEN=1"


# ---- golden drafts of the faults that need traffic ---------------------------------------
# error_rate judges the access log, so these faults show only while clients send requests.
# Everything that reaches the draft must be the same on every run, so the test, not a
# paced generator, sends the traffic: a fixed number of requests, in a fixed order, each
# batch starting on a fresh second of the log, and every test on a lab of its own (empty
# logs, a fresh round robin and limit_req). Only times and durations are normalized.
TRAFFIC_WINDOW = 3  # error_rate's window (s): each test waits it out to recover
TRAFFIC_CLIENTS = client_addresses(12)
# lb-01's round robin alternates its two backends, so two requests in a row from one
# client reach one of each whatever the phase: every client meets the broken backend
# once, and web-02 gets as many requests as web-01 (12, above min_requests).
PAIR_GAP = 0.004  # seconds between two dispatches: lb-01 takes them in order
# The spike: SPIKE_CLIENTS clients of the lab's spike range, SPIKE_EACH requests each, all
# on connections opened beforehand and sent back to back, so lb-01's limit_req sees them
# within a few milliseconds: its bucket (burst SPIKE_BURST, refilled at SPIKE_RPS) lets
# exactly burst + 1 through and refuses the rest, whatever the machine's speed.
SPIKE_CLIENTS = client_addresses(50, SPIKE_BASE)
SPIKE_EACH = 3
SPIKE_RPS, SPIKE_BURST = 10, 50


def at_second(second: float) -> None:
    """Sleep until just past the start of `second` (epoch seconds), which must be ahead."""
    wait = second + 0.02 - time.time()
    assert wait > 0, f"the test fell {-wait:.2f}s behind its schedule"
    time.sleep(wait)


def next_second() -> float:
    """Sleep until just past the next whole second; return it."""
    second = float(math.floor(time.time()) + 1)
    at_second(second)
    return second


def lb_address(lab: Lab) -> tuple[str, int]:
    parts = urlsplit(lab.hosts["lb-01"]["url"])
    return parts.hostname or "127.0.0.1", parts.port or 80


def pairs(lab: Lab) -> dict[str, list[str]]:
    """Two requests per client to lb-01, dispatched in order; the backends that answered
    each client. The answers are read after every request is sent (a slow backend holds
    its connections)."""
    host, port = lb_address(lab)
    sent: list[tuple[str, http.client.HTTPConnection]] = []
    try:
        for client in TRAFFIC_CLIENTS:
            for _ in range(2):
                conn = http.client.HTTPConnection(
                    host, port, timeout=15, source_address=(client, 0)
                )
                conn.request(
                    "GET", "/", headers={"User-Agent": TRAFFIC_AGENT, "Connection": "close"}
                )
                sent.append((client, conn))
                time.sleep(PAIR_GAP)
        served: dict[str, list[str]] = {}
        for client, conn in sent:
            response = conn.getresponse()
            response.read()
            served.setdefault(client, []).append(response.getheader("X-Served-By") or "lb-01")
    finally:
        for _, conn in sent:
            conn.close()
    return served


def spread(lab: Lab) -> None:
    """pairs(), checking the premise: every client reached both backends."""
    served = pairs(lab)
    odd = {c: s for c, s in served.items() if sorted(s) != ["web-01", "web-02"]}
    assert not odd, f"lb-01 did not alternate its backends: {odd}"
    time.sleep(LOGGED)


# nginx writes a request's log line just after its answer: a sweep at once could miss the
# last ones (a run saw 11 of slow-backend's 12 slow requests on lb-01).
LOGGED = 0.3


def align(lab: Lab) -> None:
    """Make web-01 the next backend of lb-01's round robin, with the recorder's own
    requests (not counted as clients'): the http probe on lb-01 then meets web-01."""
    for _ in range(4):
        headers = {"User-Agent": USER_AGENT, "Connection": "close"}
        host, port = lb_address(lab)
        conn = http.client.HTTPConnection(host, port, timeout=15)
        try:
            conn.request("GET", "/", headers=headers)
            response = conn.getresponse()
            response.read()
        finally:
            conn.close()
        if response.getheader("X-Served-By") == "web-02":
            return
    raise AssertionError("lb-01 never sent a request to web-02")


def spike(lab: Lab) -> None:
    """What traffic-spike does (the lab's spike clients far above lb-01's capacity), as a
    fixed burst: the fault's own generator paces by the clock, so how many requests its
    limit lets through would vary by run."""
    host, port = lb_address(lab)
    socks = [
        socket.create_connection((host, port), timeout=15, source_address=(client, 0))
        for _ in range(SPIKE_EACH)
        for client in SPIKE_CLIENTS
    ]
    request = (
        f"GET / HTTP/1.1\r\nHost: {SITE}.test\r\nUser-Agent: {TRAFFIC_AGENT}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    statuses: Counter[str] = Counter()
    try:
        for sock in socks:
            sock.sendall(request)
        for sock in socks:
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
            statuses[answer.split(b" ", 2)[1].decode()] += 1
    finally:
        for sock in socks:
            sock.close()
    passed = SPIKE_BURST + 1
    want = {"200": passed, "503": len(socks) - passed}
    assert statuses == want, f"limit_req let {statuses} through, not {want}"
    time.sleep(LOGGED)


def traffic_config(lab: Lab, directory: Path) -> Config:
    raw = yaml.safe_load(lab.config_path.read_text(encoding="utf-8"))
    for check in raw["checks"]:
        if "error_rate" in check["probes"]:
            check["probes"]["error_rate"]["window"] = f"{TRAFFIC_WINDOW}s"
    path = directory / "recorder.yml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return load_config(str(path))


TRAFFIC_FAULTS = ("backend-5xx", "slow-backend", "traffic-spike", "bad-deploy")


def recorded_with_traffic(lab: Lab, fault: str, config: Config) -> Incident:
    # The lab's own store: bad-deploy's deploy event is there, as the daemon reads it.
    store = Store(config.state_dir)
    book = IncidentBook(config, store)
    detector = Detector()
    align(lab)
    start = next_second()
    spread(lab)
    feed(book, detector, sweep(config))  # healthy: nothing opens
    if fault == "traffic-spike":
        # The rate's baseline is the log's history, which must span a window before the
        # spike's: a second round of ordinary traffic one window later.
        at_second(start + TRAFFIC_WINDOW)
        spread(lab)
        at_second(start + 2 * TRAFFIC_WINDOW)
        spike(lab)
        last = start + 2 * TRAFFIC_WINDOW
        time.sleep(0.5)  # limit_req's bucket refills a few requests: the probes pass
    else:
        lab.break_(fault, **({"version": "2.4.1"} if fault == "bad-deploy" else {}))
        next_second()
        spread(lab)  # slow-backend: returns once web-01's answers came, 3 s later
        last = float(math.floor(time.time()))
    try:
        align(lab)
        feed(book, detector, sweep(config))
        align(lab)
        feed(book, detector, sweep(config))
    finally:
        if fault != "traffic-spike":
            lab.fix()
    # The fault's requests leave the window (slow-backend's sweeps may be past it already).
    at_second(max(last + TRAFFIC_WINDOW + 1, math.floor(time.time()) + 1))
    spread(lab)
    feed(book, detector, sweep(config))
    listed = store.list()
    assert len(listed) == 1, f"{len(listed)} incidents opened, not one"
    incident = store.get(listed[0].id)
    store.close()
    assert incident is not None
    return incident


@pytest.fixture
def traffic_lab(tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(tmp_path / "lab", capacity_rps=SPIKE_RPS, capacity_burst=SPIKE_BURST)
    lab.up()
    try:
        yield lab
    finally:
        lab.down()


@pytest.mark.parametrize("fault", TRAFFIC_FAULTS)
def test_lab_traffic_draft_matches_golden(traffic_lab: Lab, fault: str, tmp_path: Path) -> None:
    config = traffic_config(traffic_lab, tmp_path)
    incident = recorded_with_traffic(traffic_lab, fault, config)
    assert incident.status == "resolved", incident.to_json()
    if fault == "slow-backend":
        # Every client met web-01 once, and nginx logged those slow answers only once
        # finished: after the sample that opened the incident, whose harm (and clients
        # counted) starts when the first of them began.
        assert incident.affected.ratio == 1.0, incident.affected
        assert incident.affected.evidence.startswith("12 of 12 distinct clients got at least")
    draft = render_draft(incident, config)
    assert not evidence_left(draft), draft  # the file of the log format or the limit too
    text = normalized(draft, traffic_lab)
    path = GOLDEN_LAB / f"{fault}.md"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing: run UPDATE_GOLDEN=1 pytest {__file__}"
    assert text == path.read_text(encoding="utf-8"), f"{path.name} differs; UPDATE_GOLDEN=1"


def test_every_lab_fault_has_a_golden_draft() -> None:
    """The contract covers the lab's every fault: each is run for real above, its draft
    compared with its golden and checked for evidence left to fill in."""
    assert sorted((*SWEEP_FAULTS, *TRAFFIC_FAULTS)) == sorted(FAULTS)
    assert sorted(p.stem for p in GOLDEN_LAB.glob("*.md")) == sorted(FAULTS)
