"""Notifications: the book queues notices in the outbox with the incident change; the
sender delivers them to real loopback receivers, retries with backoff, gives up at
max_age; reminders (repeat, overdue) are queued once."""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from probes.base import Fault
from recorder.cli import main
from recorder.config import Config, NotifyConfig
from recorder.daemon import configure_logging
from recorder.model import Notice
from recorder.notify import RateLimit, backoff, deliver_one, reminders, status
from recorder.postmortem.close import close_incident
from recorder.receivers import signature
from recorder.store import Store, delivery_id
from tests.fixtures import MISSING_SYMLINK, T0, Harness, lab_config
from tests.notify_sink import Sink, free_port
from tests.test_close import CLOSED_AT, flags, recorded
from tests.test_incidents import fill, small_fs  # noqa: F401 (small_fs: a fixture)

SECRET = "s3cret-hook-key"
ALL_EVENTS = ["opened", "cause-changed", "affected-step", "resolved", "reopened", "closed"]


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink(secret=SECRET).start()
    try:
        yield s
    finally:
        s.stop()


def with_notify(h: Harness, tmp_path: Path, url: str, **extra: Any) -> Config:
    secret = tmp_path / "hook-secret"
    secret.write_text(SECRET + "\n")
    secret.chmod(0o600)
    notify = NotifyConfig.model_validate(
        {
            "receivers": {"hook": {"webhook": {"url": url, "secret_file": str(secret)}}},
            "routes": [{"services": ["web"], "events": ALL_EVENTS, "receivers": ["hook"]}],
            **extra,
        }
    )
    config = h.config.model_copy(update={"notify": notify})
    h.config = h.book.config = config
    return config


def outbox(store: Store) -> list[dict[str, Any]]:
    return store.deliveries(("pending", "sent", "failed", "skipped"))


def test_the_book_queues_notices_with_the_incident_change(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    with_notify(h, tmp_path, "http://127.0.0.1:9/webhook")
    h.sweep({})
    for _ in range(3):
        h.sweep(MISSING_SYMLINK)
    inc = h.only_incident()
    rows = outbox(h.store)
    assert [r["event"] for r in rows] == ["opened"]
    assert rows[0]["delivery_id"] == delivery_id(inc.id, inc.detected_at, "opened", "hook")
    payload = json.loads(h.store._read().execute("SELECT payload FROM outbox").fetchone()[0])
    assert payload["incident"]["id"] == inc.id and payload["incident"]["status"] == "open"
    for _ in range(8):
        h.sweep({})
    rows = outbox(h.store)
    assert [r["event"] for r in rows] == ["opened", "resolved"]
    assert len({r["delivery_id"] for r in rows}) == 2
    # A restart over the same store queues nothing twice.
    h.restart()
    h.book.config = h.config
    h.sweep({})
    assert len(outbox(h.store)) == 2


def test_a_route_without_the_event_queues_nothing(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    config = with_notify(h, tmp_path, "http://127.0.0.1:9/webhook")
    only_resolved = config.notify.model_copy(
        update={"routes": [config.notify.routes[0].model_copy(update={"events": ["resolved"]})]}
    )
    h.config = h.book.config = config.model_copy(update={"notify": only_resolved})
    for _ in range(3):
        h.sweep(MISSING_SYMLINK)
    assert outbox(h.store) == []


def test_webhook_is_signed_and_delivered_once(tmp_path: Path, sink: Sink) -> None:
    h = Harness(tmp_path)
    config = with_notify(h, tmp_path, sink.url + "/webhook")
    for _ in range(3):
        h.sweep(MISSING_SYMLINK)
    inc = h.only_incident()
    assert deliver_one(config, h.store, "hook", h.now) == "sent"
    assert deliver_one(config, h.store, "hook", h.now) is None  # nothing else due
    [got] = sink.received
    assert got.problems == [], got.problems
    assert got.body["event"] == "opened"
    assert got.body["incident"]["ref"] == inc.ref
    link = got.body["incident"]["link"]
    assert link.endswith(f"/incidents/{inc.id}") and "/api/" not in link  # the web page
    assert got.headers["x-recorder-event"] == "opened"
    ts = got.headers["x-recorder-timestamp"]
    # The signature covers the timestamp: the same body with another time does not verify.
    raw = json.dumps(got.body, separators=(",", ":")).encode()
    assert got.headers["x-recorder-signature-256"] == signature(SECRET, ts, raw)
    assert signature(SECRET, str(int(ts) - 600), raw) != signature(SECRET, ts, raw)
    assert status(h.store) == []


def test_a_failing_receiver_is_retried_with_backoff_then_given_up(
    tmp_path: Path, sink: Sink
) -> None:
    h = Harness(tmp_path)
    config = with_notify(h, tmp_path, sink.url + "/webhook", max_age="1h")
    for _ in range(3):
        h.sweep(MISSING_SYMLINK)
    sink.status = 500
    assert deliver_one(config, h.store, "hook", h.now) == "failed"
    [row] = status(h.store)
    assert row["state"] == "pending" and row["attempts"] == 1 and "HTTP 500" in row["last_error"]
    # Not due again before its backoff.
    assert deliver_one(config, h.store, "hook", h.now) is None
    later = h.now + timedelta(minutes=10)
    assert deliver_one(config, h.store, "hook", later) == "failed"
    assert status(h.store)[0]["attempts"] == 2
    sink.status = 200
    assert deliver_one(config, h.store, "hook", later + timedelta(minutes=10)) == "sent"
    assert status(h.store) == []
    ids = {r.body["delivery_id"] for r in sink.received}
    assert len(ids) == 1, "every retry carries the same delivery id"
    # Past max_age a failing delivery is given up and listed as failed.
    for _ in range(8):
        h.sweep({})
    sink.status = 503
    assert deliver_one(config, h.store, "hook", h.now + timedelta(hours=2)) == "expired"
    [failed] = status(h.store)
    assert failed["state"] == "failed" and failed["event"] == "resolved"


def test_backoff_doubles_to_a_cap() -> None:
    assert [backoff(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert backoff(30) == 300.0


def test_rate_limit_spaces_messages() -> None:
    now = [0.0]
    limit = RateLimit(2, clock=lambda: now[0])
    assert limit.wait_time() == 0.0 and limit.wait_time() == 0.0
    assert limit.wait_time() == pytest.approx(30.0)
    now[0] = 30.0
    assert limit.wait_time() == 0.0


def test_reminders_repeat_and_overdue_once(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    config = with_notify(h, tmp_path, "http://127.0.0.1:9/webhook", repeat_interval="1h")
    overdue = config.notify.routes[0].model_copy(update={"events": ["overdue"]})
    config = config.model_copy(
        update={
            "notify": config.notify.model_copy(update={"routes": [*config.notify.routes, overdue]})
        }
    )
    for _ in range(3):
        h.sweep(MISSING_SYMLINK)
    inc = h.only_incident()
    assert reminders(config, h.store, inc.detected_at + timedelta(minutes=30)) == 0
    assert reminders(config, h.store, inc.detected_at + timedelta(minutes=70)) == 1
    assert reminders(config, h.store, inc.detected_at + timedelta(minutes=80)) == 0
    for _ in range(8):
        h.sweep({})
    done = h.only_incident()
    assert done.resolved_at is not None
    assert reminders(config, h.store, done.resolved_at + timedelta(days=1)) == 0
    assert reminders(config, h.store, done.resolved_at + timedelta(days=4)) == 1
    assert reminders(config, h.store, done.resolved_at + timedelta(days=5)) == 0
    assert [r["event"] for r in outbox(h.store)] == ["opened", "opened", "resolved", "overdue"]


def test_notices_roll_back_with_a_failed_create(tmp_path: Path) -> None:
    """Same transaction: an outbox row never exists without its incident change."""
    h = Harness(tmp_path)
    for _ in range(3):
        h.sweep(MISSING_SYMLINK)
    inc = h.only_incident()
    bad = Notice("opened", "x", T0, ["hook"], "")
    broken = Notice("opened", "y", "not a time", ["hook"], "")  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        h.store.save_detection(inc, [], [bad, broken])
    assert outbox(h.store) == []


def multi_config(h: Harness, tmp_path: Path, url: str) -> Config:
    key = tmp_path / "pd-key"
    key.write_text("R0UT1NGKEY0123456789012345678901\n")
    key.chmod(0o600)
    notify = NotifyConfig.model_validate(
        {
            "receivers": {
                "chat": {"slack": {"url": url + "/slack"}},
                "pager": {"pagerduty": {"url": url + "/pagerduty", "routing_key_file": str(key)}},
            },
            "routes": [{"events": ALL_EVENTS + ["overdue"], "receivers": ["chat", "pager"]}],
        }
    )
    config = h.config.model_copy(update={"notify": notify})
    h.config = h.book.config = config
    return config


def drain(config: Config, store: Store, name: str, now: Any) -> list[str | None]:
    outcomes = []
    while (outcome := deliver_one(config, store, name, now)) is not None:
        outcomes.append(outcome)
    return outcomes


def test_slack_and_pagerduty_formats_reach_loopback_endpoints(tmp_path: Path, sink: Sink) -> None:
    h = Harness(tmp_path)
    config = multi_config(h, tmp_path, sink.url)
    for _ in range(3):
        h.sweep(MISSING_SYMLINK)
    for _ in range(8):
        h.sweep({})
    inc = h.only_incident()
    assert inc.resolved_at is not None
    reminders(config, h.store, inc.resolved_at + timedelta(days=4))  # overdue
    assert drain(config, h.store, "chat", h.now + timedelta(days=5)) == ["sent"] * 3
    assert drain(config, h.store, "pager", h.now + timedelta(days=5)) == [
        "sent",
        "sent",
        "skipped",  # PagerDuty has no action for a late postmortem
    ]
    assert all(r.problems == [] for r in sink.received), [r.problems for r in sink.received]
    slack = [r.body for r in sink.accepted("/slack")]
    assert [b["text"].split(":")[0] for b in slack] == [
        "Incident opened",
        "Resolved",
        "Postmortem overdue",
    ]
    assert inc.ref in slack[0]["blocks"][0]["text"]["text"]
    assert f"/incidents/{inc.id}|" in slack[0]["blocks"][-1]["elements"][0]["text"]
    pd = [r.body for r in sink.accepted("/pagerduty")]
    assert [b["event_action"] for b in pd] == ["trigger", "resolve"]
    assert {b["dedup_key"] for b in pd} == {inc.ref}  # resolve closes what trigger opened
    assert pd[0]["routing_key"] == "R0UT1NGKEY0123456789012345678901"
    assert pd[0]["payload"]["severity"] == "critical"
    assert pd[0]["payload"]["source"] == "lb-01"
    assert inc.ref in pd[0]["payload"]["summary"]


def cli_config(tmp_path: Path, url: str) -> Path:
    secret = tmp_path / "hook-secret"
    secret.write_text(SECRET)
    secret.chmod(0o600)
    key = tmp_path / "pd-key"
    key.write_text("R0UT1NGKEY")
    key.chmod(0o600)
    path = tmp_path / "recorder.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(tmp_path / "state"),
                "hosts": {"local": {"local": {}}},
                "notify": {
                    "receivers": {
                        "hook": {"webhook": {"url": url + "/webhook", "secret_file": str(secret)}},
                        "pager": {
                            "pagerduty": {"url": url + "/pagerduty", "routing_key_file": str(key)}
                        },
                        "chat": {"slack": {"url": url + "/slack"}},
                    },
                    "routes": [{"events": ["opened"], "receivers": ["hook"]}],
                },
            }
        )
    )
    return path


def test_notify_test_sends_now_and_says_when_refused(tmp_path: Path, sink: Sink) -> None:
    config = cli_config(tmp_path, sink.url)
    result = CliRunner().invoke(main, ["notify", "test", "hook", "--config", str(config)])
    assert result.exit_code == 0, result.output
    [got] = sink.received
    assert got.problems == [] and got.body["event"] == "test"
    assert got.body["delivery_id"] in result.output
    result = CliRunner().invoke(main, ["notify", "test", "pager", "--config", str(config)])
    assert result.exit_code == 0, result.output
    actions = [r.body["event_action"] for r in sink.received if r.path == "/pagerduty"]
    assert actions == ["trigger", "resolve"]  # nothing left open on the pager
    sink.status = 500
    result = CliRunner().invoke(main, ["notify", "test", "hook", "--config", str(config)])
    assert result.exit_code == 1
    assert "hook (webhook) refused the test message: HTTP 500" in result.output
    result = CliRunner().invoke(main, ["notify", "test", "nobody", "--config", str(config)])
    assert result.exit_code == 2
    assert "no receiver 'nobody' in the config (known: chat, hook, pager)" in result.output


def test_a_refused_slack_url_is_not_shown_and_every_kind_says_who_sends(
    tmp_path: Path, sink: Sink
) -> None:
    """A Slack incoming-webhook URL is a secret (its path); requests quoted it in the error
    that `notify test`, the log and `notify status` show."""
    config = cli_config(tmp_path, sink.url)
    data = yaml.safe_load(config.read_text())
    url_file = tmp_path / "slack-url"
    token = "T0SECRET/B0SECRET/XXXXSECRETTOKEN"
    url_file.write_text(f"http://127.0.0.1:{free_port()}/services/{token}?x=QUERYSECRET\n")
    url_file.chmod(0o600)
    data["notify"]["receivers"]["dead"] = {"slack": {"url_file": str(url_file)}}
    config.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(main, ["notify", "test", "dead", "--config", str(config)])
    assert result.exit_code == 1, result.output
    assert "dead (slack) refused the test message: ConnectionError" in result.output
    assert "SECRET" not in result.output and "/[path hidden]" in result.output, result.output
    for receiver in ("chat", "pager"):
        result = CliRunner().invoke(main, ["notify", "test", receiver, "--config", str(config)])
        assert result.exit_code == 0, result.output
    agents = {r.path: r.headers["user-agent"] for r in sink.received}
    assert set(agents) == {"/slack", "/pagerduty"}
    assert all(a.startswith("nginx-recorder/") for a in agents.values()), agents


def test_notify_status_lists_pending_and_failed(tmp_path: Path, sink: Sink) -> None:
    h = Harness(tmp_path)
    config = with_notify(h, tmp_path, sink.url + "/webhook")
    path = tmp_path / "recorder.yml"
    path.write_text(yaml.safe_dump({"state_dir": str(tmp_path), "hosts": {"local": {"local": {}}}}))
    result = CliRunner().invoke(main, ["notify", "status", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "nothing pending or failed"
    for _ in range(3):
        h.sweep(MISSING_SYMLINK)
    sink.status = 502
    deliver_one(config, h.store, "hook", h.now)
    result = CliRunner().invoke(main, ["notify", "status", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert "INC-1" in result.output and "opened" in result.output and "HTTP 502" in result.output
    result = CliRunner().invoke(main, ["notify", "status", "--json", "--config", str(path)])
    [row] = json.loads(result.output)
    assert row["state"] == "pending" and row["attempts"] == 1 and row["receiver"] == "hook"


def test_close_queues_closed_with_the_close(tmp_path: Path) -> None:
    base = lab_config(tmp_path)
    notify = NotifyConfig.model_validate(
        {
            "receivers": {"hook": {"webhook": {"url": "http://127.0.0.1:9/webhook"}}},
            "routes": [{"events": ["closed"], "receivers": ["hook"]}],
        }
    )
    config = base.model_copy(update={"notify": notify})
    store = Store(config.state_path)
    incident = recorded(store, config)
    assert outbox(store) == []
    result = close_incident(store, config, incident.id, **flags(), now=CLOSED_AT)
    assert result.ok, result.gaps
    [row] = outbox(store)
    assert row["event"] == "closed" and row["incident_id"] == incident.id
    payload = json.loads(store._read().execute("SELECT payload FROM outbox").fetchone()[0])
    assert payload["incident"]["status"] == "closed"
    assert payload["text"] == f"Postmortem written: INC-{incident.id}.md"


def test_cause_changed_and_affected_step_once_settled(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    with_notify(h, tmp_path, "http://127.0.0.1:9/webhook")

    def five_xx(hurt: int) -> dict[tuple[str, str], tuple[Fault, str, dict[str, Any]]]:
        return {
            ("lb-01", "error_rate"): (
                Fault.HTTP_5XX,
                f"{hurt}% 5xx",
                {"clients": 100, "clients_with_5xx": hurt, "requests": 500},
            )
        }

    for _ in range(3):
        h.sweep(five_xx(20))
    inc = h.only_incident()
    assert inc.affected.ratio == 0.2
    assert [r["event"] for r in outbox(h.store)] == ["opened"]  # the first share is the base
    h.sweep(five_xx(30))
    assert [r["event"] for r in outbox(h.store)] == ["opened"]  # no step crossed
    h.sweep(five_xx(60))
    events = [r["event"] for r in outbox(h.store)]
    assert events == ["opened", "affected-step"]
    nginx_down = {
        ("lb-01", "process"): (Fault.NGINX_DOWN, "nginx master not running", {}),
        ("lb-01", "http"): (Fault.PORT_CLOSED, "connection refused", {}),
    }
    # The ranking moves as each probe of the sweep lands (http first: port-closed; then
    # process: nginx-down); only the cause that held is announced, once.
    for _ in range(4):
        h.sweep({**five_xx(60), **nginx_down})
    assert h.only_incident().fault == "nginx-down"
    assert [r["event"] for r in outbox(h.store)][2:] == ["affected-step"]  # not settled yet
    for _ in range(4):
        h.sweep({**five_xx(60), **nginx_down})
    rows = outbox(h.store)
    assert [r["event"] for r in rows][2:] == ["affected-step", "cause-changed"]
    payload = json.loads(h.store._read().execute("SELECT payload FROM outbox").fetchall()[-1][0])
    assert payload["text"] == "Top root cause now nginx-down (was http-5xx)"


def test_failing_again_before_the_resolution_is_written_sends_reopened(
    small_fs: Path,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    """`reopened` (docs/notifications.md): the disk is full when the incident resolves, so
    the resolution waits in memory; the service fails again before it can be written. The
    outage goes on in the same incident, and the outbox gets `resolved` then `reopened`
    with it once the disk has room: nothing queued while the store failed is lost."""
    h = Harness(small_fs)
    with_notify(h, tmp_path, "http://127.0.0.1:9/webhook")
    h.sweep({})
    for _ in range(3):
        h.sweep(MISSING_SYMLINK)
    assert [r["event"] for r in outbox(h.store)] == ["opened"]
    fill(small_fs / "filler")
    for _ in range(8):
        h.sweep({})
        fill(small_fs / f"filler-{h.now.timestamp()}")  # take back what SQLite released
    assert h.book.store_error is not None
    h.sweep(MISSING_SYMLINK)  # failing again, the resolution still unwritten
    for f in small_fs.glob("filler*"):
        f.unlink()
    h.sweep(MISSING_SYMLINK)
    assert h.book.store_error is None
    inc = h.only_incident()
    assert inc.status == "open"
    rows = outbox(h.store)
    assert [r["event"] for r in rows] == ["opened", "resolved", "reopened"]
    assert len({r["delivery_id"] for r in rows}) == 3


def test_the_slack_test_message_does_not_look_like_an_open_incident(
    tmp_path: Path, sink: Sink
) -> None:
    """Tried by hand (#17): `notify test` on a Slack receiver read "Status open", "Harm
    began <now>", "Affected: not measured yet" on the phone, like a real incident."""
    config = cli_config(tmp_path, sink.url)
    result = CliRunner().invoke(main, ["notify", "test", "chat", "--config", str(config)])
    assert result.exit_code == 0, result.output
    [got] = [r for r in sink.received if r.path == "/slack"]
    shown = json.dumps(got.body)
    assert "recorder notify test" in got.body["text"]
    for alarming in ("Status* open", "Harm began", "Affected:", "Likely cause"):
        assert alarming not in shown, shown


def test_the_webhook_test_message_is_marked_a_test_with_no_incident(
    tmp_path: Path, sink: Sink
) -> None:
    """Tried by hand (#17): `notify test` on a webhook POSTed an open incident `INC-0`
    (status open, harm began now) that a receiver would file as real."""
    config = cli_config(tmp_path, sink.url)
    result = CliRunner().invoke(main, ["notify", "test", "hook", "--config", str(config)])
    assert result.exit_code == 0, result.output
    [got] = sink.received
    assert got.problems == []  # signed like every delivery
    assert got.headers["x-recorder-event"] == "test"
    body = got.body
    assert body["version"] == 1 and body["event"] == "test"
    assert body["incident"] is None  # no incident behind it, nothing to file
    assert "recorder notify test" in body["summary"] and "nothing is wrong" in body["summary"]
    assert "INC-0" not in json.dumps(body)


def test_a_receiver_that_echoes_its_url_does_not_show_its_secrets(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A webhook URL's user name and password are secrets as much as its path, and a
    receiver may answer an error that repeats the request (its path, the basic auth that
    requests made of the user:password): neither reaches `notify status` or the log
    (#17: the user and password showed, and the body was shown as the receiver sent it)."""
    echoed: list[str] = []

    class Echo(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            auth = self.headers.get("Authorization", "").removeprefix("Basic ")
            said = f"no hook at {self.path} for {base64.b64decode(auth).decode()}"
            echoed.append(said)
            self.send_response(500)
            self.end_headers()
            self.wfile.write(said.encode())

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        h = Harness(tmp_path)
        port = server.server_address[1]
        url = f"http://hookuser:PASSSECRET@127.0.0.1:{port}/hooks/PATHSECRET?key=QUERYSECRET"
        config = with_notify(h, tmp_path, url)
        for _ in range(3):
            h.sweep(MISSING_SYMLINK)
        configure_logging("DEBUG")  # the daemon's logging, as with --log-level DEBUG
        with caplog.at_level("DEBUG"):
            deliver_one(config, h.store, "hook", h.now)
    finally:
        logging.getLogger("urllib3").setLevel(logging.NOTSET)
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert echoed and "PATHSECRET" in echoed[0] and "PASSSECRET" in echoed[0], echoed
    path = tmp_path / "recorder.yml"
    path.write_text(yaml.safe_dump({"state_dir": str(tmp_path), "hosts": {"local": {"local": {}}}}))
    for json_flag in ([], ["--json"]):
        result = CliRunner().invoke(main, ["notify", "status", *json_flag, "--config", str(path)])
        assert result.exit_code == 0, result.output
        assert "HTTP 500: no hook at /[path hidden] for [user hidden]" in result.output or json_flag
        assert "SECRET" not in result.output and "hookuser" not in result.output, result.output
    assert "SECRET" not in caplog.text and "hookuser" not in caplog.text, caplog.text
