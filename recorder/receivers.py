"""Receivers: one message format and one transport per kind (webhook, slack, pagerduty,
email). Each `send_*` takes a `Delivery` (an outbox row with what it says) and returns
normally once the receiver acknowledged it, raises `DeliveryError` when it should be tried
again, or `Skipped` when the kind has nothing to say about the event.

The webhook's JSON is versioned and documented in docs/notifications.md; change it only
with a new `version`.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import smtplib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any
from urllib.parse import unquote, urlsplit

import requests

from recorder import __version__
from recorder.config import PAGERDUTY_URL, Config, Receiver, read_secret, split_listen
from recorder.model import parse_iso, utcnow
from recorder.store import delivery_id

WEBHOOK_VERSION = 1
SIGNATURE_HEADER = "X-Recorder-Signature-256"
TIMESTAMP_HEADER = "X-Recorder-Timestamp"
DELIVERY_HEADER = "X-Recorder-Delivery"
EVENT_HEADER = "X-Recorder-Event"
TOLERANCE = 300  # seconds a receiver should accept a signed timestamp (docs/notifications.md)

HEADLINES = {
    "opened": "Incident opened",
    "cause-changed": "Root cause changed",
    "affected-step": "More users affected",
    "resolved": "Resolved",
    "reopened": "Reopened",
    "closed": "Postmortem written",
    "overdue": "Postmortem overdue",
    "test": "Test message",
}


# What `recorder notify test` says on every receiver: there is no incident behind it, so
# nothing that reads like one (INC-0, "status open", "harm began now").
TEST_TEXT = "Test message from the recorder (recorder notify test): nothing is wrong"


class DeliveryError(Exception):
    """The receiver did not take the message; try again later."""


class Skipped(Exception):  # noqa: N818 (an outcome, not an error)
    """This receiver kind has nothing to send for the event (PagerDuty and `overdue`)."""


@dataclass
class Delivery:
    delivery_id: str
    receiver: str
    event: str
    snapshot: dict[str, Any]  # store.notice_snapshot()
    link: str

    @property
    def incident(self) -> dict[str, Any]:
        incident: dict[str, Any] = self.snapshot["incident"]
        return incident

    @property
    def headline(self) -> str:
        return HEADLINES.get(self.event, self.event)

    @property
    def summary(self) -> str:
        """One line that says it all (a PagerDuty summary, a mail subject, a push text)."""
        if self.event == "test":
            return TEST_TEXT
        i = self.incident
        return f"{self.headline}: {i['ref']} {i['title']}"[:1024]

    @property
    def affected_line(self) -> str:
        a = self.incident["affected"]
        if a.get("ratio") is None:
            # A measure that could not say gives its reason ("share unknown: ...").
            known = a.get("method") not in (None, "unknown") and a.get("evidence")
            return f"Affected: {a['evidence']}" if known else "Affected: not measured yet"
        return f"Affected: {a['ratio']:.0%} ({a['method']}): {a['evidence']}"

    @property
    def began_line(self) -> str:
        """When users were hurt; for an incident opened on a risk (nginx -t fails while
        the running nginx serves), when the risk began and whether harm followed."""
        i = self.incident
        if "harm_began_at" not in i or i["harm_began_at"] == i["started_at"]:
            return f"Harm began {i['started_at']}"  # (a snapshot from before it was kept)
        if i["harm_began_at"] is None:
            return f"Risk began {i['started_at']} (no failed user requests measured)"
        return f"Risk began {i['started_at']}, harm began {i['harm_began_at']}"

    @property
    def causes_line(self) -> str:
        causes = self.incident["root_causes"]
        if not causes:
            return "Likely cause: not ranked yet"
        return "Likely cause: " + ", ".join(f"{c['fault']} ({c['confidence']:.0%})" for c in causes)

    def lines(self) -> list[str]:
        i = self.incident
        return [
            self.summary,
            self.snapshot.get("text") or "",
            f"Service: {i['service']} (hosts: {', '.join(i['hosts'])}); status {i['status']}",
            self.began_line
            + f", detected {i['detected_at']}"
            + (f", resolved {i['resolved_at']}" if i.get("resolved_at") else ""),
            self.affected_line,
            self.causes_line,
            self.link,
        ]


def incident_link(config: Config, incident_id: int) -> str:
    """Where a message points: the incident's web page, under `web.base_url` (else the
    listen address)."""
    return f"{config.base_url}incidents/{incident_id}"


def send(name: str, receiver: Receiver, delivery: Delivery) -> None:
    try:
        SENDERS[receiver.kind](receiver, delivery)
    except ValueError as exc:  # a secret file that became unreadable after the load
        raise DeliveryError(f"{name}: {exc}") from None


# ---- webhook --------------------------------------------------------------------------------


def webhook_body(delivery: Delivery) -> dict[str, Any]:
    if delivery.event == "test":
        # Like GitHub's `ping`: the same envelope, no incident for a receiver to file.
        return {
            "version": WEBHOOK_VERSION,
            "delivery_id": delivery.delivery_id,
            "event": delivery.event,
            "event_at": delivery.snapshot.get("at"),
            "summary": TEST_TEXT,
            "text": TEST_TEXT,
            "incident": None,
        }
    i = delivery.incident
    return {
        "version": WEBHOOK_VERSION,
        "delivery_id": delivery.delivery_id,
        "event": delivery.event,
        "event_at": delivery.snapshot.get("at"),
        "summary": delivery.summary,
        "text": delivery.snapshot.get("text") or "",
        "incident": {
            "id": i["id"],
            "ref": i["ref"],
            "status": i["status"],
            "title": i["title"],
            "service": i["service"],
            "hosts": i["hosts"],
            "fault": i["fault"],
            "planned": i["planned"],
            "started_at": i["started_at"],
            "detected_at": i["detected_at"],
            "resolved_at": i["resolved_at"],
            "closed_at": i["closed_at"],
            "affected": i["affected"],
            "root_causes": i["root_causes"],
            "link": delivery.link,
        },
    }


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256 over `TIMESTAMP.BODY` (GitHub's header, with the
    timestamp signed too so a captured request cannot be replayed later)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def send_webhook(receiver: Receiver, delivery: Delivery) -> None:
    cfg = receiver.webhook
    assert cfg is not None
    url = cfg.url or read_secret(cfg.url_file or "")
    body = json.dumps(webhook_body(delivery), separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"nginx-recorder/{__version__}",
        EVENT_HEADER: delivery.event,
        DELIVERY_HEADER: delivery.delivery_id,
        TIMESTAMP_HEADER: timestamp,
    }
    if cfg.secret_file:
        headers[SIGNATURE_HEADER] = signature(read_secret(cfg.secret_file), timestamp, body)
    _post(url, body, headers, receiver.timeout)


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> None:
    # Every kind says who it is (Slack and PagerDuty went out as python-requests/X).
    headers = {"User-Agent": f"nginx-recorder/{__version__}", **headers}
    try:
        response = requests.post(url, data=body, headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        raise DeliveryError(without_url_secrets(f"{type(exc).__name__}: {exc}", url)) from None
    if not 200 <= response.status_code < 300:
        # A receiver may echo the request (its URL, token and all) in its error body:
        # hidden before it is cut, so no part of a secret is left at the cut.
        said = without_url_secrets(response.text[: 200 + 4 * len(url)], url)
        raise DeliveryError(f"HTTP {response.status_code}: {said[:200]}")


def without_url_secrets(text: str, url: str) -> str:
    """`text` with `url`'s secret parts hidden: its path and query, and the user name and
    password before the host. A Slack webhook URL's path is its secret (a webhook's
    `url_file` may hold a token there, or in `https://user:token@host/`), and requests
    quotes the path in its errors ("Max retries exceeded with url: /services/T.../B.../")
    as a receiver may echo any of it in its error body; all reach the log, the outbox's
    last error and `recorder notify status`."""
    parts = urlsplit(url)
    tail = parts.path + (f"?{parts.query}" if parts.query else "")
    hidden = [(tail, "/[path hidden]"), (parts.path, "/[path hidden]")]
    hidden.append((parts.query, "[query hidden]"))
    userinfo = parts.netloc.rpartition("@")[0]
    for part in (userinfo, parts.password or "", parts.username or ""):
        hidden.append((part, "[user hidden]"))
    # Longest first (the whole before its pieces), each also as a receiver that decoded
    # the URL would echo it.
    pairs = {(q, label) for secret, label in hidden for q in (secret, unquote(secret))}
    for secret, label in sorted(pairs, key=lambda p: -len(p[0])):
        if len(secret) > 1:  # "/" alone hides nothing and would mangle the text
            text = text.replace(secret, label)
    return text


# ---- slack ----------------------------------------------------------------------------------


def slack_body(delivery: Delivery) -> dict[str, Any]:
    """Slack incoming-webhook message: `text` for notifications and old clients, blocks
    short enough to read on a phone."""
    i = delivery.incident
    if delivery.event == "test":
        # No incident behind it: status, harm and cause lines would read like a real one
        # on a phone (INC-0, "Status open", "Harm began" now).
        return {
            "text": TEST_TEXT,
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": "Test message"}},
                {"type": "section", "text": {"type": "mrkdwn", "text": TEST_TEXT}},
                {
                    "type": "context",
                    "elements": [{"type": "mrkdwn", "text": f"<{delivery.link}|the recorder>"}],
                },
            ],
        }

    def mrkdwn(text: str) -> str:  # Slack's three escapes
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    link = f"<{delivery.link}|open {i['ref']}>"
    details = "\n".join(
        line
        for line in (
            mrkdwn(delivery.snapshot.get("text") or ""),
            f"*Service* {mrkdwn(i['service'])} · *Status* {i['status']}",
            mrkdwn(delivery.affected_line),
            mrkdwn(delivery.causes_line),
        )
        if line
    )
    return {
        "text": delivery.summary,
        "blocks": [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": f"{delivery.headline}: {i['ref']}"[:150]},
            },
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{mrkdwn(i['title'])}*"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": details[:3000]}},
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"{mrkdwn(delivery.began_line)} · {link}",
                    }
                ],
            },
        ],
    }


def send_slack(receiver: Receiver, delivery: Delivery) -> None:
    cfg = receiver.slack
    assert cfg is not None
    url = cfg.url or read_secret(cfg.url_file or "")
    body = json.dumps(slack_body(delivery)).encode()
    _post(url, body, {"Content-Type": "application/json"}, receiver.timeout)


# ---- pagerduty ------------------------------------------------------------------------------

PD_ACTIONS = {
    "opened": "trigger",
    "reopened": "trigger",
    "cause-changed": "trigger",  # same dedup_key: updates the open alert
    "affected-step": "trigger",
    "test": "trigger",
    "resolved": "resolve",
    "closed": "resolve",
}


def pagerduty_body(routing_key: str, severity: str, delivery: Delivery) -> dict[str, Any]:
    """PagerDuty Events API v2: one alert per incident (dedup_key = the incident id), so
    `resolve` closes what `trigger` opened and a repeat updates it."""
    action = PD_ACTIONS.get(delivery.event)
    if action is None:
        raise Skipped(f"PagerDuty has no action for {delivery.event}")
    i = delivery.incident
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": i["ref"] if delivery.event != "test" else delivery.delivery_id,
        "client": "nginx-recorder",
        "client_url": delivery.link,
        "links": [{"href": delivery.link, "text": f"{i['ref']} in the recorder"}],
    }
    if action == "trigger":
        body["payload"] = {
            "summary": delivery.summary,
            "source": ", ".join(i["hosts"]) or i["service"],
            "severity": severity,
            "timestamp": i["started_at"],
            "component": i["service"],
            "class": i["fault"] or "unknown",
            "custom_details": {
                "delivery_id": delivery.delivery_id,
                "event": delivery.event,
                "affected": i["affected"],
                "root_causes": i["root_causes"],
                "detected_at": i["detected_at"],
            },
        }
    return body


def send_pagerduty(receiver: Receiver, delivery: Delivery) -> None:
    cfg = receiver.pagerduty
    assert cfg is not None
    body = pagerduty_body(read_secret(cfg.routing_key_file), cfg.severity, delivery)
    _post(cfg.url or PAGERDUTY_URL, json.dumps(body).encode(), _JSON, receiver.timeout)
    if delivery.event == "test":  # leave nothing open for someone to resolve by hand
        done = {k: body[k] for k in ("routing_key", "dedup_key")} | {"event_action": "resolve"}
        _post(cfg.url or PAGERDUTY_URL, json.dumps(done).encode(), _JSON, receiver.timeout)


_JSON = {"Content-Type": "application/json"}


# ---- email ----------------------------------------------------------------------------------


def email_message(receiver: Receiver, delivery: Delivery) -> EmailMessage:
    """Plain text and HTML; every message of one incident in one thread: the `opened`
    mail's Message-ID is the thread's root, every later one answers it. The test mail
    stands alone and says only that it is a test (no incident behind it, no INC-0)."""
    cfg = receiver.email
    assert cfg is not None
    i = delivery.incident
    test = delivery.event == "test"
    domain = cfg.from_.rsplit("@", 1)[-1] or "recorder.invalid"
    msg = EmailMessage()
    msg["From"] = cfg.from_
    msg["To"] = ", ".join(cfg.to)
    # One subject for the whole thread (some mail clients thread by it too); the title,
    # which changes as the ranking does, is in the body.
    subject = TEST_TEXT if test else f"{i['ref']}: {i['service']} incident"
    msg["Subject"] = f"[recorder] {subject}"
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = make_msgid(domain=domain) if test else f"<{delivery.delivery_id}@{domain}>"
    detected = parse_iso(i["detected_at"])
    if delivery.event not in ("opened", "test") and detected is not None:
        root = f"<{delivery_id(i['id'], detected, 'opened', delivery.receiver)}@{domain}>"
        msg["In-Reply-To"] = root
        msg["References"] = root
    msg["X-Recorder-Delivery"] = delivery.delivery_id
    msg["X-Recorder-Event"] = delivery.event
    lines = [TEST_TEXT, delivery.link] if test else delivery.lines()
    msg.set_content("\n".join(line for line in lines if line) + "\n")
    rows = "".join(f"<p>{html.escape(line)}</p>" for line in lines[1:-1] if line)
    link = html.escape(delivery.link, quote=True)
    msg.add_alternative(
        f"<!doctype html><html><body><h2>{html.escape(delivery.summary)}</h2>{rows}"
        f'<p><a href="{link}">Open {"the recorder" if test else html.escape(i["ref"])}</a></p>'
        "</body></html>\n",
        subtype="html",
    )
    return msg


def send_email(receiver: Receiver, delivery: Delivery) -> None:
    cfg = receiver.email
    assert cfg is not None
    host, port = split_listen(cfg.address)
    msg = email_message(receiver, delivery)
    try:
        with smtplib.SMTP(host, port, timeout=receiver.timeout) as smtp:
            if cfg.starttls:
                context = ssl.create_default_context(cafile=cfg.ca_cert)
                smtp.starttls(context=context)
            if cfg.username and cfg.password_file:
                smtp.login(cfg.username, read_secret(cfg.password_file))
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException, ValueError) as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from None


SENDERS: dict[str, Callable[[Receiver, Delivery], None]] = {
    "webhook": send_webhook,
    "slack": send_slack,
    "pagerduty": send_pagerduty,
    "email": send_email,
}
