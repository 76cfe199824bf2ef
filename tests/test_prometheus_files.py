"""The docker lab's Prometheus, Alertmanager and Grafana files: they parse, their rules and
panels ask only for metrics the recorder really exports, and alerts about the recorder
itself are never routed back to its webhook.

The rules, their unit tests, the Prometheus config, the Alertmanager config and routing,
and every dashboard query are checked by the real promtool and amtool too (Debian:
prometheus, prometheus-alertmanager, installed by scripts/test-setup.sh; or PROMTOOL /
AMTOOL naming the binaries). A missing tool fails those tests: it never skips them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from probes.base import Observation, Status
from probes.facts import ClientHarm, Facts
from recorder.api import WEBHOOK_PATH
from recorder.config import AlertmanagerConfig, Config
from recorder.metrics import Metrics
from recorder.model import Incident
from recorder.store import Store

ROOT = Path(__file__).resolve().parent.parent
PROM = ROOT / "docker" / "prometheus"
GRAFANA = ROOT / "docker" / "grafana"
RULES = PROM / "rules" / "recorder.yml"
RULE_TESTS = PROM / "tests" / "recorder_test.yml"
DASHBOARD = GRAFANA / "dashboards" / "recorder.json"
METRIC = re.compile(r"\brecorder_[a-z0-9_]+")
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
DEFAULT_PORT = Config.model_fields["listen"].default.rsplit(":", 1)[1]


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def tool(name: str, env: str, package: str) -> str:
    """The binary's path; a missing tool fails the test that needs it (never a skip)."""
    path = os.environ.get(env) or shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} not installed: run scripts/test-setup.sh (Debian package {package}) "
            f"or set {env}",
            pytrace=False,
        )
    return path


def promtool() -> str:
    return tool("promtool", "PROMTOOL", "prometheus")


def amtool() -> str:
    return tool("amtool", "AMTOOL", "prometheus-alertmanager")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every sample name a recorder with data in every family exposes."""
    store = Store(tmp_path_factory.mktemp("state"))
    t0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    store.create_incident(
        Incident(
            id=0,
            status="open",
            title="web: 5xx",
            service="web",
            fault="http-5xx",
            started_at=t0,
            detected_at=t0 + timedelta(seconds=20),
        )
    )
    registry = CollectorRegistry()
    metrics = Metrics(registry, store=store)
    metrics.observe(
        Observation(
            "lb-01",
            "error_rate",
            Status.OK,
            "ok",
            facts=Facts(error_ratio=0.0, clients=ClientHarm(0, 0)),
        )
    )
    metrics.observe(Observation("lb-01", "http", Status.ERROR, "could not look"))
    metrics.count_responses("lb-01", {"2xx": 1})
    metrics.count_log_lines("lb-01", 1)
    metrics.count_rotations("lb-01", 1)
    text = generate_latest(registry).decode()
    names = {
        line.split("{")[0].split(" ")[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    store.close()
    return names


def rules() -> list[dict[str, Any]]:
    return [rule for group in load(RULES)["groups"] for rule in group["rules"]]


# ---- alert rules --------------------------------------------------------------------------------


def test_rule_files_are_rule_groups() -> None:
    data = load(RULES)
    assert set(data) == {"groups"}
    names = [g["name"] for g in data["groups"]]
    assert len(names) == len(set(names))
    alerts = []
    for group in data["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}
        assert group["rules"], group["name"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
            assert isinstance(rule["alert"], str) and re.fullmatch(
                r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"]
            )
            assert isinstance(rule["expr"], str) and rule["expr"].strip()
            assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
            if "for" in rule:
                assert DURATION.match(rule["for"]), rule["alert"]
            assert rule["labels"]["severity"] in {"page", "warning"}, rule["alert"]
            assert rule["labels"]["component"] in {"nginx", "recorder"}, rule["alert"]
            assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
            alerts.append(rule["alert"])
    assert len(alerts) == len(set(alerts))


def test_rules_use_only_metrics_the_recorder_exports(exported: set[str]) -> None:
    used = {name for rule in rules() for name in METRIC.findall(rule["expr"])}
    assert used, "the rules reference no recorder metric"
    assert used <= exported, f"not exported: {sorted(used - exported)}"


def test_faults_named_by_rules_are_ours() -> None:
    from probes.base import Fault

    for rule in rules():
        fault = rule["labels"].get("fault")
        if fault is not None:
            assert fault in {str(f) for f in Fault}, rule["alert"]


def test_alerts_about_the_recorder_are_not_fed_back_to_it() -> None:
    """An alert on open incidents sent to the webhook would hold its own incident open."""
    for rule in rules():
        if re.search(r"recorder_(incidents|detection|build_info)|\bup\b", rule["expr"]):
            assert rule["labels"]["component"] == "recorder", rule["alert"]
    routes = load(PROM / "alertmanager.yml")["route"]["routes"]
    to_recorder = [r for r in routes if r["receiver"] == "recorder"]
    assert [r["matchers"] for r in to_recorder] == [['component="nginx"']]


def test_site_alerts_name_the_host_the_webhook_maps() -> None:
    # The webhook reads the host from `instance` by default.
    assert AlertmanagerConfig().host_label == "instance"
    for rule in rules():
        if rule["labels"]["component"] == "nginx":
            assert rule["labels"]["instance"] == "{{ $labels.host }}", rule["alert"]


def test_promtool_checks_and_unit_tests_the_rules() -> None:
    check = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run(
        [promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=60
    )
    assert unit.returncode == 0, unit.stdout + unit.stderr


def test_rule_unit_tests_cover_every_alert() -> None:
    tested = {
        case["alertname"]
        for test in load(RULE_TESTS)["tests"]
        for case in test.get("alert_rule_test", [])
    }
    untested = {r["alert"] for r in rules()} - tested
    assert not untested, f"alerts without a promtool unit test: {sorted(untested)}"


# ---- Prometheus and Alertmanager configs ------------------------------------------------------


def test_prometheus_scrapes_the_recorder_and_loads_the_rules() -> None:
    config = load(PROM / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = [t for sc in jobs["recorder"]["static_configs"] for t in sc["targets"]]
    assert targets == [f"recorder:{DEFAULT_PORT}"]
    assert jobs["recorder"].get("metrics_path", "/metrics") == "/metrics"
    # compose mounts docker/prometheus at /etc/prometheus.
    globs = [p.replace("/etc/prometheus/", "") for p in config["rule_files"]]
    loaded = {p for g in globs for p in PROM.glob(g)}
    assert loaded == {RULES}, "rule_files must load the rules and nothing else (not the tests)"
    compose = load(ROOT / "docker" / "compose.yml")
    prometheus = compose["services"]["prometheus"]
    assert "./prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]


def test_alertmanager_routes_to_the_webhook_with_the_token_file() -> None:
    config = load(PROM / "alertmanager.yml")
    receivers = {r["name"]: r for r in config["receivers"]}

    def used(route: dict[str, Any]) -> set[str]:
        return {route["receiver"]} | {n for child in route.get("routes", []) for n in used(child)}

    assert used(config["route"]) <= set(receivers)
    (webhook,) = receivers["recorder"]["webhook_configs"]
    assert webhook["url"] == f"http://recorder:{DEFAULT_PORT}{WEBHOOK_PATH}"
    assert webhook["send_resolved"] is True
    auth = webhook["http_config"]["authorization"]
    assert auth["type"] == "Bearer"
    assert auth["credentials_file"].startswith("/")
    assert "credentials" not in auth  # never a token in the repository


def test_promtool_checks_the_prometheus_config(tmp_path: Path) -> None:
    text = (PROM / "prometheus.yml").read_text().replace("/etc/prometheus/", f"{PROM}/")
    config = tmp_path / "prometheus.yml"
    config.write_text(text)
    result = subprocess.run(
        [promtool(), "check", "config", "--syntax-only", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_amtool_checks_config_and_routing() -> None:
    config = str(PROM / "alertmanager.yml")
    check = subprocess.run(
        [amtool(), "check-config", config], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr

    def route(*labels: str) -> str:
        result = subprocess.run(
            [amtool(), "config", "routes", "test", f"--config.file={config}", *labels],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert route("alertname=NginxHigh5xxRatio", "component=nginx") == "recorder,operators"
    assert route("alertname=RecorderIncidentOpen", "component=recorder") == "operators"


# ---- Grafana ----------------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panel_exprs() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in dashboard()["panels"] for t in p.get("targets", [])]


def test_dashboard_shows_what_the_issue_asks(exported: set[str]) -> None:
    board = dashboard()
    assert board["uid"] and board["title"]
    uid = load(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"][0]["uid"]
    exprs = panel_exprs()
    for panel in board["panels"]:
        assert panel["title"] and panel["datasource"]["uid"] == uid, panel["title"]
        assert all(t["datasource"]["uid"] == uid for t in panel["targets"])
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    shown = {name for _, expr in exprs for name in METRIC.findall(expr)}
    assert {
        "recorder_probe_success",
        "recorder_http_5xx_ratio",
        "recorder_affected_clients_ratio",
        "recorder_incidents_open",
    } <= shown
    assert shown <= exported, f"not exported: {sorted(shown - exported)}"


def test_dashboard_provisioning_points_at_the_dashboards() -> None:
    provider = load(GRAFANA / "provisioning" / "dashboards" / "recorder.yml")["providers"][0]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses every panel query (as a recording rule; Grafana's $__rate_interval
    becomes a fixed range)."""
    group = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {
                        "record": f"dashboard:panel_{i}",
                        "expr": expr.replace("$__rate_interval", "5m"),
                    }
                    for i, (_, expr) in enumerate(panel_exprs())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(group))
    result = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
