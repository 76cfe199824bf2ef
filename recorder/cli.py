"""The `recorder` command: a thin layer over importable functions. Each command's
docstring is its help. Exit codes: 0 good, 1 something failing or refused, 2 bad input."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click

from recorder import __version__
from recorder.config import Config, ConfigError, load_config


def fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"recorder: {message}", err=True)
    sys.exit(code)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


class Context:
    """What the group passes to commands: the config path, loaded on first use."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            if not self.config_path:
                fail("no config: give --config FILE or set RECORDER_CONFIG")
            try:
                self._config = load_config(self.config_path)
            except ConfigError as exc:
                click.echo(f"recorder: invalid config {exc.path}:", err=True)
                for line in exc.errors:
                    click.echo(f"  {line}", err=True)
                sys.exit(2)
        return self._config


pass_ctx = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    envvar="RECORDER_CONFIG",
    metavar="FILE",
    help="The config file (or RECORDER_CONFIG).",
)
@click.version_option(__version__, prog_name="recorder")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """Watch Nginx servers and load balancers, open incidents by itself, and draft
    their postmortems."""
    ctx.obj = Context(config_path)


@main.group("config")
def config_group() -> None:
    """Validate configuration files."""


@config_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def config_check(file: str) -> None:
    """Validate FILE: print `ok`, or every error with its field path and exit 2."""
    try:
        load_config(file)
    except ConfigError as exc:
        click.echo(f"{exc.path}: invalid")
        for line in exc.errors:
            click.echo(f"  {line}")
        sys.exit(2)
    click.echo("ok")
