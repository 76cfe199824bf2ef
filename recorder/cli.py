"""The `recorder` command: a thin layer over importable functions. Each command's
docstring is its help. Exit codes: 0 good, 1 something failing or refused, 2 bad input."""

from __future__ import annotations

import importlib
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from recorder import __version__
from recorder.formats import POSTMORTEM_FORMATS
from recorder.model import (
    NOTE_KINDS,
    EntryKind,
    Incident,
    IncidentStatus,
    TimelineEntry,
    check_time,
    local_time,
    parse_iso,
    utcnow,
)
from recorder.store import Store, StoreError
from recorder.terminal import fold_lines, has_control, json_safe, printable

if TYPE_CHECKING:
    # Imported when a command first needs the config: pydantic and every probe module
    # are most of the start-up time of the commands that never read it (logscan, lint).
    from recorder.config import Config

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"recorder: {message}", err=True)
    sys.exit(code)


def echo_json(data: Any) -> None:
    click.echo(json_safe(json.dumps(data, indent=2, ensure_ascii=False, default=str)))


# Where the packaged systemd unit reads its config: a command given neither --config nor
# RECORDER_CONFIG reads it too, so an operator on the server types `recorder incidents
# list` and sees what the service sees.
DEFAULT_CONFIG = Path("/etc/recorder/recorder.yml")


def default_config() -> str | None:
    return str(DEFAULT_CONFIG) if DEFAULT_CONFIG.is_file() else None


class Context:
    """What the group passes to commands: the config path, loaded on first use."""

    def __init__(self, config_path: str | None = None) -> None:
        self.config_path = config_path
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            if not self.config_path:
                fail(
                    f"no config: give --config FILE, set RECORDER_CONFIG or create {DEFAULT_CONFIG}"
                )
            from recorder.config import ConfigError, load_config

            try:
                self._config = load_config(self.config_path)
            except ConfigError as exc:
                click.echo(f"recorder: invalid config {exc.path}:", err=True)
                for line in exc.errors:
                    click.echo(f"  {line}", err=True)
                sys.exit(2)
        return self._config


pass_ctx = click.make_pass_decorator(Context)

CONFIG_HELP = (
    "The config file (or RECORDER_CONFIG, else /etc/recorder/recorder.yml if it exists);"
    " before or after the command or its group."
)


def config_option(f: F) -> F:
    """`--config FILE` on a command that reads the config, so `recorder run --config FILE`
    works as well as `recorder --config FILE run`. Given after the command, it wins over
    the one before it, which wins over RECORDER_CONFIG (the group reads the variable)."""

    def remember(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value is not None:
            ctx.ensure_object(Context).config_path = value

    return click.option(
        "--config",
        metavar="FILE",
        expose_value=False,
        callback=remember,
        help=CONFIG_HELP,
    )(f)


class Commands(click.Group):
    """The top-level group. `lab` is imported only when it is the command run (or help is
    listed): its modules (templates, yaml, http.client) are a third of the start-up of
    every other command, and the daemon never needs them."""

    lazy = {"lab": "recorder.lab.cli"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            command = getattr(importlib.import_module(self.lazy[cmd_name]), cmd_name)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    envvar="RECORDER_CONFIG",
    metavar="FILE",
    help=CONFIG_HELP,
)
@click.version_option(__version__, prog_name="recorder")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """Watch Nginx servers and load balancers, open incidents by itself, and draft
    their postmortems."""
    ctx.obj = Context(config_path or default_config())


@main.group("config")
def config_group() -> None:
    """Validate configuration files."""


@config_group.command("check")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--no-file-checks",
    is_flag=True,
    help="Skip checking the files it names (SSH keys, known_hosts, token file): for a "
    "config meant for another machine.",
)
@config_option
@pass_ctx
def config_check(ctx: Context, file: str | None, no_file_checks: bool) -> None:
    """Validate FILE (default: --config or RECORDER_CONFIG) and the files it names on this
    machine (missing, unreadable, a secret open to group or others): print `ok`, or every
    error with its field path and exit 2."""
    from recorder.config import ConfigError, check_config

    file = file or ctx.config_path
    if not file:
        fail(f"no config: give FILE, --config FILE, set RECORDER_CONFIG or create {DEFAULT_CONFIG}")
    try:
        check_config(file, files=not no_file_checks)
    except ConfigError as exc:
        click.echo(f"{exc.path}: invalid")
        for line in exc.errors:
            click.echo(f"  {line}")
        sys.exit(2)
    click.echo("ok")


def parse_incident_id(value: str) -> int:
    """`3` or `INC-3`; anything else (including path tricks like `../x`) is refused."""
    text = value.strip()
    if text.upper().startswith("INC-"):
        text = text[4:]
    if not re.fullmatch(r"[0-9]{1,12}", text):  # ASCII digits only: "²".isdigit() is True
        fail(f"invalid incident id {value!r}: expected a number such as 3 or INC-3")
    return int(text)


def open_store(ctx: Context) -> Store:
    try:
        store = ctx.config.store
        return Store(ctx.config.state_path, url=store.url, password_file=store.password_file)
    except StoreError as exc:
        fail(str(exc), 1)


def get_incident(ctx: Context, value: str) -> Incident:
    incident_id = parse_incident_id(value)
    incident = open_store(ctx).get(incident_id)
    if incident is None:
        fail(f"no incident {value} in {ctx.config.state_path}")
    return incident


# ---- the daemon and one-off sweeps -----------------------------------------------------------


@main.command("run")
@click.option(
    "--log-level", default="INFO", show_default=True, help="DEBUG, INFO, WARNING or ERROR."
)
@config_option
@pass_ctx
def run_cmd(ctx: Context, log_level: str) -> None:
    """Run the daemon in the foreground (systemd runs this)."""
    from recorder.systemd import hold_reloads

    hold_reloads()  # before the slow imports: an early SIGHUP must not end the daemon
    from recorder.daemon import configure_logging, run_daemon

    _ = ctx.config  # validate before anything starts; exits 2 with the errors
    configure_logging(log_level)
    assert ctx.config_path is not None
    sys.exit(run_daemon(ctx.config_path))


@main.command("probe")
@click.option("--host", "only_host", metavar="H", help="Only this host.")
@click.option("--json", "as_json", is_flag=True, help="A JSON list of observations.")
@config_option
@pass_ctx
def probe_cmd(ctx: Context, only_host: str | None, as_json: bool) -> None:
    """One sweep of every configured probe. Exit 0 all ok, 1 some failing, 2 bad config."""
    from recorder.scheduler import sweep

    config = ctx.config
    if only_host and only_host not in config.hosts:
        fail(f"unknown host {only_host!r} (configured: {', '.join(config.hosts)})")
    observations = sweep(config, only_host=only_host)
    if as_json:
        echo_json([o.to_json() for o in observations])
    else:
        # What a probe read (nginx -t output, file names) may hold escapes and newlines.
        rows = [
            tuple(
                printable(str(cell))
                for cell in (
                    o.host,
                    o.probe,
                    str(o.status) if o.status != "fail" else f"FAIL {o.fault}",
                    o.summary,
                )
            )
            for o in observations
        ]
        click.echo(format_table(("HOST", "PROBE", "STATUS", "SUMMARY"), rows))
    sys.exit(0 if all(o.status == "ok" for o in observations) else 1)


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [str(c).ljust(w) for c, w in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, str(row[-1])]))
    return "\n".join(lines)


@main.command("logscan")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--since",
    metavar="TIME",
    help="Only requests at or after TIME (ISO 8601 or 'YYYY-MM-DD HH:MM').",
)
@click.option("--until", metavar="TIME", help="Only requests before TIME.")
@click.option(
    "--format",
    "log_format",
    metavar="LOG_FORMAT",
    help="An nginx log_format string (default: combined).",
)
@click.option(
    "--escape",
    "log_escape",
    type=click.Choice(["default", "json", "none"]),
    default="default",
    show_default=True,
    help="The log_format's escape= (default and json read \\\" inside quoted values).",
)
@click.option(
    "--timezone",
    "tz_name",
    metavar="ZONE",
    help="IANA zone of TIMEs without one, and of the times shown (default: this machine's).",
)
@click.option("--json", "as_json", is_flag=True)
def logscan_cmd(
    files: tuple[str, ...],
    since: str | None,
    until: str | None,
    log_format: str | None,
    log_escape: str,
    tz_name: str | None,
    as_json: bool,
) -> None:
    """Summarize access logs (plain or .gz): requests, 5xx share, clients, affected share."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from recorder.logscan import format_text, parse_time, problems, scan
    from recorder.zones import machine_zone

    tz_name = tz_name or machine_zone()
    try:
        zone = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        fail(f"unknown time zone {tz_name!r}")
    try:
        start = check_time(parse_time(since, zone), "--since") if since else None
        end = check_time(parse_time(until, zone), "--until") if until else None
    except ValueError as exc:
        fail(str(exc))
    try:
        summary = scan(list(files), start, end, log_format=log_format, log_escape=log_escape)
    except FileNotFoundError as exc:
        fail(f"no such file: {exc.filename}")
    except (OSError, ValueError) as exc:
        fail(str(exc))
    if as_json:
        echo_json(summary)
    else:
        click.echo(format_text(summary, zone))
    warnings, error = problems(summary)
    for warning in warnings:
        click.echo(f"recorder: warning: {warning}", err=True)
    if error:
        fail(error, 1)


# ---- incidents ----------------------------------------------------------------------


@main.group("incidents")
@config_option
def incidents_group() -> None:
    """Read incidents."""


@incidents_group.command("list")
@click.option(
    "--status", type=click.Choice(["open", "resolved", "closed"]), help="Only this status."
)
@click.option("--json", "as_json", is_flag=True)
@config_option
@pass_ctx
def incidents_list(ctx: Context, status: str | None, as_json: bool) -> None:
    """List incidents, oldest first."""
    incidents = open_store(ctx).list(status=status)
    if as_json:
        echo_json([i.to_json() for i in incidents])
        return
    if not incidents:
        click.echo("no incidents")
        return
    zone = ctx.config.zone
    rows = [
        (
            i.ref,
            i.status_label,
            local_time(i.started_at, zone),
            f"{i.affected.ratio:.0%}" if i.affected.ratio is not None else "-",
            printable(i.title),
        )
        for i in incidents
    ]
    click.echo(format_table(("ID", "STATUS", "STARTED", "AFFECTED", "TITLE"), rows))


@incidents_group.command("show")
@click.argument("incident_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True)
@config_option
@pass_ctx
def incidents_show(ctx: Context, incident_id: str, as_json: bool) -> None:
    """Show one incident with its timeline."""
    incident = get_incident(ctx, incident_id)
    if as_json:
        echo_json(incident.to_json())
        return
    from recorder.show import incident_lines

    out = incident_lines(incident, ctx.config)
    click.echo("\n".join(out))


@main.command("note")
@click.argument("incident_id", metavar="ID")
@click.argument("text")
@click.option("--kind", type=click.Choice(NOTE_KINDS), default="note", show_default=True)
@click.option(
    "--at",
    "at_text",
    metavar="TIME",
    help="When it happened (ISO 8601 or 'YYYY-MM-DD HH:MM' in the configured zone); default now.",
)
@config_option
@pass_ctx
def note_cmd(ctx: Context, incident_id: str, text: str, kind: str, at_text: str | None) -> None:
    """Add an entry to an incident's timeline."""
    from recorder.logscan import parse_time

    incident = get_incident(ctx, incident_id)
    if incident.status == "closed":
        # The final postmortem is written and never rewritten: a note now would reach
        # nothing but the store, so say so rather than accept it.
        where = incident.postmortem.get("path") or "its file"
        fail(
            f"{incident.ref} is closed; a note would not reach its final postmortem. "
            f"Add it to {where} by hand.",
            1,
        )
    # One entry, one line: a newline would print as a second entry (a forged
    # `[resolution]`), so newlines fold to spaces and other control characters are refused.
    text = fold_lines(text)
    if not text:
        fail("the note is empty")
    if has_control(text):
        fail(f"the note holds control characters ({printable(text)[:80]}); write plain text")
    try:
        at = check_time(parse_time(at_text, ctx.config.zone), "--at") if at_text else utcnow()
    except ValueError as exc:
        fail(str(exc))
    open_store(ctx).add_entries(
        incident.id, [TimelineEntry(at=at, kind=EntryKind(kind), text=text.strip(), source="cli")]
    )
    click.echo(f"{incident.ref}: {kind} at {local_time(at, ctx.config.zone)} added")


@main.group("event")
@config_option
def event_group() -> None:
    """Record events (a CI/CD pipeline calls these)."""


@event_group.command("deploy")
@click.option("--service", required=True, help="The service deployed.")
@click.option("--version", "version", required=True, help="The version deployed.")
@config_option
@pass_ctx
def event_deploy(ctx: Context, service: str, version: str) -> None:
    """Record a deploy; it appears in timelines and in root-cause ranking."""
    from recorder.events import record_deploy

    if service not in ctx.config.services and service not in ctx.config.hosts:
        known = ", ".join(ctx.config.services) or "none configured"
        fail(f"unknown service {service!r} (services: {known})")
    try:
        record_deploy(
            ctx.config.state_path,
            service,
            version,
            source="cli",
            url=ctx.config.store.url,
            password_file=ctx.config.store.password_file,
        )
    except StoreError as exc:
        fail(str(exc), 1)
    except ValueError as exc:
        fail(str(exc))
    click.echo(f"deploy of {service} {version} recorded")


# ---- postmortems --------------------------------------------------------------------


@main.command("draft")
@click.argument("incident_id", metavar="ID")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Write to FILE instead of stdout."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(POSTMORTEM_FORMATS)),
    default="md",
    show_default=True,
)
@config_option
@pass_ctx
def draft_cmd(ctx: Context, incident_id: str, output: str | None, fmt: str) -> None:
    """Render the postmortem draft of an incident (a closed one: its final postmortem)."""
    from recorder.postmortem.draft import DraftError, render_draft

    incident = get_incident(ctx, incident_id)
    closed = incident.status == IncidentStatus.CLOSED
    final = str(incident.postmortem.get("path") or "")
    text = None
    if closed and fmt == "md" and final:
        # What `close` wrote is the document (it may have been edited): shown as it is.
        try:
            text = Path(final).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            text = None
    try:
        if text is None:
            overrides = incident.postmortem if closed else None
            text = render_draft(incident, ctx.config, fmt=fmt, overrides=overrides, final=closed)
    except DraftError as exc:
        fail(str(exc), 1)
    what = "final postmortem" if closed else "draft"
    if closed:
        click.echo(f"{incident.ref} is closed: this is its final postmortem", err=True)
    if output:
        write_private(output, text)
        click.echo(f"{incident.ref}: {what} written to {output}", err=True)
    else:
        click.echo(text, nl=False)


def write_private(path: str, text: str) -> None:
    from recorder.postmortem.close import atomic_write

    try:
        atomic_write(Path(path), text)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}", 1)


@main.command("close")
@click.argument("incident_id", metavar="ID")
@click.option("--root-cause", help="The confirmed root cause, explained.")
@click.option("--resolution", help="How it was fixed, explained.")
@click.option("--misleading", multiple=True, help="A misleading path taken (repeatable).")
@click.option("--escalated-to", help="Who the incident was escalated to, and when.")
@click.option("--task", "tasks", multiple=True, help="A corrective task (repeatable).")
@click.option("--affected", help="Override the affected share, e.g. '30% of clients'.")
@click.option(
    "--edit", is_flag=True, help="Open the draft in $EDITOR and close with what you save."
)
@click.option("--force", is_flag=True, help="Close an incident that is still open.")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Where to write the final postmortem."
)
@config_option
@pass_ctx
def close_cmd(
    ctx: Context,
    incident_id: str,
    root_cause: str | None,
    resolution: str | None,
    misleading: tuple[str, ...],
    escalated_to: str | None,
    tasks: tuple[str, ...],
    affected: str | None,
    edit: bool,
    force: bool,
    output: str | None,
) -> None:
    """Finalize the postmortem. Refuses, listing every gap and the flag that fills it,
    until it meets the postmortem standard (`recorder lint --standard` prints it)."""
    from recorder.postmortem.close import (
        CloseError,
        close_incident,
        edit_in_editor,
        merge_postmortem,
    )
    from recorder.postmortem.draft import render_draft

    incident = get_incident(ctx, incident_id)
    edited: str | None = None
    try:
        if edit:
            given = merge_postmortem(
                incident.postmortem,
                root_cause=root_cause,
                resolution=resolution,
                misleading=misleading,
                escalated_to=escalated_to,
                tasks=tasks,
                affected=affected,
            )
            edited = edit_in_editor(render_draft(incident, ctx.config, overrides=given))
        result = close_incident(
            open_store(ctx),
            ctx.config,
            incident.id,
            root_cause=root_cause,
            resolution=resolution,
            misleading=list(misleading),
            escalated_to=escalated_to,
            tasks=list(tasks),
            affected=affected,
            edited_text=edited,
            force=force,
            output=Path(output) if output else None,
        )
    except CloseError as exc:
        fail(str(exc), exc.exit_code)
    if not result.ok:
        click.echo(f"{incident.ref}: not closed; the postmortem still lacks:", err=True)
        for gap, fill in zip(result.gaps, result.fills, strict=True):
            click.echo(f"  {gap}  (fill with {fill})", err=True)
        kept = [
            name
            for name, value in (
                ("--root-cause", root_cause),
                ("--resolution", resolution),
                ("--misleading", misleading),
                ("--escalated-to", escalated_to),
                ("--task", tasks),
                ("--affected", affected),
            )
            if value
        ]
        if kept and not edit:
            click.echo(
                f"kept for the next attempt: {', '.join(kept)} (give only what is missing)",
                err=True,
            )
        sys.exit(1)
    if result.unchanged:
        click.echo(f"{incident.ref}: already closed; its postmortem {result.path} is unchanged")
    else:
        click.echo(f"{incident.ref}: closed; postmortem written to {result.path}")


@main.group("notify")
@config_option
def notify_group() -> None:
    """Notifications: try a receiver, list deliveries waiting."""


@notify_group.command("test")
@click.argument("receiver")
@config_option
@pass_ctx
def notify_test(ctx: Context, receiver: str) -> None:
    """Send a test message to RECEIVER now (not through the outbox); exit 1 if refused."""
    from recorder.notify import send_test
    from recorder.receivers import DeliveryError

    config = ctx.config
    if receiver not in config.notify.receivers:
        known = ", ".join(sorted(config.notify.receivers)) or "none configured"
        fail(f"no receiver {receiver!r} in the config (known: {known})")
    kind = config.notify.receivers[receiver].kind
    try:
        sent = send_test(config, receiver)
    except DeliveryError as exc:
        fail(f"{receiver} ({kind}) refused the test message: {exc}", 1)
    click.echo(f"sent a test message to {receiver} ({kind}), delivery id {sent}")


@notify_group.command("status")
@click.option("--json", "as_json", is_flag=True)
@config_option
@pass_ctx
def notify_status(ctx: Context, as_json: bool) -> None:
    """List deliveries pending (with their next try) and failed (given up), oldest first."""
    from recorder.notify import status

    rows = status(open_store(ctx))
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("nothing pending or failed")
        return
    zone = ctx.config.zone
    table = [
        (
            f"INC-{r['incident_id']}",
            r["event"],
            r["receiver"],
            r["state"],
            str(r["attempts"]),
            local_time(parse_iso(r["next_attempt_at"]) or utcnow(), zone)
            if r["state"] == "pending"
            else "-",
            printable((r["last_error"] or "")[:80]),
            r["delivery_id"],
        )
        for r in rows
    ]
    header = ("INCIDENT", "EVENT", "RECEIVER", "STATE", "TRIES", "NEXT TRY", "LAST ERROR", "ID")
    click.echo(format_table(header, table))


@main.group("maintenance")
@config_option
def maintenance_group() -> None:
    """Planned work: harm inside a window is recorded as planned and notifies nobody."""


@maintenance_group.command("start")
@click.option("--service", required=True, help="The service under maintenance.")
@click.option("--host", help="Only this host of it (default: all of its hosts).")
@click.option("--for", "for_", required=True, metavar="D", help="How long: 30m, 2h.")
@click.option("--reason", required=True, help="What the work is (shown in incidents).")
@config_option
@pass_ctx
def maintenance_start(ctx: Context, service: str, host: str | None, for_: str, reason: str) -> None:
    """Start a maintenance window now."""
    from recorder.maintenance import start

    config = ctx.config
    try:
        window = start(config, open_store(ctx), service, host, for_, reason, "cli", utcnow())
    except ValueError as exc:
        fail(f"--{exc}")
    where = f"{service} on {host}" if host else f"{service} (every host)"
    click.echo(
        f"maintenance window {window.id}: {where} until "
        f"{local_time(window.ends_at, config.zone)}: {printable(reason)}"
    )


@maintenance_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@config_option
@pass_ctx
def maintenance_list(ctx: Context, as_json: bool) -> None:
    """One-off windows on now or later, and the config's recurring windows."""
    from recorder.maintenance import listing

    config = ctx.config
    now = utcnow()
    windows = listing(config, open_store(ctx), now)
    if as_json:
        echo_json([w.to_json() for w in windows])
        return
    if not windows:
        click.echo("no maintenance windows")
        return
    zone = config.zone
    rows = [
        (
            str(w.id) if w.id else "config",
            w.service,
            w.host or "*",
            local_time(w.starts_at, zone),
            local_time(w.ends_at, zone),
            "on" if w.starts_at <= now < w.ends_at else "later",
            printable(w.reason),
        )
        for w in windows
    ]
    click.echo(format_table(("ID", "SERVICE", "HOST", "FROM", "UNTIL", "NOW", "REASON"), rows))


@maintenance_group.command("end")
@click.argument("window_id", metavar="ID", type=int)
@config_option
@pass_ctx
def maintenance_end(ctx: Context, window_id: int) -> None:
    """End a one-off maintenance window now."""
    if not open_store(ctx).end_window(window_id, utcnow()):
        fail(f"no maintenance window {window_id} is on or ahead", 1)
    click.echo(f"maintenance window {window_id} ended")


@main.command("lint")
# A file that is not there is bad input (2, like a directory), not a postmortem with gaps.
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
@click.option("--standard", is_flag=True, help="Print the postmortem standard and exit.")
def lint_cmd(files: tuple[str, ...], as_json: bool, standard: bool) -> None:
    """Check postmortems against the postmortem standard; exit 1 with the list of gaps.

    The standard is docs/postmortem-standard.md in the repository; `recorder lint
    --standard` prints the copy installed with the package."""
    from recorder.postmortem.lint import lint_file

    if standard:
        from recorder.resources import standard_path

        click.echo(standard_path().read_text(encoding="utf-8"), nl=False)
        return
    if not files:
        fail("give at least one FILE to check (or --standard to read the standard)")

    report: dict[str, list[Any]] = {}
    for name in files:
        report[name] = lint_file(name)
    if as_json:
        echo_json({name: [g.to_json() for g in gaps] for name, gaps in report.items()})
    else:
        for name, gaps in report.items():
            if gaps:
                for gap in gaps:
                    click.echo(str(gap))
            else:
                click.echo(f"{name}: ok")
    sys.exit(1 if any(report.values()) else 0)
