"""The web pages in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`, scripts/test-setup.sh) driven by selenium, against a real `recorder run`
watching the real lab.

A lab fault opens an incident; the incidents page links to it; its page says what
`recorder incidents show --json` says (summary, causes, timeline), draws the time axis,
and loads with no console error and no failed request of its own; after `recorder close`
the postmortem page shows the final document. Hostile notes and alert labels stay text.
Screenshots go to $RECORDER_SCREENSHOTS when it is set.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from recorder.config import load_config
from recorder.lab.core import Lab
from recorder.model import local_time, parse_iso
from recorder.postmortem.draft import percent
from tests.test_api import am_alert, notification
from tests.test_daemon import RECOVER_AFTER, Daemon, new_incident, resolved, wait_until

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
HOSTILE_NOTE = "<script>document.title='owned'</script> restarted nginx on lb-01"
HOSTILE_LABEL = '"><img src=x onerror=alert(1)>'
WEBHOOK_TOKEN = "browser-test-webhook-token-0123456789"
# What a person types for each gap the page's `recorder close` command leaves as `...`.
CLOSE_VALUES = {
    "--root-cause": "A cleanup script removed the sites-enabled link of example on lb-01",
    "--resolution": "Recreated the link with ln -s and reloaded nginx",
    "--misleading": "none",
    "--escalated-to": "platform-team at once",
    "--task": "Declare example enabled in the configuration-management role",
}
RULED_OUT = re.compile(r"^Checked (?P<probe>\S+) on (?P<host>\S+): .* \(ruled out\)$")


def _have_browser() -> bool:
    return os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(tmp_path_factory.mktemp("web-lab") / "lab")
    with lab:
        yield lab


@pytest.fixture(scope="module")
def daemon(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    data = yaml.safe_load(lab.config_path.read_text())
    data["defaults"]["recover_after"] = f"{RECOVER_AFTER:g}s"
    directory = tmp_path_factory.mktemp("web-daemon")
    token = directory / "webhook-token"
    token.write_text(WEBHOOK_TOKEN + "\n")
    data["alertmanager"] = {"token_file": str(token)}
    config = directory / "recorder.yml"
    config.write_text(yaml.safe_dump(data))
    d = Daemon(config, config.with_name("daemon.log"))
    d.start()
    try:
        yield d
    finally:
        d.stop()


class Browser:
    """Headless Chromium under chromedriver, with its console and network logs."""

    def __init__(self, profile: Path) -> None:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in (
            "--headless=new",
            "--disable-background-networking",  # this machine has no outside network
            "--no-sandbox",  # tests run as root in a container
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,900",
            f"--user-data-dir={profile}",
        ):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        # An explicit driver: selenium never looks for (or downloads) one.
        self.service = Service(executable_path=CHROMEDRIVER, log_output=str(profile / "d.log"))
        self.driver = webdriver.Chrome(options=options, service=self.service)
        self.driver.set_page_load_timeout(20)

    def quit(self) -> None:
        process = self.service.process
        try:
            self.driver.quit()
        finally:
            # chromedriver ends Chromium with it; make sure of both by pid.
            if process is not None and process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(5)

    def open(self, url: str) -> None:
        self.drain()
        self.driver.get(url)

    def drain(self) -> None:
        self.driver.get_log("browser")
        self.driver.get_log("performance")

    def problems(self) -> list[str]:
        """Console errors and failed requests since the last drain."""
        found = [
            f"console: {e['message']}"
            for e in self.driver.get_log("browser")
            if e.get("level") in ("SEVERE", "ERROR")
        ]
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            params = message.get("params", {})
            if message.get("method") == "Network.loadingFailed":
                found.append(f"failed request: {params.get('errorText')} {params}")
            elif message.get("method") == "Network.responseReceived":
                response = params.get("response", {})
                if int(response.get("status", 0)) >= 400:
                    found.append(f"request {response.get('url')}: {response.get('status')}")
        return found

    def screenshot(self, name: str, full: bool = True) -> None:
        directory = os.environ.get("RECORDER_SCREENSHOTS")
        if not directory:
            return
        Path(directory).mkdir(parents=True, exist_ok=True)
        if full:
            height = int(self.driver.execute_script("return document.body.scrollHeight"))
            width = int(self.driver.execute_script("return window.innerWidth"))
            self.driver.set_window_size(max(width, 400), min(max(height + 120, 600), 8000))
        self.driver.save_screenshot(str(Path(directory) / f"{name}.png"))
        self.driver.set_window_size(1280, 900)

    def element_screenshot(self, name: str, css: str) -> None:
        directory = os.environ.get("RECORDER_SCREENSHOTS")
        if directory:
            Path(directory).mkdir(parents=True, exist_ok=True)
            self.one(css).screenshot(str(Path(directory) / f"{name}.png"))

    def texts(self, css: str) -> list[str]:
        return [e.text for e in self.driver.find_elements(By.CSS_SELECTOR, css)]

    def one(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    if not _have_browser():
        # A missing browser fails, never skips: CI must not pass without the browser tests.
        pytest.fail(f"{CHROMIUM} and {CHROMEDRIVER}: run scripts/test-setup.sh")
    b = Browser(tmp_path_factory.mktemp("chromium"))
    try:
        yield b
    finally:
        b.quit()


def recorder(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "recorder", *args, "--config", str(daemon.config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done


def show_json(daemon: Daemon, incident_id: int) -> dict[str, Any]:
    done = recorder(daemon, "incidents", "show", str(incident_id), "--json")
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def test_follow_a_lab_fault_from_the_list_to_the_closed_postmortem(
    lab: Lab, daemon: Daemon, browser: Browser
) -> None:
    zone = load_config(daemon.config).zone
    known = {i.id for i in daemon.incidents()}
    lab.break_("missing-symlink")
    try:
        incident = new_incident(daemon, known, timeout=20)
        note = recorder(daemon, "note", str(incident.id), HOSTILE_NOTE, "--kind", "action")
        assert note.returncode == 0, note.stderr
    finally:
        lab.fix()
    resolved(daemon, incident.id)

    # Where the daemon said, at start, its pages are.
    (pages,) = re.findall(r"web pages at (\S+)$", daemon.log.read_text(), re.MULTILINE)
    assert pages == daemon.base + "/"
    browser.open(pages)
    assert browser.problems() == []
    assert "recorder" in browser.driver.title
    browser.screenshot("incidents")
    link = browser.one(f'a[href="/incidents/{incident.id}"]')
    row = link.find_element(By.XPATH, "./ancestor::tr")
    assert "missing-symlink" in row.text and "100%" in row.text
    link.click()
    wait_until(lambda: f"/incidents/{incident.id}" in browser.driver.current_url, 10, "the page")
    assert browser.problems() == []
    assert browser.driver.find_elements(By.TAG_NAME, "script") == []

    shown = show_json(daemon, incident.id)
    # Summary.
    assert browser.one("#started").text == local_time(parse_iso(shown["started_at"]), zone)  # type: ignore[arg-type]
    assert browser.one("#detected").text.startswith(
        local_time(parse_iso(shown["detected_at"]), zone)  # type: ignore[arg-type]
    )
    assert browser.one("#resolved").text == local_time(parse_iso(shown["resolved_at"]), zone)  # type: ignore[arg-type]
    affected = browser.one("#affected").text
    assert percent(shown["affected"]["ratio"]) in affected
    assert shown["affected"]["method"] in affected and shown["affected"]["evidence"] in affected
    # Ranked causes, in order, with their confidence.
    assert browser.texts("ol.causes > li > .fault") == [c["fault"] for c in shown["root_causes"]]
    assert browser.texts("ol.causes > li > .confidence") == [
        f"{c['confidence'] * 100:.0f}%" for c in shown["root_causes"]
    ]
    # The timeline: every entry, the passed checks folded into one row per host.
    rows = browser.texts("ol.timeline > li .text")
    plain = [e["text"] for e in shown["timeline"] if not RULED_OUT.match(e["text"])]
    hosts = {m["host"] for e in shown["timeline"] if (m := RULED_OUT.match(e["text"]))}
    assert [r for r in rows if not r.startswith("Ruled out on ")] == plain
    assert sorted(
        r.split(":")[0].removeprefix("Ruled out on ") for r in rows if r.startswith("Ruled out on ")
    ) == sorted(hosts)
    # A person's note reads differently, and as the text it was.
    human = browser.driver.find_elements(By.CSS_SELECTOR, "ol.timeline > li.human .text")
    assert [e.text for e in human] == [HOSTILE_NOTE]
    assert browser.driver.title != "owned"
    # The time axis, drawn and sized.
    svg = browser.one("svg.timeaxis")
    assert svg.size["width"] >= 300 and svg.size["height"] >= 50, svg.size
    harm = browser.one("svg.timeaxis rect.harm")
    assert harm.size["width"] >= 2
    # The draft, its gaps highlighted, and how to finish it.
    assert browser.driver.find_elements(By.CSS_SELECTOR, "#draft mark.fill-in")
    command = browser.one("#close-command").text
    assert command.startswith(f"recorder close {incident.id} ")
    assert browser.one("a#json").get_attribute("href").endswith(f"/api/v1/incidents/{incident.id}")
    browser.driver.execute_script("window.scrollTo(0, 0)")
    browser.screenshot("incident-top", full=False)
    browser.screenshot("incident")
    for section in ("summary", "causes", "axis", "timeline", "draft"):
        browser.element_screenshot(f"incident-{section}", f"#{section}")
    browser.driver.set_window_size(390, 844)  # a phone
    browser.drain()
    browser.driver.refresh()
    assert browser.problems() == []
    browser.driver.execute_script("window.scrollTo(0, 0)")
    browser.screenshot("incident-phone", full=False)
    browser.driver.set_window_size(1280, 900)  # the browser is shared by the next tests
    # In print: the document without the navigation and the command, the gaps still marked.
    browser.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    try:
        assert not browser.one("header.top nav").is_displayed()
        assert not browser.one("#close-command").is_displayed()
        assert browser.one("#draft .howto").text == "Highlighted FILL IN gaps are for people."
        assert browser.one("#timeline").is_displayed() and browser.one("#draft").is_displayed()
        assert browser.one("#draft mark.fill-in").is_displayed()
        browser.screenshot("incident-print")
    finally:
        browser.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})
    assert browser.one("header.top nav").is_displayed()

    # Finish it the way the page says: its command, word for word, with each `...` given.
    words = shlex.split(command)
    assert words[:3] == ["recorder", "close", str(incident.id)], command
    flags = words[3::2]
    assert words[4::2] == ["..."] * len(flags), command
    # A resolved incident's draft needs no editor: every gap has a flag.
    assert "--edit" not in words and flags and set(flags) <= set(CLOSE_VALUES), command
    given = [w for f in flags for w in (f, CLOSE_VALUES[f])]
    closed = recorder(daemon, *words[1:3], *given)
    assert closed.returncode == 0, closed.stdout + closed.stderr
    assert show_json(daemon, incident.id)["status"] == "closed"
    browser.open(daemon.base + "/postmortems")
    assert browser.problems() == []
    browser.one(f'a[href="/postmortems/{incident.id}"]').click()
    wait_until(lambda: "/postmortems/" in browser.driver.current_url, 10, "the postmortem page")
    assert browser.problems() == []
    document = browser.one("#document").text
    for flag in flags:
        assert CLOSE_VALUES[flag] in document, flag
    assert "FILL IN" not in document
    # The note as the person wrote it: the file's `&lt;` reads as `<`, and as text.
    assert HOSTILE_NOTE in document and "&lt;" not in document
    assert browser.driver.find_elements(By.TAG_NAME, "script") == []
    assert browser.driver.find_elements(By.CSS_SELECTOR, "#document h2")
    browser.screenshot("postmortem")


def test_hostile_alert_label_is_text_and_every_page_has_the_csp(
    daemon: Daemon, browser: Browser
) -> None:
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    alert = am_alert(name=HOSTILE_LABEL, instance="lb-01", starts=now, service="web")
    post = requests.post(
        daemon.base + "/api/v1/alertmanager",
        json=notification(alert),
        headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"},
        timeout=15,
    )
    assert post.status_code == 200, post.text
    (incident_id,) = post.json()["incidents"]
    try:
        for path in ("/", f"/incidents/{incident_id}"):
            browser.open(daemon.base + path)
            assert browser.problems() == [], path
            assert browser.driver.find_elements(By.TAG_NAME, "img") == [], path
            assert browser.driver.find_elements(By.CSS_SELECTOR, "[onerror]") == [], path
            assert HOSTILE_LABEL in browser.one("main").text, path
        browser.screenshot("hostile")
    finally:
        ends = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        requests.post(
            daemon.base + "/api/v1/alertmanager",
            json=notification({**alert, "status": "resolved", "endsAt": ends}),
            headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"},
            timeout=15,
        )
    for path in ("/", f"/incidents/{incident_id}", "/postmortems", "/static/style.css", "/nope"):
        got = requests.get(daemon.base + path, timeout=5)
        csp = got.headers.get("Content-Security-Policy", "")
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp, path
        assert "script-src" not in csp and "unsafe-inline" not in csp, path
    # A mistyped link reads as a page in the browser, with the way back.
    browser.open(daemon.base + "/incident/1")
    assert browser.one("h1").text == "Not Found"
    assert browser.one('nav a[href="/"]').text == "Incidents"


def test_status_page_shows_every_check_of_the_lab(daemon: Daemon, browser: Browser) -> None:
    config = load_config(daemon.config)

    def every_check_seen() -> bool:
        html = requests.get(daemon.base + "/status", timeout=5).text
        return "not run yet" not in html

    wait_until(every_check_seen, 20, "every check to report", daemon)
    browser.open(daemon.base + "/status")
    assert browser.problems() == []
    for host in config.hosts:
        section = browser.one(f"#host-{host}")
        probes = [p for _c, p, _m in config.checks_for(host)]
        cells = section.find_elements(By.CSS_SELECTOR, "tbody tr td:first-child")
        assert [c.text for c in cells] == probes, host
    assert browser.texts("table.checks thead th")[-3:] == ["24 h", "7 d", "30 d"]
    browser.screenshot("status")
