"""`incidents show` on incidents the real engine recorded: the failing signal first, the
checks that passed folded per host, a place to look when the cause is only the symptom,
and nothing a probe read can drive the terminal."""

from __future__ import annotations

from pathlib import Path

from probes.base import Fault
from recorder.show import incident_lines
from tests.fixtures import MISSING_SYMLINK, Harness

BACKEND_5XX = {
    ("web-01", "error_rate"): (
        Fault.HTTP_5XX,
        "31% of requests were 5xx",
        {"clients": 100, "clients_with_5xx": 31, "requests": 500},
    ),
    ("lb-01", "error_rate"): (
        Fault.HTTP_5XX,
        "16% of requests were 5xx",
        {"clients": 200, "clients_with_5xx": 31, "requests": 1000},
    ),
}


def shown(h: Harness) -> list[str]:
    incident = h.only_incident()
    return incident_lines(incident, h.config)


def test_passed_checks_fold_into_one_line_per_host(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.sweep({})
    for _ in range(3):
        h.sweep(MISSING_SYMLINK)
    timeline = h.only_incident().timeline
    assert sum("(ruled out)" in e.text for e in timeline) >= 10  # what the engine records
    lines = shown(h)
    assert not any("(ruled out)" in line for line in lines), lines
    ruled = [line for line in lines if "Ruled out on" in line]
    assert len(ruled) == 3, ruled  # lb-01, web-01, web-02
    web02 = next(line for line in ruled if "Ruled out on web-02:" in line)
    assert "http, sites, config, process, error_rate" in web02
    # What fails comes before the story.
    signals = lines.index("signals (failing first):")
    assert lines[signals + 1].split()[0] == "failing"
    assert signals < lines.index("timeline:")


def test_a_symptom_cause_says_where_to_look(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.sweep({})
    for _ in range(3):
        h.sweep(BACKEND_5XX)
    lines = shown(h)
    causes = lines[lines.index("root causes:") + 1]
    assert causes.startswith("  http-5xx")
    (look,) = [line for line in lines if line.startswith("look next:")]
    assert "come from web-01" in look and "compare with web-02" in look
    assert "lb-01" not in look.split("come from", 1)[1].split(":", 1)[0]


def test_no_hint_when_the_cause_names_a_mechanism(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    for _ in range(3):
        h.sweep(MISSING_SYMLINK)
    assert not any(line.startswith("look next:") for line in shown(h))


def test_control_characters_are_escaped(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    hostile = {
        ("lb-01", "sites"): (
            Fault.MISSING_SYMLINK,
            "sites-available/\x1b]0;owned\x07evil is not linked\nfake line",
            {"missing": ["evil"]},
        ),
    }
    for _ in range(3):
        h.sweep(hostile)
    text = "\n".join(shown(h))
    assert "\x1b" not in text and "\x07" not in text
    assert "\\x1b]0;owned\\x07evil" in text
    assert "fake line" in text and "\nfake line" not in text
