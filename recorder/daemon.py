"""`recorder run`: the daemon.

Threads: the scheduler (starts probe runs), a pool of probe workers, the HTTP server, and
one engine thread that owns the detector and the incident book. Everything that changes
incidents (observations, Alertmanager alerts, reloads) reaches the engine through one
queue, so the book needs no locks and changes are applied in arrival order.
"""

from __future__ import annotations

import gc
import logging
import os
import queue
import resource
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

from prometheus_client import CollectorRegistry, disable_created_metrics

from probes.base import Observation
from recorder import __version__
from recorder.alertmanager import Alert
from recorder.api import ApiServer, make_app, serve
from recorder.config import ConfigError, is_loopback_host, load_config, split_listen
from recorder.detector import Detector
from recorder.history import History
from recorder.incidents import IncidentBook, apply_alert_batches
from recorder.metrics import Metrics
from recorder.model import Incident, Severity, utcnow
from recorder.notify import NotifyMetrics, Sender
from recorder.postmortem.close import write_draft
from recorder.scheduler import Job, Scheduler, build_hosts, build_jobs, carry_states
from recorder.statelock import StateDirBusy, StateLock
from recorder.store import Store, StoreError
from recorder.systemd import Notifier, held_reloads

log = logging.getLogger("recorder.daemon")

ALERT_WAIT = 10.0  # seconds a webhook request waits for the engine before a 503
# Once the engine has begun applying a batch, the request waits for the end (up to this)
# so that its answer is the truth: a 503 for alerts that were applied made Alertmanager
# send them again.
ALERT_APPLY_WAIT = 120.0
# Alerts committed in one transaction at most (group commit): Alertmanager sends up to
# 1,000 per notification; a bigger group would hold the engine from observations longer.
GROUP_ALERTS = 2000
ENGINE_BEHIND = 30.0  # /healthz fails when the engine's oldest queued input is older


@dataclass
class _Obs:
    obs: Observation
    job: Job
    queued: float = field(default_factory=time.monotonic)


@dataclass
class _Alerts:
    alerts: list[Alert]
    reply: Future[list[int | None]]
    queued: float = field(default_factory=time.monotonic)


class Daemon:
    def __init__(self, config_path: str, registry: CollectorRegistry | None = None) -> None:
        self.config_path = config_path
        self.config = load_config(config_path)
        # Lazy: a state dir that cannot be written at start (read-only, full) must not
        # stop the recorder from watching; incidents wait in memory until it can.
        self.store = Store(
            self.config.state_path,
            lazy=True,
            url=self.config.store.url,
            password_file=self.config.store.password_file,
        )
        # No `<counter>_created` series: one more per counter series (a third of the body at
        # 1,000 targets), which Prometheus stores as plain gauges nobody queries. The names
        # of DESIGN.md are the counters themselves. Process-wide, so before any counter.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.metrics_registry = registry if registry is not None else CollectorRegistry()
        self.metrics = Metrics(registry=self.metrics_registry, store=self.store)
        self.history = History(self.config.state_path, self.config.web.history_days)
        self.notifier = Notifier()
        # Notifications go out from the outbox on their own threads, never the engine's;
        # a new sender each time this recorder becomes the leader, the same counters.
        self.notify_metrics = NotifyMetrics(self.metrics_registry, self.store)
        self.sender = self._new_sender()
        self.detector = Detector()
        self.book = self._new_book()
        # Leadership (#21): with a shared store (store.url) one recorder at a time holds
        # the lease and writes incidents; without one this recorder is always the leader.
        self.shared = self.config.store.url is not None
        self.leader = not self.shared
        self.holder = self.config.store.holder or f"{socket.gethostname()}/{self.config.listen}"
        self._lease_until = 0.0  # monotonic: past it, the lease is not ours until renewed
        self._lease_renewed = 0.0
        self.leader_gauge = self.metrics.leader
        self.leader_gauge.set(1 if self.leader else 0)
        self.queue: queue.Queue[_Obs | _Alerts | str] = queue.Queue()
        self.scheduler: Scheduler | None = None
        self.api: ApiServer | None = None
        self._stop = threading.Event()
        self._store_ok: tuple[bool, str] = (True, "ok")
        self._restored = False  # open incidents taken over from a store opened for writing
        self._drafts_dirty: set[int] = set()
        self._token_problems: dict[str, str | None] = {}  # why a token file cannot be read
        self._token_lock = threading.Lock()  # token() runs on the HTTP threads
        # Why drafts cannot be written (a full or read-only disk): logged once per change.
        self._draft_problem: str | None = None

    def _new_sender(self) -> Sender:
        return Sender(
            self.config,
            self.store,
            self.notify_metrics,
            active=self._lease_current,
        )

    def _lease_current(self) -> bool:
        """The lease is ours now (read-only: safe from the sender's threads)."""
        return not self.shared or (self.leader and time.monotonic() < self._lease_until)

    def _new_book(self) -> IncidentBook:
        book = IncidentBook(self.config, self.store, request_diagnostics=self._diagnose)
        book.on_opened = self._on_opened
        return book

    # ---- leadership ---------------------------------------------------------------------

    def _renew_lease(self) -> None:
        """Take or renew the lease; become leader or standby accordingly. The local
        deadline is counted from before the request, on the monotonic clock (which runs on
        while the process is stopped), so it never outlasts the row in the store."""
        if not self.shared:
            return
        seconds = self.config.store.lease
        began = time.monotonic()
        try:
            ok = self.store.take_lease(self.holder, seconds, utcnow())
        except StoreError as exc:
            log.warning("cannot renew the leadership lease: %s", exc)
            ok = False
        self._lease_renewed = began
        if ok:
            self._lease_until = began + seconds
            if not self.leader:
                self._become_leader()
        elif self.leader and time.monotonic() >= self._lease_until:
            self._step_down()

    def _holds_lease(self) -> bool:
        """Checked before anything that writes incidents: a leader stopped (SIGSTOP, a VM
        pause) past its lease finds out here, before writing, and steps down."""
        if not self.shared:
            return True
        if self.leader and time.monotonic() >= self._lease_until:
            self._renew_lease()
        return self.leader and time.monotonic() < self._lease_until

    def _become_leader(self) -> None:
        log.warning("leader now (%s): continuing the open incidents in the store", self.holder)
        self.leader = True
        self.leader_gauge.set(1)
        # Start from what the store says: what the detector saw while standby was never
        # recorded, so it starts over, seeded with the open incidents' firing signals.
        self.detector = Detector()
        self.book = self._new_book()
        self._continue_open_incidents()
        self.sender = self._new_sender()
        self.sender.start()

    def _step_down(self) -> None:
        log.warning(
            "standby now (%s): the leadership lease ran out or another recorder holds it",
            self.holder,
        )
        self.leader = False
        self.leader_gauge.set(0)
        self.sender.stop()
        # Nothing more of ours is written: the new leader continues from the store.
        self.book = self._new_book()
        self.detector = Detector()
        self._restored = False

    # ---- EngineAPI (used by the HTTP server's threads) ------------------------------------

    def health(self) -> tuple[bool, str]:
        if self.scheduler is None or not self.scheduler.alive:
            return False, "scheduler not running"
        behind = self.engine_behind()
        if behind > ENGINE_BEHIND:
            return False, f"engine behind: its oldest queued input waited {behind:.0f}s"
        if self.book.store_error:
            return False, self.book.store_error
        ok, reason = self._store_ok
        if ok and self.shared:
            return True, "ok leader" if self.leader else "ok standby"
        return ok, reason

    def token(self) -> str | None:
        return self._secret(self.config.alertmanager.token_file, "alertmanager.token_file")

    def _secret(self, path: str | None, name: str) -> str | None:
        """A token file's text, or None. Read on every request (a rotated token applies
        at once), so a problem is logged once per change of condition, not per request;
        the webhook's refusals are counted in recorder_webhook_refusals_total."""
        if not path:
            return None
        try:
            secret = Path(path).expanduser().read_text(encoding="utf-8").strip()
            problem = None
        except (OSError, UnicodeDecodeError) as exc:
            secret = ""
            why = getattr(exc, "strerror", None) or str(exc)
            problem = f"cannot read {name.replace('.', ' ')} {path}: {why}"
        self._secret_problem(name, problem, f"{name.replace('.', ' ')} {path} readable again")
        return secret or None

    def _secret_problem(self, name: str, problem: str | None, fixed: str = "") -> None:
        """Log a token's problem once per change of condition (None: no problem now)."""
        with self._token_lock:
            before = self._token_problems.get(name)
            if problem != before:
                if problem:
                    log.error("%s; requests that need it are refused until it can be read", problem)
                elif fixed:
                    log.warning("%s", fixed)
                self._token_problems[name] = problem

    def write_token(self) -> str | None:
        """The token for writes over HTTP (api.write_token_file); None disables them. The
        webhook's token never works here, even when someone writes the same text into both
        files: whoever can post alerts must not be able to silence paging."""
        token = self._secret(self.config.api.write_token_file, "api.write_token_file")
        same = token is not None and token == self.token()
        self._secret_problem(
            "api.write_token_file is the webhook's",
            "api.write_token_file holds the webhook's token; writes over HTTP" if same else None,
        )
        return None if same else token

    def read_token(self) -> str | None:
        path = self.config.web.read_token_file
        if not path:
            return None
        # Set but unreadable or empty: refuse every read rather than open the pages.
        return self._secret(path, "web.read_token_file") or _UNUSABLE

    def engine_behind(self) -> float:
        """Seconds the oldest input still queued for the engine has waited (0 when none):
        a busy engine is a stale engine, whatever else is healthy."""
        with self.queue.mutex:
            oldest = min(
                (i.queued for i in self.queue.queue if not isinstance(i, str)), default=None
            )
        return time.monotonic() - oldest if oldest is not None else 0.0

    def _check_token_file(self) -> None:
        """Warn (at start and on each reload) when the token file can be read by others:
        whoever reads it can open and resolve incidents through the webhook."""
        path = self.config.alertmanager.token_file
        if not path:
            return
        try:
            mode = Path(path).expanduser().stat().st_mode
        except OSError:
            return  # said by token() when a request needs it
        if mode & 0o077:
            log.warning(
                "alertmanager token_file %s is readable or writable by group or others "
                "(mode %s): anyone who reads it can record alerts; chmod 600 it",
                path,
                oct(mode & 0o777),
            )

    def submit_alerts(self, alerts: list[Alert]) -> list[int | None]:
        """Hand alerts to the engine and wait for what it did. Raises TimeoutError only
        when they were not applied: a batch the engine had not begun is withdrawn; one it
        had begun is waited for, so the answer says what happened."""
        reply: Future[list[int | None]] = Future()
        self.queue.put(_Alerts(alerts, reply))
        try:
            return reply.result(timeout=ALERT_WAIT)
        except TimeoutError:
            if reply.cancel():
                raise  # withdrawn before the engine took it: nothing was applied
        return reply.result(timeout=ALERT_APPLY_WAIT)

    # ---- lifecycle --------------------------------------------------------------------------

    def run(self) -> int:
        refusal = read_access_refusal(self.config.listen, self.config.web.read_token_file)
        if refusal:
            log.error("%s", refusal)
            return 2
        try:
            lock = StateLock.acquire(self.config.state_path)  # one daemon per state dir
        except StateDirBusy as exc:
            log.error("%s", exc)
            return 1
        with lock:
            return self._run()

    def _run(self) -> int:
        self._install_signals()
        self._check_token_file()
        if not self.store.ready:
            try:
                self.store.open()
            except StoreError as exc:
                log.error("%s; probing anyway, incidents kept in memory until it opens", exc)
                self._store_ok = (False, str(exc))
        self._renew_lease()
        if self.leader:
            self._continue_open_incidents()
        try:
            self.api = serve(
                self.config.listen, make_app(self), max_body=self.config.alertmanager.max_body
            )
        except OSError as exc:
            log.error("cannot listen on %s: %s", self.config.listen, exc.strerror or exc)
            self.store.close()
            return 1
        self._start_scheduler()
        if self.leader:
            self.sender.start()
        log.info(
            "recorder %s watching %d hosts (%d probes); listening on %s; state in %s",
            __version__,
            len(self.config.hosts),
            len(self.scheduler.jobs) if self.scheduler else 0,
            self.config.listen,
            self.config.state_path,
        )
        # Where to look, as a link to click: web.base_url when set (behind a proxy), else
        # the listen address.
        log.info("web pages at %s", self.config.base_url)
        settle_heap()
        self.notifier.ready(self._status_line())
        try:
            self._engine_loop()
        finally:
            self.notifier.stopping()
            log.info("stopping")
            self.sender.stop()
            if self.scheduler:
                self.scheduler.stop()
            if self.api:
                self.api.close()
            if self._holds_lease():
                self.book.flush()
            self.history.flush()
            self.history.close()
            if self.shared and self.leader:
                try:  # a clean stop hands over at once, not after the lease
                    self.store.release_lease(self.holder, utcnow())
                except StoreError as exc:
                    log.warning("cannot release the leadership lease: %s", exc)
            self.store.close()
        return 0

    def _continue_open_incidents(self) -> None:
        """Take over the incidents the store holds open (after a restart, or once a store
        that could not be opened at start opens)."""
        try:
            firing = self.book.restore()
        except StoreError:
            # The reason is logged by the caller; the next tick tries again.
            log.info("open incidents in the store, if any, are continued once it opens")
            self._restored = False
            return
        self._restored = self.store.ready
        for host, probe, since, fault in firing:
            self.detector.assume_firing(host, probe, since, fault)

    def stop(self) -> None:
        self._stop.set()
        self.queue.put("wake")

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # tests run the daemon in a thread; they call stop() and reload()

        def on_term(signum: int, frame: FrameType | None) -> None:
            self.stop()

        def on_hup(signum: int, frame: FrameType | None) -> None:
            self.queue.put("reload")

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        signal.signal(signal.SIGHUP, on_hup)
        for _ in held_reloads():  # a SIGHUP during start-up: reload once running
            self.queue.put("reload")

    def reload(self) -> None:
        self.queue.put("reload")

    def _start_scheduler(self) -> None:
        jobs = build_jobs(self.config, build_hosts(self.config))
        if self.scheduler is not None:
            # A reload: unchanged jobs keep what they learned (error_rate's log positions
            # and windows) rather than starting over from the saved state.
            carry_states(self.scheduler.jobs, jobs)
        self.scheduler = Scheduler(
            jobs, self._deliver, concurrency=self.config.defaults.concurrency
        )
        self.scheduler.start()

    def _deliver(self, obs: Observation, job: Job) -> None:
        self.queue.put(_Obs(obs, job))

    def _diagnose(self, hosts: list[str]) -> None:
        if self.scheduler:
            self.scheduler.run_now(hosts)

    def _on_opened(self, incident: Incident) -> None:
        log.warning(
            "incident %s opened: %s; %s began %s, detected %.1fs later",
            incident.ref,
            incident.title,
            "risk" if incident.opened_on_risk else "harm",
            incident.started_at.isoformat(timespec="seconds"),
            (incident.detected_at - incident.started_at).total_seconds(),
        )

    # ---- the engine thread ----------------------------------------------------------------------

    def _engine_loop(self) -> None:
        watchdog = self.notifier.watchdog_interval()
        ping_every = watchdog / 2 if watchdog else None
        last_tick = last_ping = time.monotonic()
        while not self._stop.is_set():
            try:
                item = self.queue.get(timeout=0.5)
            except queue.Empty:
                item = None
            while item is not None:
                try:
                    item = self._handle(item)
                except Exception:  # the engine must outlive any one bad input
                    log.exception("engine error while handling %s", type(item).__name__)
                    item = None
            now = time.monotonic()
            if self.shared and now - self._lease_renewed >= self.config.store.lease / 3:
                self._renew_lease()
            if now - last_tick >= 1.0:
                last_tick = now
                self._tick()
            if ping_every and now - last_ping >= ping_every and self.health()[0]:
                last_ping = now
                self.notifier.watchdog()

    def _handle(self, item: _Obs | _Alerts | str | None) -> _Obs | _Alerts | str | None:
        """Handle one input; returns the next one when it was taken from the queue already
        (the input after a group of alert batches), to be handled in its turn."""
        if isinstance(item, _Obs):
            self._on_observation(item.obs, item.job)
        elif isinstance(item, _Alerts):
            group, after = self._alert_group(item)
            self._on_alerts(group)
            return after
        elif item == "reload":
            self._reload()
        return None

    def _alert_group(self, first: _Alerts) -> tuple[list[_Alerts], _Obs | _Alerts | str | None]:
        """The alert batches queued one after another from `first` on (up to GROUP_ALERTS
        alerts), committed together; and the input after them, if one was taken."""
        group, count = [first], len(first.alerts)
        while count < GROUP_ALERTS:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return group, None
            if not isinstance(item, _Alerts):
                return group, item  # arrival order kept: handled right after the group
            group.append(item)
            count += len(item.alerts)
        return group, None

    def _on_observation(self, obs: Observation, job: Job) -> None:
        self.metrics.observe(obs)  # log counters included (obs.facts.counters)
        self.history.add(obs)
        if not self._holds_lease():
            return  # a standby probes and keeps history; the leader records incidents
        before = {i.id for i in self.book.open_incidents()}
        self.book.observe(obs)
        for sig in self.detector.observe(obs, job.for_, job.recover_after):
            log.info("%s %s on %s: %s", sig.kind, sig.probe, sig.host, obs.summary)
            self.book.on_signal(sig)
        self._drafts_dirty |= before | {i.id for i in self.book.open_incidents()}

    def _on_alerts(self, group: list[_Alerts]) -> None:
        # A request that gave up waiting (and said so) is not applied.
        batches = [b for b in group if b.reply.set_running_or_notify_cancel()]
        if not batches:
            return
        if self.shared and not self.leader:
            self._renew_lease()  # a leader gone quiet: take over now rather than drop these
        if not self._holds_lease():
            # Alertmanager delivers to every recorder (one receiver each): the leader
            # records them; a standby answers that it applied nothing.
            for batch in batches:
                batch.reply.set_result([None] * len(batch.alerts))
            return
        try:
            outcomes = apply_alert_batches(self.book, self.store, [b.alerts for b in batches])
        except BaseException as exc:
            for batch in batches:
                batch.reply.set_exception(exc)
            raise
        # Answered only now, after the commit: an acknowledged alert survives a kill -9.
        for batch, outcome in zip(batches, outcomes, strict=True):
            if isinstance(outcome, Exception):
                log.error("cannot record %d alerts: %s", len(batch.alerts), outcome)
                batch.reply.set_exception(outcome)
            else:
                self._drafts_dirty |= {i for i in outcome if i}
                batch.reply.set_result(outcome)

    def _tick(self) -> None:
        if not self._holds_lease():
            self._tick_store()
            self.history.flush()
            self.notifier.status(self._status_line())
            return
        if not self._restored:
            try:
                self.store.open()
            except StoreError:
                pass  # check_writable below says why, once per change
            else:
                log.warning("store opened at %s", self.store.where)
                self._continue_open_incidents()
        self.book.tick()
        self._tick_store()
        self._write_drafts()
        self.history.flush()
        self.notifier.status(self._status_line())

    def _tick_store(self) -> None:
        try:
            self.store.check_writable()
            if not self._store_ok[0]:
                log.warning("store writable again")
            self._store_ok = (True, "ok")
        except StoreError as exc:
            if self._store_ok[1] != str(exc):
                log.error("%s", exc)
            self._store_ok = (False, str(exc))

    def _write_drafts(self) -> None:
        for incident_id in sorted(self._drafts_dirty):
            try:
                incident = self.store.get(incident_id) if incident_id else None
            except StoreError:
                return  # not readable yet; keep them dirty
            if incident is None:
                continue
            try:
                write_draft(self.config, incident)
            except OSError as exc:
                # Every tick tries again; the log says it once per change of condition.
                problem = exc.strerror or str(exc)
                if problem != self._draft_problem:
                    log.error(
                        "cannot write the draft of %s: %s (retrying every tick; said again "
                        "only when this changes)",
                        incident.ref,
                        exc,
                    )
                self._draft_problem = problem
                return  # keep them dirty; try again next tick
            except Exception:  # a rendering bug must not stop the engine
                log.exception("cannot render the draft of %s", incident.ref)
        if self._draft_problem is not None and self._drafts_dirty:
            log.warning("drafts written again")
            self._draft_problem = None
        self._drafts_dirty.clear()

    def _status_line(self) -> str:
        n_open = len([i for i in self.book.open_incidents() if i.severity is Severity.OUTAGE])
        return (
            f"watching {len(self.config.hosts)} hosts, "
            f"{n_open} open incident{'s' if n_open != 1 else ''}"
        )

    def _reload(self) -> None:
        self.notifier.reloading()
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("reload refused, keeping the running config: %s", "; ".join(exc.errors))
            self.notifier.ready(self._status_line())
            return
        if new.state_dir != self.config.state_dir or new.listen != self.config.listen:
            log.error("reload: state_dir and listen changes need a restart; keeping the old values")
            new = new.model_copy(
                update={"state_dir": self.config.state_dir, "listen": self.config.listen}
            )
        if self.scheduler:
            self.scheduler.stop()
        for host in set(self.config.hosts) - set(new.hosts):
            # No longer watched: its tracks must not fire or recover on old samples if
            # a later reload brings a host of that name back.
            self.detector.forget_host(host)
        self.config = new
        self.history.days = new.web.history_days
        self.book.config = new  # open incidents carry over; the book reads config live
        if self.leader:  # a standby's sender never started: it must not send
            self.sender.update(new)
        self.metrics.retain_hosts(list(new.hosts))
        if self.api is not None:
            # The app reads the limit live; waitress refuses on its own copy, set here.
            self.api.set_max_body(new.alertmanager.max_body)
        self._check_token_file()
        self._start_scheduler()
        # The old config is garbage now; what it held in cycles was frozen with it.
        gc.unfreeze()
        settle_heap()
        log.info("reloaded %s: %d hosts", self.config_path, len(new.hosts))
        self.notifier.ready(self._status_line())


def settle_heap() -> None:
    """Keep what start-up built (modules, templates, config, the open incidents) out of the
    collector's full passes. Those passes walk every tracked object, so over this heap
    each took 20-27 ms, and a page request that met one waited for it: the p99 of the
    pages was twice their p50 (BENCHMARKS.md section 6). Frozen objects are still freed
    by reference counting; only cycles among them wait for the next unfreeze (a reload)."""
    gc.collect()
    gc.freeze()


# Never equal to a token anyone sends (it is not ASCII): reads are refused, not opened.
_UNUSABLE = "\u2400 unusable read token"


def _read_secret(path: str | None, name: str) -> str | None:
    if not path:
        return None
    try:
        secret = Path(path).expanduser().read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        log.error("cannot read %s %s: %s", name, path, getattr(exc, "strerror", None) or exc)
        return None
    return secret or None


def read_access_refusal(listen: str, read_token_file: str | None) -> str | None:
    """Why the daemon must not start with this listen address, or None.

    Off loopback, incidents (host names, log lines, people's notes) would be readable by
    anyone who can reach the port: a read token is required, and it must be readable."""
    host, _ = split_listen(listen)
    if is_loopback_host(host):
        return None
    if not read_token_file:
        return (
            f"refusing to listen on {listen}: it is not a loopback address, and anyone who "
            "reaches it could read every incident. Set web.read_token_file to a file holding "
            "a read token (the pages, /api/v1 reads and /metrics then need it), or listen "
            "on 127.0.0.1"
        )
    if _read_secret(read_token_file, "web.read_token_file") is None:
        return (
            f"refusing to listen on {listen}: web.read_token_file {read_token_file} "
            "is missing, unreadable or empty"
        )
    return None


class _ZonedFormatter(logging.Formatter):
    """Times as ISO 8601 with the offset (`2026-12-05T08:41:22.120+03:00`): a log line
    read on another machine, or after a zone change, still says when it happened."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        at = datetime.fromtimestamp(record.created).astimezone()
        return at.isoformat(timespec="milliseconds")


def configure_logging(level: str = "INFO") -> None:
    """One line per event on stderr; journald adds the time and unit."""
    fmt = "%(levelname)s %(name)s: %(message)s"
    if not os.environ.get("JOURNAL_STREAM"):
        fmt = "%(asctime)s " + fmt
    handler = logging.StreamHandler()
    handler.setFormatter(_ZonedFormatter(fmt))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
    logging.getLogger("paramiko").setLevel(logging.ERROR)
    logging.getLogger("waitress").setLevel(logging.WARNING)
    # Its DEBUG lines quote each request's path and query ("POST /services/T.../B.../..."),
    # the secret of a Slack or webhook receiver's URL: not even --log-level DEBUG shows it.
    logging.getLogger("urllib3").setLevel(logging.INFO)


def raise_fd_limit(ceiling: int = 65536) -> int:
    """Raise the soft limit on open descriptors to the hard one (at most `ceiling`): the
    HTTP endpoint and the probes share them, and the usual soft limit of 1024 ran out
    under a connection flood. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard if hard != resource.RLIM_INFINITY else ceiling, ceiling)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, want, exc)
    return soft


def run_daemon(config_path: str, on_ready: Callable[[Daemon], Any] | None = None) -> int:
    raise_fd_limit()
    try:
        daemon = Daemon(config_path)
    except StoreError as exc:
        log.error("%s", exc)
        return 1
    if on_ready:
        on_ready(daemon)
    return daemon.run()
