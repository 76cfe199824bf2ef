"""Maintenance over a real daemon's HTTP API: start, list and end with the write token
(api.write_token_file), and never with the read token or the Alertmanager webhook's
(whoever can post alerts must not be able to silence paging)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
import yaml
from click.testing import CliRunner

from recorder.cli import main
from tests.notify_sink import free_port
from tests.test_daemon import Daemon

pytestmark = pytest.mark.slow

WRITE, HOOK, READ = "write-token-1", "hook-token-1", "read-token-1"


def secret(path: Path, text: str, mode: int = 0o600) -> str:
    path.write_text(text + "\n")
    path.chmod(mode)
    return str(path)


def config_data(tmp_path: Path) -> dict[str, object]:
    return {
        "state_dir": str(tmp_path / "state"),
        "listen": f"127.0.0.1:{free_port()}",
        "hosts": {"lb-01": {"local": {}}, "web-01": {"local": {}}},
        "services": {"web": {"entrypoints": ["lb-01"], "hosts": ["lb-01", "web-01"]}},
        "alertmanager": {"token_file": secret(tmp_path / "hook-token", HOOK)},
        "api": {"write_token_file": secret(tmp_path / "write-token", WRITE)},
        "web": {"read_token_file": secret(tmp_path / "read-token", READ)},
    }


@pytest.fixture
def daemon(tmp_path: Path) -> object:
    config = tmp_path / "recorder.yml"
    config.write_text(yaml.safe_dump(config_data(tmp_path)))
    d = Daemon(config, tmp_path / "daemon.log")
    d.start()
    try:
        yield d
    finally:
        d.stop()


def call(
    daemon: Daemon, method: str, path: str, token: str | None, **kw: object
) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(method, daemon.base + path, headers=headers, timeout=5, **kw)  # type: ignore[arg-type]


WINDOW = {"service": "web", "host": "web-01", "for": "30m", "reason": "kernel upgrade"}


def test_maintenance_over_http_needs_the_write_token(daemon: Daemon, tmp_path: Path) -> None:
    path = "/api/v1/maintenance"
    for token in (None, HOOK, READ, WRITE + "x"):
        assert call(daemon, "GET", path, token).status_code == 401, token
        assert call(daemon, "POST", path, token, json=WINDOW).status_code == 401, token
    assert call(daemon, "GET", path, WRITE).json() == []
    started = call(daemon, "POST", path, WRITE, json=WINDOW)
    assert started.status_code == 201, started.text
    window = started.json()
    assert {k: window[k] for k in ("id", "service", "host", "reason", "source")} == {
        "id": 1, "service": "web", "host": "web-01", "reason": "kernel upgrade", "source": "api",
    }  # fmt: skip
    # The same window as the CLI lists it, and the same fields.
    listed = CliRunner().invoke(
        main, ["maintenance", "list", "--json", "--config", str(daemon.config)]
    )
    assert json.loads(listed.output) == [window] == call(daemon, "GET", path, WRITE).json()
    # The CLI's checks, each naming its field.
    for body, reason in [
        ({**WINDOW, "service": "api"}, "service: unknown service 'api' (known: web)"),
        ({**WINDOW, "host": "db-01"}, "host: unknown host 'db-01'"),
        ({**WINDOW, "for": "soon"}, "for: invalid duration"),
        ({**WINDOW, "for": "0s"}, "for: must be greater than 0"),
        ({k: v for k, v in WINDOW.items() if k != "reason"}, "reason: required"),
        ({**WINDOW, "until": "later"}, "unknown field 'until'"),
        ({**WINDOW, "reason": 3}, "reason: must be a string"),
    ]:
        bad = call(daemon, "POST", path, WRITE, json=body)
        assert bad.status_code == 400 and reason in bad.json()["error"], (body, bad.text)
    big = call(daemon, "POST", path, WRITE, json={**WINDOW, "reason": "x" * 10_000})
    assert big.status_code == 413
    # Ending: the write token only.
    for token in (None, HOOK, READ):
        assert call(daemon, "DELETE", f"{path}/1", token).status_code == 401
    assert call(daemon, "DELETE", f"{path}/1", WRITE).json() == {"id": 1, "ended": True}
    assert call(daemon, "DELETE", f"{path}/1", WRITE).status_code == 404
    assert call(daemon, "GET", path, WRITE).json() == []
    # The webhook's token written into the write token file (a token reused): refused,
    # as is an empty file (off).
    secret(tmp_path / "write-token", HOOK)
    assert call(daemon, "GET", path, HOOK).status_code == 403
    assert call(daemon, "POST", path, HOOK, json=WINDOW).status_code == 403
    secret(tmp_path / "write-token", "")
    assert call(daemon, "GET", path, WRITE).status_code == 403
    assert "api.write_token_file holds the webhook's token" in daemon.log.read_text()


def test_the_write_token_file_is_checked_like_the_others(tmp_path: Path) -> None:
    data = config_data(tmp_path)
    config = tmp_path / "recorder.yml"
    (tmp_path / "write-token").chmod(0o644)
    config.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(main, ["config", "check", str(config)])
    assert result.exit_code == 2
    assert "api.write_token_file: " in result.output and "chmod 600" in result.output
    (tmp_path / "write-token").chmod(0o600)
    data["api"] = {"write_token_file": data["alertmanager"]["token_file"]}  # type: ignore[index]
    config.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(main, ["config", "check", str(config)])
    assert result.exit_code == 2
    assert "api.write_token_file: must not be alertmanager.token_file" in result.output
