"""An incident's signals are typed records (recorder.model.SignalRecord) with a
SignalState, not dicts of strings beside the detector's state machine; their rows read and
write exactly as the recorder wrote them before (#15), so no migration is needed."""

from __future__ import annotations

from datetime import timedelta

from probes.base import Fault, Status
from probes.facts import Subjects
from tests.fixtures import Harness

BROKEN_SITE = {
    ("lb-01", "sites"): (
        Fault.MISSING_SYMLINK,
        "sites-available/default is not linked in sites-enabled",
        {"missing": ["default"], "subjects": Subjects(site=("default",))},
    ),
    ("lb-01", "http"): (Fault.PORT_CLOSED, "connection refused on http://127.0.0.1:18080/", {}),
}
NGINX_DOWN = {("web-02", "process"): (Fault.NGINX_DOWN, "nginx is not running on web-02", {})}


def record_signals(h: Harness) -> None:
    """Every kind of signal row the engine writes: a probe signal that flapped, named what
    it saw and recovered; one that joined and still fires; an alert heard with an end time;
    a check that could not look (a monitoring incident). Both incidents stay open, so a
    restart continues them (tests/stores/signal-rows-before-typed.sql was written from this
    by the code before the records)."""
    h.sweep({})
    h.sweep(BROKEN_SITE)
    h.sweep(BROKEN_SITE)
    h.sweep({})
    h.sweep(BROKEN_SITE)  # fails again within recover_after: a flap
    h.sweep({**BROKEN_SITE, **NGINX_DOWN})  # joins
    h.book.on_alert(
        fingerprint="5f0c2a",
        firing=True,
        name="NginxErrors",
        service="web",
        host="lb-01",
        fault=Fault.HTTP_5XX,
        summary="5xx above 5% on lb-01",
        starts_at=h.now,
        ends_at=h.now + timedelta(hours=1),
    )
    for _ in range(8):
        h.sweep(NGINX_DOWN)  # lb-01 recovers, web-02 goes on failing
    for _ in range(3):
        h.feed("web-01", "process", Status.ERROR, summary="ssh: connection timed out")
    h.book.tick()
