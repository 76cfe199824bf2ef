"""The real Prometheus family around a real `recorder run` watching the real lab.

One stack for the module, every part on loopback with its own temporary data dir and
stopped by pid when the module ends (even when a test fails):

- the lab (nginx) and `recorder run` with the webhook's token file;
- blackbox_exporter probing the lab's site;
- Prometheus scraping the recorder and blackbox_exporter every second, evaluating the
  shipped rules (docker/prometheus/rules/recorder.yml) and a blackbox rule, and sending
  alerts to both Alertmanagers;
- two Alertmanagers clustered with --cluster.peer, each with the shipped config's route
  and receiver (webhook, `credentials_file` bearer token, send_resolved), pointed at the
  daemon, with timers of seconds instead of minutes.

The binaries come from Debian's prometheus, prometheus-alertmanager and
prometheus-blackbox-exporter (scripts/test-setup.sh); a missing one fails, never skips.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from recorder.api import WEBHOOK_PATH
from recorder.lab import peers
from recorder.lab.core import Lab
from recorder.lab.peers import Server
from recorder.model import Incident
from tests.conftest import free_port
from tests.test_daemon import Daemon, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
PROM = ROOT / "docker" / "prometheus"
RULES = PROM / "rules" / "recorder.yml"

# Every family the recorder exports, with the type Prometheus must record for it. The
# unit is in the name: _seconds, _ratio (0 to 1). Prometheus asks for OpenMetrics, so it
# records counter families without the _total their samples carry.
TYPES = {
    "recorder_probe_success": "gauge",
    "recorder_probe_duration_seconds": "gauge",
    "recorder_probe_errors": "counter",
    "recorder_http_responses": "counter",
    "recorder_http_5xx_ratio": "gauge",
    "recorder_affected_clients_ratio": "gauge",
    "recorder_log_lines": "counter",
    "recorder_log_rotations": "counter",
    "recorder_build_info": "gauge",
    "recorder_leader": "gauge",
    "recorder_incidents_open": "gauge",
    "recorder_incidents_opened": "counter",
    "recorder_detection_delay_seconds": "summary",
    "recorder_notifications": "counter",
    "recorder_notify_outbox_depth": "gauge",
    "recorder_notify_delivery_seconds": "histogram",
    "recorder_webhook_refusals": "counter",
}


def binary(name: str) -> str:
    try:
        return peers.binary(name)
    except peers.PeerError as err:
        pytest.fail(str(err), pytrace=False)


@dataclass
class Stack:
    lab: Lab
    daemon: Daemon
    prometheus: Server
    alertmanagers: list[Server]
    site_url: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.prometheus.get("/api/v1/query", query=expr)["data"][
            "result"
        ]
        return result

    def firing(self, alertname: str) -> list[dict[str, Any]]:
        alerts = self.prometheus.get("/api/v1/alerts")["data"]["alerts"]
        return [
            a for a in alerts if a["labels"]["alertname"] == alertname and a["state"] == "firing"
        ]

    def webhook_sent(self) -> list[float]:
        """Notifications each Alertmanager delivered to the webhook (its own counter)."""
        return [webhook_notifications(am) for am in self.alertmanagers]

    def send(self, alert: dict[str, Any]) -> None:
        """To every Alertmanager, as Prometheus does."""
        for am in self.alertmanagers:
            response = requests.post(am.base + "/api/v2/alerts", json=[alert], timeout=5)
            assert response.status_code == 200, response.text

    def incident(self, incident_id: int) -> Incident:
        return next(i for i in self.daemon.incidents() if i.id == incident_id)


def webhook_notifications(am: Server, kind: str = "") -> float:
    """alertmanager_notifications_total (or, with kind="failed_", _failed_total) of the
    webhook integration."""
    text = requests.get(am.base + "/metrics", timeout=5).text
    name = f"alertmanager_notifications_{kind}total"
    m = re.search(rf'^{name}\{{integration="webhook"\}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def alertmanager_config(daemon: Daemon, token_file: Path) -> dict[str, Any]:
    """The shipped config, pointed at this daemon and this token, timers in seconds."""
    config: dict[str, Any] = yaml.safe_load((PROM / "alertmanager.yml").read_text())
    config["route"].update(group_wait="0s", group_interval="1s", repeat_interval="1h")
    (receiver,) = [r for r in config["receivers"] if r["name"] == "recorder"]
    (webhook,) = receiver["webhook_configs"]
    webhook["url"] = daemon.base + WEBHOOK_PATH
    webhook["http_config"]["authorization"]["credentials_file"] = str(token_file)
    return config


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    for name in (peers.PROMETHEUS, peers.ALERTMANAGER, peers.BLACKBOX):
        binary(name)
    top = tmp_path_factory.mktemp("prometheus-e2e")
    with ExitStack() as cleanup:
        lab = cleanup.enter_context(Lab(top / "lab"))
        site_url = lab.url

        token_file = top / "webhook-token"
        token_file.write_text("e2e-" + "7" * 40 + "\n")
        token_file.chmod(0o600)
        data = yaml.safe_load(lab.config_path.read_text())
        data["defaults"]["recover_after"] = "2s"
        data["alertmanager"] = {"token_file": str(token_file)}
        config = top / "recorder.yml"
        config.write_text(yaml.safe_dump(data))
        daemon = Daemon(config, top / "daemon.log")
        cleanup.callback(daemon.stop)
        daemon.start()

        blackbox = peers.start_blackbox(top)
        cleanup.callback(blackbox.stop)

        # Two Alertmanagers gossiping on loopback, both delivering every notification
        # (peers.pair_flags): an HA pair's at-least-once delivery, which the webhook absorbs.
        gossip = [free_port(), free_port()]
        alertmanagers = []
        for i in (0, 1):
            am = peers.start_alertmanager(
                top,
                f"alertmanager-{i}",
                alertmanager_config(daemon, token_file),
                peers.pair_flags(gossip, i),
            )
            cleanup.callback(am.stop)
            alertmanagers.append(am)

        rules = top / "blackbox-rules.yml"
        rules.write_text(yaml.safe_dump(peers.site_down_rules()))
        recorder_job = {
            "job_name": "recorder",
            "static_configs": [{"targets": [daemon.base.split("//")[1]]}],
        }
        prometheus = peers.start_prometheus(
            top,
            "prometheus",
            peers.prometheus_config(
                "1s",
                [RULES, rules],
                alertmanagers,
                [recorder_job, peers.blackbox_job(blackbox, site_url, "lb-01")],
            ),
            ["--rules.alert.resend-delay=1s"],
        )
        cleanup.callback(prometheus.stop)

        blackbox.ready("/metrics")
        for am in alertmanagers:
            am.ready("/-/ready")
        prometheus.ready("/-/ready")
        yield Stack(lab, daemon, prometheus, alertmanagers, site_url)


def http_5xx_alert() -> dict[str, Any]:
    """An alert as Prometheus sends it to Alertmanager, firing from now."""
    return {
        "labels": {
            "alertname": "NginxHigh5xxRatio",
            "component": "nginx",
            "severity": "page",
            "fault": "http-5xx",
            "instance": "web-02",
        },
        "annotations": {"summary": "12% of responses on web-02 are 5xx"},
        "startsAt": datetime.now(UTC).isoformat(),
    }


def no_duplicates(incident: Incident) -> None:
    seen = Counter((e.kind, e.text, e.source) for e in incident.timeline)
    twice = [entry for entry, n in seen.items() if n > 1]
    assert not twice, json.dumps(incident.to_json()["timeline"], indent=1)


def test_prometheus_scrapes_the_recorder(stack: Stack) -> None:
    def targets_up() -> bool:
        active = stack.prometheus.get("/api/v1/targets")["data"]["activeTargets"]
        return {t["labels"]["job"]: t["health"] for t in active} == {
            "recorder": "up",
            "blackbox": "up",
        }

    wait_until(targets_up, 20, "the recorder and blackbox targets to be up")

    found: dict[str, str] = {}

    def metadata() -> bool:
        known = stack.prometheus.get("/api/v1/metadata")["data"]
        found.update(
            {name: m[0]["type"] for name, m in known.items() if name.startswith("recorder_")}
        )
        return set(found) >= set(TYPES)

    try:
        wait_until(metadata, 20, "Prometheus to record every recorder family")
    finally:
        assert found == TYPES

    # Every series the recorder exposes right now, Prometheus holds.
    exposed = {
        line.split("{")[0].split(" ")[0]
        for line in requests.get(stack.daemon.base + "/metrics", timeout=5).text.splitlines()
        if line.startswith("recorder_")
    }

    def stored() -> set[str] | None:
        names = {
            r["metric"]["__name__"]
            for r in stack.query('count by (__name__) ({__name__=~"recorder_.+"})')
        }
        return names if names >= exposed else None

    wait_until(stored, 20, "Prometheus to hold every exposed series")
    hosts = {r["metric"]["host"] for r in stack.query('recorder_probe_success{probe="http"}')}
    assert hosts == set(stack.lab.hosts)
    assert stack.query("recorder_build_info")[0]["value"][1] == "1"
    ratios = stack.query('{__name__=~"recorder_.+_ratio"}')
    assert ratios and all(0 <= float(r["value"][1]) <= 1 for r in ratios)
    durations = stack.query("recorder_probe_duration_seconds")
    assert durations and all(0 <= float(r["value"][1]) < 10 for r in durations)


def test_lab_fault_fires_the_shipped_alert_and_the_blackbox_alert_joins_the_incident(
    stack: Stack,
) -> None:
    """nginx-down on the entry point: the recorder opens the incident, Prometheus fires the
    shipped RecorderIncidentOpen, and blackbox_exporter's SiteDown, through both
    Alertmanagers, joins that incident once; fixed, everything resolves."""
    known = {i.id for i in stack.daemon.incidents()}
    wait_until(lambda: stack.query("probe_success") != [], 20, "a first blackbox probe")
    assert not stack.firing("RecorderIncidentOpen")
    sent = stack.webhook_sent()
    stack.lab.break_("nginx-down")
    try:

        def opened() -> Incident | None:
            fresh = [i for i in stack.daemon.incidents() if i.id not in known]
            return fresh[0] if fresh else None

        incident: Incident = wait_until(opened, 15, "the recorder to open an incident")
        wait_until(
            lambda: stack.firing("RecorderIncidentOpen"),
            15,
            "RecorderIncidentOpen to fire in Prometheus",
        )

        def alert_joined() -> Incident | None:
            got = stack.incident(incident.id)
            return got if any("alert SiteDown" in e.text for e in got.timeline) else None

        incident = wait_until(alert_joined, 20, "the SiteDown alert to join the incident")
        # Both Alertmanagers delivered the firing notification.
        wait_until(
            lambda: all(n > s for n, s in zip(stack.webhook_sent(), sent, strict=True)),
            15,
            "both Alertmanagers to deliver",
        )
    finally:
        stack.lab.fix("nginx-down")

    def resolved() -> Incident | None:
        got = stack.incident(incident.id)
        return got if got.status == "resolved" else None

    done: Incident = wait_until(resolved, 40, "the incident to resolve")
    wait_until(
        lambda: not stack.firing("RecorderIncidentOpen"),
        15,
        "RecorderIncidentOpen to stop firing",
    )
    assert [i.id for i in stack.daemon.incidents() if i.id not in known] == [incident.id]
    assert "lb-01" in done.hosts
    assert [e.text for e in done.timeline if e.source == "alertmanager"], done.to_json()
    no_duplicates(done)


def test_alertmanager_pair_delivers_firing_and_resolved_as_one_incident(stack: Stack) -> None:
    """An alert sent to both Alertmanagers (as Prometheus sends it), both delivering to the
    webhook with the bearer token from credentials_file: one incident, opened by the
    firing notification and resolved by the resolved one, no entry twice."""
    peers = stack.alertmanagers[0].get("/api/v2/status")["cluster"]["peers"]
    assert len(peers) == 2, peers
    known = {i.id for i in stack.daemon.incidents()}
    sent = stack.webhook_sent()
    alert = http_5xx_alert()
    stack.send(alert)

    def opened() -> Incident | None:
        fresh = [i for i in stack.daemon.incidents() if i.id not in known]
        return fresh[0] if fresh else None

    incident: Incident = wait_until(opened, 15, "the firing alert to open an incident")
    assert incident.fault == "http-5xx" and incident.hosts == ["web-02"]
    wait_until(
        lambda: all(n > s for n, s in zip(stack.webhook_sent(), sent, strict=True)),
        15,
        "both Alertmanagers to deliver the firing alert",
    )
    sent = stack.webhook_sent()
    stack.send({**alert, "endsAt": datetime.now(UTC).isoformat()})
    wait_until(
        lambda: all(n > s for n, s in zip(stack.webhook_sent(), sent, strict=True)),
        15,
        "both Alertmanagers to deliver the resolved alert",
    )

    def resolved() -> Incident | None:
        got = stack.incident(incident.id)
        return got if got.status == "resolved" else None

    done: Incident = wait_until(resolved, 20, "the resolved alert to resolve the incident")
    assert [i.id for i in stack.daemon.incidents() if i.id not in known] == [incident.id]
    no_duplicates(done)
    # Every delivery was accepted (a refused token or a 5xx counts as failed).
    assert [webhook_notifications(am, "failed_") for am in stack.alertmanagers] == [0, 0]
