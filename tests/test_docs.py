"""The docs stay honest: every CLI command, config field and fault kind is documented."""

from __future__ import annotations

from pathlib import Path

import click
from pydantic import BaseModel

from probes.base import Fault
from probes.registry import CONFIGS
from recorder.cli import main
from recorder.config import (
    AlertmanagerConfig,
    Check,
    Config,
    Defaults,
    DockerHostConfig,
    EmailReceiver,
    HostConfig,
    LocalHostConfig,
    MaintenanceWindow,
    NotifyConfig,
    PagerDutyReceiver,
    Receiver,
    Route,
    Service,
    SlackReceiver,
    SSHHostConfig,
    StoreConfig,
    WebConfig,
    WebhookReceiver,
)

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
CONFIGURATION = (ROOT / "CONFIGURATION.md").read_text()


def commands(group: click.Group, prefix: str = "recorder") -> list[str]:
    """Every command path, asked the way click asks (`lab` is loaded lazily, so it is not
    in `main.commands`)."""
    out = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None, name
        path = f"{prefix} {name}"
        if isinstance(cmd, click.Group):
            out += commands(cmd, path)
        else:
            out.append(path)
    return out


def test_every_command_is_in_the_readme() -> None:
    missing = []
    paths = commands(main)
    assert "recorder lab break" in paths and "recorder logscan" in paths, paths
    for path in paths:
        parts = path.split()
        if parts[1] == "lab":
            if parts[2] not in README.split("recorder lab", 1)[1][:200]:
                missing.append(path)
        elif path not in README:
            missing.append(path)
    assert not missing, f"commands missing from README.md: {missing}"


def fields(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def test_every_config_field_is_in_configuration_md() -> None:
    missing = []
    models: list[type[BaseModel]] = [
        Config,
        Defaults,
        Service,
        HostConfig,
        Check,
        AlertmanagerConfig,
        NotifyConfig,
        MaintenanceWindow,
        Receiver,
        Route,
        WebConfig,
        StoreConfig,
    ]
    for model in models:
        missing += [f for f in fields(model) if f"`{f}`" not in CONFIGURATION]
    for prefix, model in (
        ("local", LocalHostConfig),
        ("ssh", SSHHostConfig),
        ("docker", DockerHostConfig),
        ("webhook", WebhookReceiver),
        ("slack", SlackReceiver),
        ("pagerduty", PagerDutyReceiver),
        ("email", EmailReceiver),
    ):
        missing += [
            f"{prefix}.{f}" for f in fields(model) if f"`{prefix}.{f}`" not in CONFIGURATION
        ]
    for probe, model in CONFIGS.items():
        section = CONFIGURATION.split(f"### `{probe}`", 1)
        assert len(section) == 2, f"no section for probe {probe}"
        body = section[1].split("###", 1)[0]
        missing += [f"{probe}.{f}" for f in fields(model) if f"`{f}`" not in body]
    assert not missing, f"config fields missing from CONFIGURATION.md: {missing}"


def test_every_fault_kind_is_in_the_readme() -> None:
    missing = [str(f) for f in Fault if f"`{f}`" not in README]
    assert not missing


def test_readme_links_point_at_files_that_exist() -> None:
    import re

    linked = re.findall(r"\]\(([^)#:]+)\)", README)
    assert "docs/postmortem-standard.md" in linked
    assert "docker/prometheus/rules/recorder.yml" in linked
    assert "docker/grafana/dashboards/recorder.json" in linked
    missing = [link for link in linked if not (ROOT / link).exists()]
    assert not missing, missing


def test_lint_and_close_point_at_the_standard_they_enforce() -> None:
    from click.testing import CliRunner

    runner = CliRunner()
    for command in ("lint", "close"):
        shown = runner.invoke(main, [command, "--help"])
        assert shown.exit_code == 0, shown.output
        assert "recorder lint --standard" in " ".join(shown.output.split()), command
    printed = runner.invoke(main, ["lint", "--standard"])
    assert printed.exit_code == 0, printed.output
    assert printed.output == (ROOT / "docs" / "postmortem-standard.md").read_text()
    # Each of the standard's four parts is one that lint checks.
    for part in ("Issue summary", "Timeline", "Root cause and resolution", "Corrective"):
        assert part in printed.output
    nothing = runner.invoke(main, ["lint"])
    assert nothing.exit_code == 2 and "--standard" in nothing.output


def test_every_test_reliability_md_names_exists() -> None:
    # RELIABILITY.md backs its claims with named tests (#22); a renamed or deleted test
    # would leave a claim standing on nothing.
    import re

    text = (ROOT / "RELIABILITY.md").read_text()
    sources = "\n".join(p.read_text() for p in sorted((ROOT / "tests").glob("test_*.py")))
    defined = set(re.findall(r"^def (test_\w+)\(", sources, re.MULTILINE))
    named = set(re.findall(r"`(test_\w+)`", text))
    assert len(named) >= 20, named
    missing = sorted(named - defined)
    assert not missing, missing
    files = set(re.findall(r"tests/(test_\w+\.py)", text)) | set(
        re.findall(r"`(test_\w+\.py)`", text)
    )
    assert not [f for f in files if not (ROOT / "tests" / f).exists()]


def test_every_claim_in_reliability_md_names_its_test() -> None:
    # Each row of its tables and each security point names the test that backs it.
    import re

    text = (ROOT / "RELIABILITY.md").read_text()
    claims = [
        line
        for line in text.splitlines()
        if (line.startswith("| ") and not line.startswith(("| fault ", "| input ")))
        or line.startswith("- **")
    ]
    assert len(claims) >= 35, len(claims)
    unbacked = [c[:60] for c in claims if not re.search(r"`test_\w+", c)]
    assert not unbacked, unbacked
