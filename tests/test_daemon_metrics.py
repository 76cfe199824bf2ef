"""/metrics of a real `recorder run` against the real lab and its real traffic: the
response counters are nginx's own count, class by class, as its access logs hold it."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from probes.facts import STATUS_CLASSES
from recorder.lab.core import Lab
from tests.test_daemon import Daemon, Traffic, wait_until

pytestmark = pytest.mark.slow

_STATUS = re.compile(rb'" ([1-5])\d\d ')


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(tmp_path_factory.mktemp("metrics-lab") / "lab")
    with lab:
        yield lab


@pytest.fixture(scope="module")
def daemon(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    config = tmp_path_factory.mktemp("metrics-daemon") / "recorder.yml"
    config.write_text(lab.config_path.read_text())
    d = Daemon(config, config.with_name("daemon.log"))
    d.start()
    try:
        yield d
    finally:
        d.stop()


def log_counts(lab: Lab) -> dict[str, dict[str, int]]:
    """host -> class -> lines of its access log with a status of that class."""
    counts: dict[str, dict[str, int]] = {}
    for name, info in lab.hosts.items():
        found = dict.fromkeys(STATUS_CLASSES, 0)
        data = (Path(info["prefix"]) / "var/log/nginx/access.log").read_bytes()
        for line in data.splitlines():
            m = _STATUS.search(line)
            if m:
                found[f"{m.group(1).decode()}xx"] += 1
        counts[name] = found
    return counts


def scraped(daemon: Daemon) -> dict[str, dict[str, int]]:
    text = requests.get(daemon.base + "/metrics", timeout=5).text
    counts: dict[str, dict[str, int]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "recorder_http_responses":
            continue
        for sample in family.samples:
            if sample.name == "recorder_http_responses_total":
                host, cls = sample.labels["host"], sample.labels["class"]
                counts.setdefault(host, {})[cls] = int(sample.value)
    return counts


def test_http_responses_total_is_the_access_logs_count(lab: Lab, daemon: Daemon) -> None:
    Traffic(lab, clients=20, rps=20, seconds=2).wait()
    lab.break_("backend-5xx", rate=0.5)
    try:
        Traffic(lab, clients=20, rps=20, seconds=2).wait()
    finally:
        lab.fix("backend-5xx")
    time.sleep(1.0)  # the recorder's own probes that met the fault are logged too

    def agrees() -> bool:
        # The daemon reads each log once an interval (1 s): what it shows lies between
        # the log as it was before that interval and the log as it is after the scrape.
        before = log_counts(lab)
        time.sleep(2.5)
        metrics = scraped(daemon)
        after = log_counts(lab)
        return set(metrics) == set(after) and all(
            before[h][c] <= metrics[h].get(c, -1) <= after[h][c]
            for h in after
            for c in STATUS_CLASSES
        )

    wait_until(agrees, 30, "/metrics to agree with the access logs", daemon)
    final = log_counts(lab)
    metrics = scraped(daemon)
    assert final["lb-01"]["5xx"] > 0 and final["lb-01"]["2xx"] > 0, final
    # Nothing answers with 5xx any more: those counts are exact.
    assert {h: m["5xx"] for h, m in metrics.items()} == {h: c["5xx"] for h, c in final.items()}
    assert yaml.safe_load(daemon.config.read_text())["listen"] in daemon.base
