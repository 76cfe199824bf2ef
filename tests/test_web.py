"""The web pages over the real HTTP server and a store the real engine wrote: what each
page shows, hostile text shown as text, the security headers on every response, and the
read token off loopback. The browser end to end is tests/test_web_browser.py."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from prometheus_client import CollectorRegistry

from recorder.alertmanager import Alert
from recorder.api import ApiServer, make_app, serve
from recorder.config import Config
from recorder.daemon import read_access_refusal
from recorder.history import History
from recorder.model import Incident, TimelineEntry
from recorder.postmortem.close import close_incident
from recorder.store import Store
from recorder.web.markdown import to_html
from recorder.web.pages import PAGE_SIZE
from tests.test_incidents import MISSING_SYMLINK, Harness

HOSTILE_NOTE = "<script>alert('note')</script> restarted nginx"
HOSTILE_HOST = '"><img src=x onerror=alert(1)>'
READ_TOKEN = "read-0123456789abcdef"


class Engine:
    """The EngineAPI the pages need, over a store the real engine wrote."""

    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.store = store
        self.metrics_registry = CollectorRegistry()
        self.read_token_value: str | None = None
        self.history: History | None = None

    def health(self) -> tuple[bool, str]:
        return True, "ok"

    def token(self) -> str | None:
        return None

    def read_token(self) -> str | None:
        return self.read_token_value

    def submit_alerts(self, alerts: list[Alert]) -> list[int | None]:
        raise AssertionError("the pages never submit alerts")


class Site:
    def __init__(self, h: Harness) -> None:
        self.h = h
        self.engine = Engine(h.config, h.store)
        self.server: ApiServer = serve("127.0.0.1:0", make_app(self.engine))
        self.base = f"http://127.0.0.1:{self.server.port}"

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.base + path, timeout=5, allow_redirects=False, **kwargs)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    h = Harness(tmp_path)
    h.sweep({})
    for _ in range(3):
        h.sweep(MISSING_SYMLINK)
    incident = h.only_incident()
    h.store.add_entries(
        incident.id,
        [TimelineEntry(at=h.now, kind="action", text=HOSTILE_NOTE, source="cli", key="n1")],
    )
    s = Site(h)
    try:
        yield s
    finally:
        s.server.close()


def page_of(h: Harness, path: str) -> str:
    """One page from a site served over `h` for this request only."""
    s = Site(h)
    try:
        return s.get(path).text
    finally:
        s.server.close()


def command(html: str, which: str) -> str:
    """The text of the page's `<pre class="command" id="WHICH-command">`."""
    found = re.search(rf'<pre class="command" id="{which}-command">([^<]*)</pre>', html)
    assert found, html
    return found.group(1)


class _Tags(HTMLParser):
    """Every tag and attribute as parsed: what a browser would build."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(html)
    return parser.tags


def test_incidents_page_lists_open_first_with_filters(site: Site) -> None:
    incident = site.h.only_incident()
    page = site.get("/")
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert f'href="/incidents/{incident.id}"' in page.text
    assert "missing-symlink (" in page.text  # the top cause with its confidence
    assert "100%" in page.text  # the affected share
    none = site.get("/?status=closed")
    assert f'href="/incidents/{incident.id}"' not in none.text
    assert "No incidents match these filters" in none.text
    by_fault = site.get("/?fault=missing-symlink&service=web")
    assert f'href="/incidents/{incident.id}"' in by_fault.text


def test_incident_page_shows_summary_causes_timeline_axis_and_draft(site: Site) -> None:
    incident = site.h.only_incident()
    page = site.get(f"/incidents/{incident.id}")
    assert page.status_code == 200, page.text
    html = page.text
    for cause in incident.root_causes:
        assert f'<span class="fault">{cause.fault}</span>' in html
    assert html.index("missing-symlink") < html.index("port-closed")
    svg = [a for t, a in tags(html) if t == "svg"]
    assert len(svg) == 1 and svg[0]["width"] == "800" and svg[0]["height"] == "150"
    assert 'class="harm' in html
    # Passed checks fold into one row per host (show.py's grouping), never one per check.
    assert "(ruled out)" not in html
    assert len(re.findall(r'class="entry [^"]*ruled-out', html)) == 3
    # A person's entry reads differently from the recorder's.
    assert re.search(r'class="entry kind-action human"', html)
    # The draft, its gaps marked, and the command that finishes it.
    assert '<mark class="fill-in">[[FILL IN:' in html
    # The flags `close` would ask for, for the gaps this draft has.
    close = command(html, "close")
    assert close.startswith(f"recorder close {incident.id} --root-cause ... ")
    assert "--resolution ..." in close and "--escalated-to ..." in close
    assert f'href="/api/v1/incidents/{incident.id}"' in html


def test_incident_page_commands_before_anyone_acted(tmp_path: Path) -> None:
    """Right after detection no action of people's is recorded: the draft's gap for it is
    filled with `recorder note`, which the page shows on its own line; the close command
    holds only flags `recorder close` takes (it once showed note's `--kind`)."""
    from recorder.cli import main

    h = Harness(tmp_path)
    h.sweep({})
    for _ in range(3):
        h.sweep(MISSING_SYMLINK)
    incident = h.only_incident()
    html = page_of(h, f"/incidents/{incident.id}")
    close = command(html, "close")
    close_options = {o for p in main.commands["close"].params for o in p.opts}
    flags = re.findall(r"--[a-z-]+", close)
    assert flags and set(flags) <= close_options, close
    assert command(html, "note").startswith(f"recorder note {incident.id} --kind action ")


def test_hostile_text_is_shown_as_text(site: Site) -> None:
    incident = site.h.only_incident()
    html = site.get(f"/incidents/{incident.id}").text
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#39;note&#39;)&lt;/script&gt; restarted nginx" in html
    assert not any(t == "script" or "onerror" in a for t, a in tags(html))


def test_hostile_alert_label_is_shown_as_text(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.book.on_alert(
        fingerprint="f1",
        firing=True,
        name=HOSTILE_HOST,
        service="web",
        host=HOSTILE_HOST,
        fault=None,
        summary=f"label {HOSTILE_HOST}",
        starts_at=h.now,
        ends_at=None,
    )
    h.book.flush()
    s = Site(h)
    try:
        for path in ("/", *(f"/incidents/{i.id}" for i in h.store.list())):
            html = s.get(path).text
            assert not any(t == "img" or "onerror" in a for t, a in tags(html)), path
        assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    finally:
        s.server.close()


def test_security_headers_on_every_response(site: Site) -> None:
    incident = site.h.only_incident()
    for path in (
        "/",
        f"/incidents/{incident.id}",
        "/incidents/99999",
        "/postmortems",
        "/static/style.css",
        "/metrics",
        "/healthz",
        "/api/v1/incidents",
        "/nowhere",
    ):
        got = site.get(path)
        csp = got.headers.get("Content-Security-Policy", "")
        assert "script-src" not in csp and "default-src 'none'" in csp, path
        assert "frame-ancestors 'none'" in csp, path
        assert got.headers["X-Content-Type-Options"] == "nosniff", path
    # The stylesheet the CSP allows is this server's own.
    links = [a for t, a in tags(site.get("/").text) if t == "link"]
    assert [a["href"] for a in links] == ["/static/style.css", "/static/favicon.svg"]
    assert site.get("/favicon.ico").headers["Content-Type"] == "image/svg+xml"


def test_unknown_pages_are_html_404_pages_and_machine_paths_stay_json(site: Site) -> None:
    """A mistyped or stale link gets a page a person can read (with the navigation back),
    under the same headers; scripts asking /api/ or /metrics keep getting JSON."""
    open_one = site.h.only_incident()  # not closed: it has no postmortem yet
    for path in (
        "/nowhere",
        "/incidents/99999",
        "/incidents/abc",
        "/postmortems/99999",
        f"/postmortems/{open_one.id}",
        "/status/extra",
    ):
        got = site.get(path)
        assert got.status_code == 404, path
        assert got.headers["Content-Type"] == "text/html; charset=utf-8", path
        assert "default-src 'none'" in got.headers["Content-Security-Policy"], path
        assert got.headers["X-Content-Type-Options"] == "nosniff", path
        assert "<h1>Not Found</h1>" in got.text, path
        assert [a["href"] for t, a in tags(got.text) if t == "link"][0] == "/static/style.css"
    hostile = site.get("/%3Cscript%3Ealert(1)%3C/script%3E")
    assert hostile.status_code == 404 and "<script>" not in hostile.text
    for path in ("/api/v1/nothing", "/metricsx", "/healthz/x"):
        got = site.get(path)
        assert got.status_code == 404, path
        assert got.headers["Content-Type"] == "application/json", path
        assert got.json()["error"], path


ROOT_CAUSE = (
    "A nightly cleanup script on lb-01 deleted the sites-enabled symlink for the "
    "example site, so nginx loaded no server block for it and port 80 refused every request"
)
RESOLUTION = (
    "Recreated the symlink with ln -s from sites-available to sites-enabled on "
    "lb-01, ran nginx -t and reloaded nginx, after which the site answered 200 again"
)


def test_postmortem_page_shows_the_final_document(site: Site) -> None:
    h = site.h
    for _ in range(8):
        h.sweep({}, advance=2.0)
    incident = h.only_incident()
    assert incident.status == "resolved"
    assert "/postmortems/" not in site.get("/postmortems").text
    result = close_incident(
        h.store,
        h.config,
        incident.id,
        root_cause=ROOT_CAUSE,
        resolution=RESOLUTION,
        misleading=["none"],
        escalated_to="platform-team at 14:40",
        tasks=["Enforce the sites-enabled symlink of example in the Ansible nginx role on lb-01"],
        affected=None,
        force=False,
    )
    assert result.ok, result.gaps
    listing = site.get("/postmortems").text
    assert f'href="/postmortems/{incident.id}"' in listing
    page = site.get(f"/postmortems/{incident.id}")
    assert page.status_code == 200
    assert ROOT_CAUSE in page.text
    assert "FILL IN" not in page.text
    assert "Postmortem (final)" in site.get(f"/incidents/{incident.id}").text


def test_close_command_asks_again_for_a_root_cause_given_too_short(tmp_path: Path) -> None:
    """A close refused for a one-word root cause keeps the word for the next attempt, and
    the draft then reads as if the cause were given; the page's command must still ask for
    `--root-cause`, as `recorder close` itself will."""
    h = Harness(tmp_path)
    h.sweep({})
    for _ in range(3):
        h.sweep(MISSING_SYMLINK)
    for _ in range(8):
        h.sweep({}, advance=2.0)
    incident = h.only_incident()
    refused = close_incident(
        h.store,
        h.config,
        incident.id,
        root_cause="symlink",
        resolution=RESOLUTION,
        misleading=["none"],
        escalated_to="platform-team at 14:40",
        tasks=["Enforce the sites-enabled symlink of example in the Ansible nginx role on lb-01"],
        affected=None,
        force=False,
    )
    assert not refused.ok and any("--root-cause" in g for g in refused.gaps), refused.gaps
    close = command(page_of(h, f"/incidents/{incident.id}"), "close")
    assert "--root-cause ..." in close, close


def test_read_token_guards_everything_but_healthz(site: Site) -> None:
    site.engine.read_token_value = READ_TOKEN
    assert site.get("/healthz").status_code == 200
    assert site.get("/metrics").status_code == 401
    assert site.get("/api/v1/incidents").status_code == 401
    page = site.get("/?status=open")
    assert page.status_code == 303 and page.headers["Location"] == "/login?next=/%3Fstatus%3Dopen"
    bearer = {"Authorization": f"Bearer {READ_TOKEN}"}
    assert site.get("/metrics", headers=bearer).status_code == 200
    assert site.get("/", headers=bearer).status_code == 200
    assert site.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 303
    # The login form: a wrong token is refused, the right one sets a cookie that works.
    wrong = requests.post(
        site.base + "/login", data={"token": "nope", "next": "/"}, allow_redirects=False, timeout=5
    )
    assert wrong.status_code == 403
    ok = requests.post(
        site.base + "/login",
        data={"token": READ_TOKEN, "next": "//evil.example/"},
        allow_redirects=False,
        timeout=5,
    )
    assert ok.status_code == 303 and ok.headers["Location"] == "/"
    for elsewhere in ("/\t/evil.example/", "/\\evil.example", "https://evil.example/", "/\r\nX: y"):
        moved = requests.post(
            site.base + "/login",
            data={"token": READ_TOKEN, "next": elsewhere},
            allow_redirects=False,
            timeout=5,
        )
        assert moved.status_code == 303 and moved.headers["Location"] == "/", elsewhere
    back = requests.post(
        site.base + "/login",
        data={"token": READ_TOKEN, "next": "/incidents/1?x=1"},
        allow_redirects=False,
        timeout=5,
    )
    assert back.headers["Location"] == "/incidents/1?x=1"
    cookie = ok.cookies.get("recorder_read")
    assert cookie and READ_TOKEN not in cookie
    assert "HttpOnly" in ok.headers["Set-Cookie"] and "SameSite=Strict" in ok.headers["Set-Cookie"]
    assert site.get("/", cookies={"recorder_read": cookie}).status_code == 200
    assert site.get("/", cookies={"recorder_read": "forged"}).status_code == 303


def test_off_loopback_needs_a_readable_read_token(tmp_path: Path) -> None:
    assert read_access_refusal("127.0.0.1:9468", None) is None
    assert read_access_refusal("[::1]:9468", None) is None
    assert read_access_refusal("localhost:9468", None) is None
    refusal = read_access_refusal("0.0.0.0:9468", None)
    assert refusal and "web.read_token_file" in refusal
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert "empty" in (read_access_refusal("0.0.0.0:9468", str(empty)) or "")
    token = tmp_path / "token"
    token.write_text(READ_TOKEN + "\n")
    assert read_access_refusal("0.0.0.0:9468", str(token)) is None


def test_recorder_run_refuses_a_public_listen_without_read_token(tmp_path: Path) -> None:
    config = tmp_path / "recorder.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(tmp_path / "state"),
                "listen": "0.0.0.0:19468",
                "hosts": {"local": {"local": {"prefix": str(tmp_path)}}},
            }
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "recorder", "--config", str(config), "run"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done.stderr
    assert "refusing to listen on 0.0.0.0:19468" in done.stderr
    assert "web.read_token_file" in done.stderr


def test_markdown_subset_is_escaped_and_marked() -> None:
    html = str(
        to_html(
            "# T <b>\n\n> quote\n\n- a `x<y>` **b**\n  - nested [[FILL IN: time]]\n"
            "- [ ] task\n\n1. one\n2. two\n\n```mermaid\n<gantt>\n```\n"
            "Action: &lt;script&gt;x&lt;/script&gt; &amp;lt;\n"
        )
    )
    assert "<h2>T &lt;b&gt;</h2>" in html
    assert "<blockquote>quote</blockquote>" in html
    assert "<code>x&lt;y&gt;</code> <strong>b</strong>" in html
    assert '<ul><li>nested <mark class="fill-in">[[FILL IN: time]]</mark>' in html
    assert "&#9744;</span> task" in html and "<ol><li>one</li><li>two</li></ol>" in html
    assert '<pre class="lang-mermaid">&lt;gantt&gt;</pre>' in html
    assert html.count("<ul>") == html.count("</ul>") == 2
    # An entity the drafter wrote reads as its character, and still as text.
    assert "Action: &lt;script&gt;x&lt;/script&gt; &amp;lt;" in html


def test_lists_page_open_first_then_most_recent(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for n in range(PAGE_SIZE + 5):
        h.store.create_incident(
            Incident(
                id=0,
                status="open" if n == 3 else "resolved",
                title=f"incident number {n}",
                service="web",
                fault="http-5xx" if n % 2 else "nginx-down",
                started_at=start + timedelta(hours=n),
                detected_at=start + timedelta(hours=n, seconds=5),
                resolved_at=None if n == 3 else start + timedelta(hours=n, minutes=9),
            )
        )
    s = Site(h)
    try:
        first = s.get("/").text
        titles = re.findall(r"incident number (\d+)", first)
        assert len(titles) == PAGE_SIZE
        # The open one, then newest first.
        assert titles[:3] == ["3", str(PAGE_SIZE + 4), str(PAGE_SIZE + 3)]
        assert f"1-{PAGE_SIZE} of {PAGE_SIZE + 5}" in first and 'href="?page=2"' in first
        second = s.get("/?page=2").text
        assert re.findall(r"incident number (\d+)", second) == ["5", "4", "2", "1", "0"]
        assert 'href="?"' in second  # back to the first page
        filtered = s.get("/?fault=http-5xx&page=1").text
        assert all(int(n) % 2 for n in re.findall(r"incident number (\d+)", filtered))
        assert "nginx-down" in filtered  # the filter still offers every fault
        assert s.get("/?page=-3").status_code == 200
    finally:
        s.server.close()
