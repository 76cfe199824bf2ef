"""Config: valid examples load; each invalid example is paired with its exact errors."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

from probes.durations import parse_duration
from recorder.cli import main
from recorder.config import ConfigError, load_config, parse_config, split_listen

CASES = Path(__file__).parent / "config"
INVALID = sorted(CASES.glob("invalid-*.yml"))


def test_every_invalid_case_has_its_expected_errors() -> None:
    assert INVALID, "no invalid config cases"
    for case in INVALID:
        assert case.with_suffix(".err").exists(), f"{case.name} has no .err file"


@pytest.mark.parametrize("case", INVALID, ids=lambda p: p.stem)
def test_invalid_config_gives_exact_errors(case: Path) -> None:
    expected = case.with_suffix(".err").read_text().splitlines()
    with pytest.raises(ConfigError) as err:
        load_config(case)
    assert err.value.errors == expected


@pytest.mark.parametrize("case", INVALID, ids=lambda p: p.stem)
def test_config_check_exits_2_and_prints_field_paths(case: Path) -> None:
    result = CliRunner().invoke(main, ["config", "check", str(case)])
    assert result.exit_code == 2, result.output
    for line in case.with_suffix(".err").read_text().splitlines():
        assert f"  {line}" in result.output


@pytest.mark.parametrize("case", sorted(CASES.glob("valid-*.yml")), ids=lambda p: p.stem)
def test_valid_configs_load_and_check_ok(case: Path) -> None:
    config = load_config(case)
    assert config.hosts
    # Meant for other machines: the files they name are not here.
    result = CliRunner().invoke(main, ["config", "check", "--no-file-checks", str(case)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "ok"


def test_schema_and_reference_errors_come_in_one_report() -> None:
    case = CASES / "invalid-schema-and-references.yml"
    result = CliRunner().invoke(main, ["config", "check", "--no-file-checks", str(case)])
    assert result.exit_code == 2, result.output
    assert result.output.splitlines()[1:] == [
        "  hosts.web-01.ssh.port: Input should be less than or equal to 65535",
        "  checks.0.hosts: unknown host 'web-09'",
        "  services.web.entrypoints: unknown host 'lb-01'",
    ]


def test_design_example_derived_views() -> None:
    config = load_config(CASES / "valid-design.yml")
    assert config.service_of("web-01") == "web"
    assert config.entrypoints_of("web") == ["lb-01"]
    assert config.hosts_of("web")[0] == "lb-01"
    check = config.checks[0]
    assert config.interval(check) == 10.0
    assert config.for_(check) == 0.0
    assert config.recover_after(check) == 30.0
    probes = {name for _, name, _ in config.checks_for("lb-01")}
    assert probes == {"http", "sites", "config", "error_rate", "upstreams"}
    assert str(config.zone) == "Africa/Nairobi"
    assert config.base_url == "http://recorder.example:9468/"
    assert config.web.read_token_file == "/etc/recorder/read-token"
    assert config.web.history_days == 30


def test_base_url_falls_back_to_the_listen_address() -> None:
    config = load_config(CASES / "valid-minimal.yml")
    host, port = config.listen.rsplit(":", 1)
    assert config.base_url == f"http://{host}:{port}/"
    wildcard = config.model_copy(update={"listen": "0.0.0.0:9468"})
    assert wildcard.base_url == "http://127.0.0.1:9468/"


def test_check_overrides_defaults() -> None:
    config = load_config(CASES / "valid-minimal.yml")
    assert config.interval(config.checks[0]) == 0.5


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10.0), ("1m", 60.0), ("500ms", 0.5), ("2h", 7200.0), (3, 3.0), ("1.5s", 1.5)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10 seconds", "-1s", "1y", "99999d", True, None, [1]])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_listen_forms() -> None:
    assert split_listen("127.0.0.1:9468") == ("127.0.0.1", 9468)
    assert split_listen("[::1]:9468") == ("::1", 9468)
    for bad in ("9468", "127.0.0.1", "127.0.0.1:99999", "[::1]"):
        with pytest.raises(ValueError):
            split_listen(bad)


def test_config_given_by_environment(tmp_path: Path) -> None:
    state = tmp_path / "state"
    cfg = tmp_path / "r.yml"
    cfg.write_text(f"state_dir: {state}\nhosts:\n  local: {{local: {{}}}}\n")
    result = CliRunner().invoke(main, ["incidents", "list"], env={"RECORDER_CONFIG": str(cfg)})
    assert result.exit_code == 0, result.output
    assert "no incidents" in result.output


def test_the_services_config_is_read_when_none_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import recorder.cli

    state = tmp_path / "state"
    cfg = tmp_path / "recorder.yml"
    cfg.write_text(f"state_dir: {state}\nhosts:\n  local: {{local: {{}}}}\n")
    monkeypatch.setattr(recorder.cli, "DEFAULT_CONFIG", cfg)
    result = CliRunner().invoke(main, ["incidents", "list"], env={"RECORDER_CONFIG": None})
    assert result.exit_code == 0, result.output
    assert "no incidents" in result.output
    result = CliRunner().invoke(main, ["config", "check"], env={"RECORDER_CONFIG": None})
    assert result.exit_code == 0 and result.output.strip() == "ok", result.output


def test_missing_config_is_a_clear_error() -> None:
    result = CliRunner().invoke(main, ["incidents", "list"], env={"RECORDER_CONFIG": ""})
    assert result.exit_code == 2
    assert "no config" in result.output


def test_bad_config_for_a_command_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "r.yml"
    cfg.write_text("hosts: {}\nbogus: 1\n")
    result = CliRunner().invoke(main, ["--config", str(cfg), "incidents", "list"])
    assert result.exit_code == 2
    assert "bogus: Extra inputs are not permitted" in result.output


def test_parse_config_rejects_non_mapping() -> None:
    with pytest.raises(ConfigError):
        parse_config(["a"])


def test_a_huge_value_gives_a_short_error(tmp_path: Path) -> None:
    huge = "Mars/" + "x" * 200_000
    config = tmp_path / "recorder.yml"
    config.write_text(f"timezone: {huge}\nhosts: {{web-01: {{local: {{}}}}}}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    [line] = caught.value.errors
    assert line.startswith("timezone: ") and len(line) < 400, line[:500]
    assert line.endswith("characters in all)")
    result = CliRunner().invoke(main, ["config", "check", str(config)])
    assert result.exit_code == 2 and len(result.output) < 1000


# ---- --config before or after the command -----------------------------------------------

# Every command that reads the config, with the arguments it needs.
READS_CONFIG = {
    "run": ["run"],
    "probe": ["probe"],
    "config check": ["config", "check"],
    "incidents list": ["incidents", "list"],
    "incidents show": ["incidents", "show", "1"],
    "note": ["note", "1", "text"],
    "event deploy": ["event", "deploy", "--service", "web", "--version", "1"],
    "draft": ["draft", "1"],
    "close": ["close", "1"],
    "notify test": ["notify", "test", "hook"],
    "notify status": ["notify", "status"],
    "maintenance start": [
        "maintenance",
        "start",
        "--service",
        "web",
        "--for",
        "1m",
        "--reason",
        "x",
    ],
    "maintenance list": ["maintenance", "list"],
    "maintenance end": ["maintenance", "end", "1"],
}


def leaf_commands(group: click.Group, prefix: str = "") -> dict[str, click.Command]:
    found: dict[str, click.Command] = {}
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        if isinstance(command, click.Group):
            found.update(leaf_commands(command, f"{prefix}{name} "))
        else:
            found[f"{prefix}{name}"] = command
    return found


def test_every_command_that_reads_the_config_takes_config_after_it() -> None:
    commands = {n: c for n, c in leaf_commands(main).items() if not n.startswith("lab ")}
    taking = {n for n, c in commands.items() if any("--config" in p.opts for p in c.params)}
    assert taking == set(READS_CONFIG)
    assert set(commands) - taking == {"logscan", "lint"}  # they read files, not the config


@pytest.fixture
def bad_config(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yml"
    path.write_text("hosts: {local: {local: {}}}\nbogus: 1\n")
    return path


@pytest.mark.parametrize("args", READS_CONFIG.values(), ids=list(READS_CONFIG))
def test_config_after_the_command_is_the_one_read(args: list[str], bad_config: Path) -> None:
    # A bad config given after the command: every command reads it (and refuses it)
    # before doing anything, `run` before it starts.
    result = CliRunner().invoke(
        main, [*args, "--config", str(bad_config)], env={"RECORDER_CONFIG": None}
    )
    assert result.exit_code == 2, result.output
    assert str(bad_config) in result.output
    assert "bogus: Extra inputs are not permitted" in result.output


def test_config_after_the_command_wins_over_before_and_environment(
    tmp_path: Path, bad_config: Path
) -> None:
    good = tmp_path / "good.yml"
    good.write_text(f"state_dir: {tmp_path / 'state'}\nhosts:\n  local: {{local: {{}}}}\n")
    runner = CliRunner()
    for args, env in [
        (["--config", str(bad_config), "incidents", "list", "--config", str(good)], None),
        (["incidents", "list", "--config", str(good)], str(bad_config)),
        (["--config", str(good), "incidents", "list"], str(bad_config)),
        # Between the group and its command, as `recorder incidents --config F list` reads.
        (["incidents", "--config", str(good), "list"], str(bad_config)),
        (["incidents", "--config", str(bad_config), "list", "--config", str(good)], None),
    ]:
        result = runner.invoke(main, args, env={"RECORDER_CONFIG": env})
        assert result.exit_code == 0, (args, result.output)
        assert "no incidents" in result.output
    result = runner.invoke(main, ["config", "check"], env={"RECORDER_CONFIG": str(good)})
    assert result.exit_code == 0 and result.output.strip() == "ok", result.output
    result = runner.invoke(main, ["config", "check"], env={"RECORDER_CONFIG": None})
    assert result.exit_code == 2 and "no config" in result.output


def test_the_default_zone_is_the_machines(monkeypatch: pytest.MonkeyPatch) -> None:
    from recorder.config import parse_config
    from recorder.zones import machine_zone

    hosts = {"hosts": {"web-01": {"local": {}}}}
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    assert machine_zone() == "Asia/Tokyo"
    assert parse_config(hosts).timezone == "Asia/Tokyo"
    monkeypatch.setenv("TZ", ":/usr/share/zoneinfo/America/La_Paz")
    assert machine_zone() == "America/La_Paz"
    # A TZ that names no zone falls through to the system's files, and always to a zone.
    monkeypatch.setenv("TZ", "Nowhere/Fake")
    from zoneinfo import ZoneInfo

    ZoneInfo(machine_zone())
    assert parse_config({**hosts, "timezone": "Africa/Nairobi"}).timezone == "Africa/Nairobi"


def test_daemon_log_lines_carry_their_zone() -> None:
    import subprocess
    import sys

    code = (
        "import logging; from recorder.daemon import configure_logging; configure_logging();"
        "logging.getLogger('recorder.test').warning('hello')"
    )
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "TZ": "Asia/Kolkata"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+05:30 WARNING recorder.test: hello\n", done.stderr
    ), done.stderr


def test_the_labs_config_shows_times_in_the_machines_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    from recorder.lab.templates import recorder_config

    text, data = recorder_config(
        state_dir="/tmp/x",
        listen="127.0.0.1:9468",
        hosts={"lb-01": {"local": {}}, "web-01": {"local": {}}, "web-02": {"local": {}}},
        urls={h: "http://127.0.0.1:1/" for h in ("lb-01", "web-01", "web-02")},
        header="lab",
    )
    assert "timezone" not in data and "timezone:" not in text
    monkeypatch.setenv("TZ", "Europe/Lisbon")
    assert parse_config(data).timezone == "Europe/Lisbon"


# ---- the files a config names ----------------------------------------------------------------


def files_config(tmp_path: Path, **ssh: object) -> Path:
    """Two SSH hosts and the webhook, naming files under tmp_path."""
    key, known, token = tmp_path / "id_ed25519", tmp_path / "known_hosts", tmp_path / "token"
    fields = {"address": "10.0.0.11", "user": "ops", "key": str(key), "known_hosts": str(known)}
    data = {
        "hosts": {
            "web-01": {"ssh": {**fields, **ssh}},
            "web-02": {"ssh": {"address": "10.0.0.12", "user": "ops"}},  # agent, default
        },
        "alertmanager": {"token_file": str(token)},
    }
    path = tmp_path / "recorder.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    path.write_text(text)
    path.chmod(mode)


def check(config: Path, *flags: str) -> tuple[int, list[str]]:
    home = config.parent / "home"  # web-02's default ~/.ssh/known_hosts lives here
    result = CliRunner().invoke(
        main, ["config", "check", *flags, str(config)], env={"HOME": str(home)}
    )
    return result.exit_code, result.output.splitlines()


def test_config_check_reports_missing_files_with_their_fields(tmp_path: Path) -> None:
    config = files_config(tmp_path)
    code, lines = check(config)
    assert code == 2
    assert lines == [
        f"{config}: invalid",
        f"  hosts.web-01.ssh.key: {tmp_path}/id_ed25519: no such file",
        f"  hosts.web-01.ssh.known_hosts: {tmp_path}/known_hosts: no such file",
        "  hosts.web-02.ssh.known_hosts: ~/.ssh/known_hosts: no such file",
        f"  alertmanager.token_file: {tmp_path}/token: no such file",
    ]
    # For a config meant for another machine: the files are not looked at.
    assert check(config, "--no-file-checks") == (0, ["ok"])
    # `recorder run` loads it all the same: a missing token file only disables the webhook.
    assert load_config(config).alertmanager.token_file == str(tmp_path / "token")


def test_config_check_reports_secrets_open_to_others_and_unusable_files(
    tmp_path: Path,
) -> None:
    config = files_config(tmp_path)
    write_private(tmp_path / "id_ed25519", "KEY\n", 0o644)
    (tmp_path / "known_hosts").mkdir()
    write_private(tmp_path / "token", "", 0o640)
    (tmp_path / "home/.ssh").mkdir(parents=True)
    write_private(tmp_path / "home/.ssh/known_hosts", "x ssh-ed25519 AAAA\n", 0o644)
    code, lines = check(config)
    assert code == 2
    assert lines[1:] == [
        f"  hosts.web-01.ssh.key: {tmp_path}/id_ed25519: holds a secret but is open to group "
        f"or others (mode 0644; chmod 600 {tmp_path}/id_ed25519)",
        f"  hosts.web-01.ssh.known_hosts: {tmp_path}/known_hosts: not a regular file",
        f"  alertmanager.token_file: {tmp_path}/token: the file is empty",
        f"  alertmanager.token_file: {tmp_path}/token: holds a secret but is open to group "
        f"or others (mode 0640; chmod 600 {tmp_path}/token)",
    ]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_config_check_reports_an_unreadable_file(tmp_path: Path) -> None:
    config = files_config(tmp_path)
    write_private(tmp_path / "id_ed25519", "KEY\n", 0o000)
    code, lines = check(config)
    assert code == 2
    assert f"  hosts.web-01.ssh.key: {tmp_path}/id_ed25519: cannot read: Permission denied" in lines


def test_config_check_passes_private_files_and_a_known_hosts_to_be_written(
    tmp_path: Path,
) -> None:
    # Trusting on first use, the recorder writes known_hosts itself: missing is fine.
    config = files_config(tmp_path, trust_on_first_use=True)
    write_private(tmp_path / "id_ed25519", "KEY\n")
    write_private(tmp_path / "token", "secret\n")
    (tmp_path / "home/.ssh").mkdir(parents=True)
    write_private(tmp_path / "home/.ssh/known_hosts", "x ssh-ed25519 AAAA\n", 0o644)
    assert check(config) == (0, ["ok"])


def test_config_check_reports_files_beside_schema_errors(tmp_path: Path) -> None:
    config = files_config(tmp_path, port=0)
    write_private(tmp_path / "id_ed25519", "KEY\n")
    write_private(tmp_path / "known_hosts", "x ssh-ed25519 AAAA\n")
    code, lines = check(config)
    assert code == 2
    assert lines[1:] == [
        "  hosts.web-01.ssh.port: Input should be greater than or equal to 1",
        "  hosts.web-02.ssh.known_hosts: ~/.ssh/known_hosts: no such file",
        f"  alertmanager.token_file: {tmp_path}/token: no such file",
    ]


def test_config_check_reports_the_web_read_token_file(tmp_path: Path) -> None:
    config = files_config(tmp_path, trust_on_first_use=True)
    write_private(tmp_path / "id_ed25519", "KEY\n")
    write_private(tmp_path / "token", "secret\n")
    (tmp_path / "home/.ssh").mkdir(parents=True)
    write_private(tmp_path / "home/.ssh/known_hosts", "x ssh-ed25519 AAAA\n", 0o644)
    data = yaml.safe_load(config.read_text())
    data["web"] = {"read_token_file": str(tmp_path / "read-token")}
    config.write_text(yaml.safe_dump(data))
    assert check(config) == (
        2,
        [
            f"{config}: invalid",
            f"  web.read_token_file: {tmp_path}/read-token: no such file",
        ],
    )
    write_private(tmp_path / "read-token", "r3ad\n", 0o644)
    assert check(config)[1][1:] == [
        f"  web.read_token_file: {tmp_path}/read-token: holds a secret but is open to group "
        f"or others (mode 0644; chmod 600 {tmp_path}/read-token)",
    ]
    (tmp_path / "read-token").chmod(0o600)
    assert check(config) == (0, ["ok"])


def test_config_check_refuses_what_run_refuses_off_loopback(tmp_path: Path) -> None:
    """A listen address off loopback without a read token: `recorder run` refuses to start
    (daemon.read_access_refusal), so `config check` must not say ok."""
    config = tmp_path / "recorder.yml"
    for listen, web, expected in (
        ("0.0.0.0:9468", None, 2),
        ("10.0.0.5:9468", None, 2),
        ("recorder.internal:9468", None, 2),
        ("0.0.0.0:9468", {"read_token_file": str(tmp_path / "read-token")}, 0),
        ("[::1]:9468", None, 0),
        ("localhost:9468", None, 0),
    ):
        data: dict[str, Any] = {"listen": listen, "hosts": {"local": {"local": {}}}}
        if web:
            data["web"] = web
        config.write_text(yaml.safe_dump(data))
        code, lines = check(config, "--no-file-checks")
        assert code == expected, (listen, lines)
        if expected:
            assert lines[1].startswith(
                f"  listen: {listen} is not a loopback address and web.read_token_file is "
                "not set: recorder run refuses to start"
            ), lines
            assert "listen on 127.0.0.1" in lines[1]


def _notify_config(tmp_path: Path, key_mode: int) -> Path:
    key = tmp_path / "pd-key"
    key.write_text("R0UTINGKEY\n")
    key.chmod(key_mode)
    path = tmp_path / "recorder.yml"
    path.write_text(
        "hosts: {local: {local: {}}}\n"
        "notify:\n"
        f"  receivers: {{pager: {{pagerduty: {{routing_key_file: {key}}}}}}}\n"
        "  routes: [{events: [opened, resolved], receivers: [pager]}]\n"
    )
    return path


def test_notify_secret_files_must_be_private(tmp_path: Path) -> None:
    config = _notify_config(tmp_path, 0o644)
    result = CliRunner().invoke(main, ["config", "check", str(config)])
    assert result.exit_code == 2, result.output
    assert (
        f"  notify.receivers.pager.pagerduty.routing_key_file: {tmp_path}/pd-key is readable"
        " by others (mode 644), chmod 600 it" in result.output
    )
    (tmp_path / "pd-key").chmod(0o600)
    result = CliRunner().invoke(main, ["config", "check", str(config)])
    assert result.exit_code == 0, result.output


def test_notify_routes_choose_receivers_by_service_and_event() -> None:
    notify = load_config(CASES / "valid-notify.yml").notify
    assert notify.receivers_for("web", "opened") == ["hook", "chat", "mail"]
    assert notify.receivers_for("web", "overdue") == ["mail", "hook"]
    assert notify.receivers_for("web", "reopened") == []
    assert notify.receivers["chat"].rate_limit == 10
    assert notify.repeat_interval == 3600.0


def test_error_rate_takes_the_http_probes_slow_unless_set() -> None:
    """One bar for slow: the log's slow responses are those the check's http probe would
    call slow, unless error_rate says otherwise."""
    from probes import error_rate

    base = {"hosts": {"a": {"local": {}}}}

    def slow_of(probes: dict[str, object]) -> float:
        config = parse_config({**base, "checks": [{"hosts": ["a"], "probes": probes}]})
        rate = config.checks[0].probes["error_rate"]
        assert isinstance(rate, error_rate.Config)
        return rate.slow

    assert slow_of({"http": {"url": "http://a/", "slow": "1s"}, "error_rate": {}}) == 1.0
    assert slow_of({"http": {"url": "http://a/"}, "error_rate": {}}) == 2.0
    assert slow_of({"error_rate": {}}) == 2.0
    both = {"http": {"url": "http://a/", "slow": "1s"}, "error_rate": {"slow": "3s"}}
    assert slow_of(both) == 3.0
