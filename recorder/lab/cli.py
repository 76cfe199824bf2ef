"""`recorder lab ...`: the fault lab's commands, a thin layer over `recorder.lab.Lab`.

Exit codes as the rest of the CLI: 0 done, 1 refused or failed, 2 bad input (unknown
fault or host, a lab that is not up).
"""

from __future__ import annotations

import json
import shlex
import sys
import textwrap
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from recorder.lab.core import BACKENDS, Lab
from recorder.lab.faults import FAULTS
from recorder.lab.state import LabError, lab_command
from recorder.lab.traffic import run_traffic

F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"recorder lab: {message}", err=True)
    sys.exit(code)


def _json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def dir_option(f: F) -> F:
    return click.option(
        "--dir",
        "directory",
        envvar="RECORDER_LAB_DIR",
        default="lab",
        show_default=True,
        type=click.Path(file_okay=False),
        help="The lab's directory (or RECORDER_LAB_DIR).",
    )(f)


def _faults_help() -> str:
    lines = ["\b", "Faults (default host: what a user sees):"]
    for spec in FAULTS.values():
        options = " ".join(f"[--{p} {v:g}]" for p, v in spec.params.items() if p != "clients")
        lines.append(f"  {spec.name} {options}".rstrip())
        text = f"on {spec.default_host} by default: {spec.user_sees}"
        lines += textwrap.wrap(text, 78, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(lines)


@click.group("lab")
def lab() -> None:
    """The fault lab: a real Nginx stack (lb-01 in front of web-01 and web-02) on
    loopback that reproduces the classic outages, and knows the truth of what it broke."""


@lab.command("up")
@dir_option
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="local",
    show_default=True,
    help="local: nginx processes on 127.0.0.1; docker: docker/compose.yml (needs Docker).",
)
def up_cmd(directory: str, backend: str) -> None:
    """Start the stack, wait until lb-01 answers 200, and write DIR/recorder.yml, a
    recorder config that watches it."""
    try:
        status = Lab(directory, backend=backend).up()
    except LabError as exc:
        _fail(str(exc), exc.code)
    click.echo(f"lab up in {status['dir']} ({status['backend']})")
    for name, host in status["hosts"].items():
        where = host["url"] or host["container"]
        click.echo(f"  {name:7} {host['role']:3}  {where}")
    click.echo(f"recorder config: {status['config']}")
    # Hints a person copies: whole commands, paths quoted for the shell.
    if status["backend"] == "local":
        click.echo(f"watch it:        recorder run --config {shlex.quote(status['config'])}")
    click.echo(f"break it:        recorder lab break FAULT --dir {shlex.quote(status['dir'])}")


@lab.command("status")
@dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status_cmd(directory: str, as_json: bool) -> None:
    """The hosts, their URLs and pids, whether they run, and the active faults."""
    try:
        status = Lab(directory).status()
    except LabError as exc:
        _fail(str(exc), exc.code)
    if not status["hosts"]:
        # Nothing to report on is an error, as for break/fix/traffic on a missing lab.
        _fail(f"no lab in {status['dir']} (run `{lab_command('up', status['dir'])}` first)", 2)
    if as_json:
        _json(status)
        return
    click.echo(f"lab in {status['dir']} ({status['backend']}): {'up' if status['up'] else 'down'}")
    for name, host in status["hosts"].items():
        state = "running" if host.get("running") else "stopped"
        pid = f"pid {host['pid']}" if host.get("pid") else ""
        click.echo(
            f"  {name:7} {host['role']:3}  {host['url'] or host['container']}  {state} {pid}"
        )
    if status["faults"]:
        click.echo("active faults:")
        for truth in status["faults"]:
            click.echo(f"  {_describe(truth)}")
    else:
        click.echo("active faults: none")


def _describe(truth: dict[str, Any]) -> str:
    details = [f"{k} {truth[k]:g}" for k in ("rate", "delay", "rps", "seconds") if k in truth]
    extra = f" ({', '.join(details)})" if details else ""
    return f"{truth['fault']} on {truth['host']}{extra} since {truth['since']}"


@lab.command("break", epilog=_faults_help())
@click.argument("fault")
@dir_option
@click.option("--host", help="The host to break (default: the fault's own, below).")
@click.option("--rate", type=float, help="Share of clients hit, 0 to 1.")
@click.option("--delay", type=float, help="slow-backend: seconds added to each answer.")
@click.option("--seconds", type=float, help="traffic-spike: how long the burst lasts.")
@click.option("--rps", type=float, help="traffic-spike: requests per second of the burst.")
@click.option("--json", "as_json", is_flag=True, help="Print the fault's truth as JSON.")
def break_cmd(
    fault: str,
    directory: str,
    host: str | None,
    rate: float | None,
    delay: float | None,
    seconds: float | None,
    rps: float | None,
    as_json: bool,
) -> None:
    """Inject FAULT into the running lab."""
    try:
        truth = Lab(directory).break_(fault, host, rate, delay=delay, seconds=seconds, rps=rps)
    except LabError as exc:
        _fail(str(exc), exc.code)
    if as_json:
        _json(truth)
        return
    click.echo(f"broke: {_describe(truth)}")
    if "reload" in truth:
        click.echo(f"  {truth['reload']}")
    click.echo(f"  users see: {FAULTS[truth['fault']].user_sees}")


@lab.command("fix")
@click.argument("fault", required=False)
@dir_option
@click.option("--host", help="Only on this host.")
@click.option("--json", "as_json", is_flag=True, help="Print the fixed faults as JSON.")
def fix_cmd(fault: str | None, directory: str, host: str | None, as_json: bool) -> None:
    """Undo FAULT (or every active fault) and check the stack is healthy again."""
    lab_obj = Lab(directory)
    try:
        fixed = lab_obj.fix(fault, host)
        remaining = lab_obj.faults
    except LabError as exc:
        _fail(str(exc), exc.code)
    if as_json:
        _json(fixed)
        return
    if not fixed:
        where = f" on {host}" if host else ""
        click.echo(
            f"{fault} is not active{where}: nothing to fix"
            if fault
            else f"no fault is active{where}: nothing to fix"
        )
    for truth in fixed:
        click.echo(f"fixed: {truth['fault']} on {truth['host']}")
    if remaining:
        # The stack is not healthy while another fault stays broken: say which.
        click.echo("still active: " + ", ".join(_describe(t) for t in remaining))
    elif fixed:
        click.echo("healthy")


@lab.command("traffic")
@dir_option
@click.option("--clients", type=int, default=20, show_default=True, help="Distinct clients.")
@click.option("--rps", type=float, default=10.0, show_default=True, help="Requests/s, total.")
@click.option("--seconds", type=float, default=30.0, show_default=True, help="How long.")
@click.option("--json", "as_json", is_flag=True, help="Print the report (with per-client results).")
def traffic_cmd(directory: str, clients: int, rps: float, seconds: float, as_json: bool) -> None:
    """Send bounded traffic to lb-01 from CLIENTS loopback addresses (127.100.x.y) and
    report what each client got, so the true share of users hurt is known."""
    try:
        report = run_traffic(directory, clients, rps, seconds)
    except LabError as exc:
        _fail(str(exc), exc.code)
    if as_json:
        _json(report)
        return
    classes = ", ".join(f"{k} {v}" for k, v in report["status_classes"].items() if v)
    click.echo(
        f"{report['requests']} requests from {report['clients']} clients in "
        f"{report['duration_seconds']:g}s: {classes or 'none'}"
    )
    click.echo(
        f"{report['clients_with_5xx']} of {report['clients']} clients got a 5xx; "
        f"{report['clients_affected']} ({report['affected_ratio']:.1%}) got a 5xx or no answer"
    )


@lab.command("down")
@dir_option
def down_cmd(directory: str) -> None:
    """Stop everything the lab started (by pid) and check nothing is left running. The
    directory stays for inspection."""
    lab_obj = Lab(directory)
    if not lab_obj.status()["hosts"]:
        click.echo(f"no lab in {lab_obj.dir}: nothing to stop")
        return
    try:
        lab_obj.down()
    except LabError as exc:
        _fail(str(exc), exc.code)
    click.echo(f"lab down ({lab_obj.dir} kept)")
