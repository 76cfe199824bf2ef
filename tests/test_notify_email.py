"""Email notifications to a real SMTP server in the test process (aiosmtpd on loopback,
STARTTLS with a certificate made here, AUTH): headers, threading, both parts."""

from __future__ import annotations

import email
import email.policy
import ssl
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from click.testing import CliRunner

from recorder.cli import main
from recorder.config import NotifyConfig
from recorder.notify import deliver_one
from tests.fixtures import MISSING_SYMLINK, Harness
from tests.notify_sink import free_port

USER, PASSWORD = "recorder", "smtp-pass-123"


class Inbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:  # noqa: N802
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        self.envelopes.append((str(envelope.mail_from), list(envelope.rcpt_tos)))
        return "250 OK"


def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok)


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("smtp-tls")
    key, crt = d / "key.pem", d / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(crt),
        ],
        check=True,
        capture_output=True,
    )
    return key, crt


@pytest.fixture
def smtp(cert: tuple[Path, Path]) -> Iterator[tuple[Inbox, int]]:
    key, crt = cert
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(crt, key)
    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        authenticator=authenticate,
    )
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def test_mails_carry_both_parts_and_thread_per_incident(
    tmp_path: Path, smtp: tuple[Inbox, int], cert: tuple[Path, Path]
) -> None:
    inbox, port = smtp
    password = tmp_path / "smtp-password"
    password.write_text(PASSWORD + "\n")
    password.chmod(0o600)
    h = Harness(tmp_path)
    notify = NotifyConfig.model_validate(
        {
            "receivers": {
                "mail": {
                    "email": {
                        "url": f"smtp://127.0.0.1:{port}",
                        "from": "recorder@ops.example",
                        "to": ["oncall@ops.example", "web@ops.example"],
                        "ca_cert": str(cert[1]),
                        "username": USER,
                        "password_file": str(password),
                    }
                }
            },
            "routes": [{"events": ["opened", "resolved"], "receivers": ["mail"]}],
        }
    )
    config = h.config.model_copy(update={"notify": notify})
    h.config = h.book.config = config
    for _ in range(3):
        h.sweep(MISSING_SYMLINK)
    for _ in range(8):
        h.sweep({})
    inc = h.only_incident()
    later = h.now + timedelta(minutes=1)
    assert deliver_one(config, h.store, "mail", later) == "sent"
    assert deliver_one(config, h.store, "mail", later) == "sent"
    rows = h.store.deliveries(("sent",))
    opened, resolved = inbox.messages
    assert inbox.envelopes[0] == (
        "recorder@ops.example",
        ["oncall@ops.example", "web@ops.example"],
    )
    assert opened["Message-ID"] == f"<{rows[0]['delivery_id']}@ops.example>"
    assert "In-Reply-To" not in opened
    assert resolved["Message-ID"] == f"<{rows[1]['delivery_id']}@ops.example>"
    assert resolved["In-Reply-To"] == opened["Message-ID"]
    assert resolved["References"] == opened["Message-ID"]
    assert opened["Subject"] == resolved["Subject"]
    assert inc.ref in opened["Subject"]
    for msg in (opened, resolved):
        assert msg.get_content_type() == "multipart/alternative"
        text = msg.get_body(("plain",))
        page = msg.get_body(("html",))
        assert text is not None and page is not None
        assert inc.ref in text.get_content() and "Affected: 100%" in text.get_content()
        assert f'/incidents/{inc.id}"' in page.get_content()
    assert resolved.get_body(("plain",)).get_content().startswith("Resolved: ")  # type: ignore[union-attr]


def test_a_server_without_starttls_is_refused_not_sent_in_clear(tmp_path: Path) -> None:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        h = Harness(tmp_path)
        notify = NotifyConfig.model_validate(
            {
                "receivers": {
                    "mail": {
                        "email": {
                            "smtp": f"127.0.0.1:{port}",
                            "from": "r@x.example",
                            "to": ["o@x.example"],
                        }
                    }
                },
                "routes": [{"events": ["opened"], "receivers": ["mail"]}],
            }
        )
        config = h.config.model_copy(update={"notify": notify})
        h.config = h.book.config = config
        for _ in range(3):
            h.sweep(MISSING_SYMLINK)
        assert deliver_one(config, h.store, "mail", h.now) == "failed"
        assert inbox.messages == []
        assert "STARTTLS" in h.store.deliveries(("pending",))[0]["last_error"]
    finally:
        controller.stop()


def test_the_test_mail_says_it_is_a_test_not_an_open_incident(
    tmp_path: Path, smtp: tuple[Inbox, int], cert: tuple[Path, Path]
) -> None:
    """Tried by hand (#17): `notify test` on an email receiver mailed "[recorder] INC-0:
    test incident" with "status open" and "Harm began <now>", like a real incident."""
    inbox, port = smtp
    password = tmp_path / "smtp-password"
    password.write_text(PASSWORD + "\n")
    password.chmod(0o600)
    mail = {
        "url": f"smtp://127.0.0.1:{port}",
        "from": "recorder@ops.example",
        "to": ["oncall@ops.example"],
        "ca_cert": str(cert[1]),
        "username": USER,
        "password_file": str(password),
    }
    config = tmp_path / "recorder.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(tmp_path / "state"),
                "hosts": {"local": {"local": {}}},
                "notify": {"receivers": {"mail": {"email": mail}}, "routes": []},
            }
        )
    )
    result = CliRunner().invoke(main, ["notify", "test", "mail", "--config", str(config)])
    assert result.exit_code == 0, result.output
    [msg] = inbox.messages
    assert msg["Subject"].startswith("[recorder] Test message")
    assert msg["X-Recorder-Event"] == "test"
    text = msg.get_body(("plain",))
    page = msg.get_body(("html",))
    assert text is not None and page is not None
    for part in (msg["Subject"], text.get_content(), page.get_content()):
        assert "INC-0" not in part, part
        for alarming in ("status open", "Harm began", "Affected:", "Likely cause"):
            assert alarming not in part, part
    assert "recorder notify test" in text.get_content()
    assert "nothing is wrong" in text.get_content()
