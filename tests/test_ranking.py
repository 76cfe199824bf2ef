"""Root-cause ranking from the shipped runbooks: the lab's classic outages, as the engine
sees them, must rank the way an operator would rank them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.base import Fault
from recorder.ranking import Candidate, describe_term, rank_causes
from recorder.runbooks import load_runbooks, parse_runbook

F = Fault

# (name, evidence terms present, the faults expected at the top, best first)
CASES: list[tuple[str, set[str], list[Fault]]] = [
    (
        "missing symlink on the load balancer",
        {"sites:missing-symlink", "http:port-closed", "process:ok", "config:ok"},
        [F.MISSING_SYMLINK, F.PORT_CLOSED],
    ),
    (
        "missing symlink, deployed just before (the deploy removed the link)",
        {"sites:missing-symlink", "http:port-closed", "process:ok", "config:ok", "deploy:recent"},
        [F.MISSING_SYMLINK],
    ),
    (
        "missing symlink on a backend the balancer reports down",
        {"sites:missing-symlink", "http:port-closed", "upstreams:upstream-down", "process:ok"},
        [F.MISSING_SYMLINK, F.UPSTREAM_DOWN],
    ),
    (
        "dangling symlink, nginx still serving the old config",
        {"sites:dangling-symlink", "config:config-syntax", "http:ok"},
        [F.DANGLING_SYMLINK, F.CONFIG_SYNTAX],
    ),
    (
        "dangling symlink, port closed",
        {"sites:dangling-symlink", "config:config-syntax", "http:port-closed"},
        [F.DANGLING_SYMLINK],
    ),
    (
        "dangling symlink, nginx could not start again",
        {
            "sites:dangling-symlink",
            "config:config-syntax",
            "http:port-closed",
            "process:nginx-down",
        },
        [F.DANGLING_SYMLINK],
    ),
    (
        "config syntax",
        {"config:config-syntax", "sites:ok", "http:ok"},
        [F.CONFIG_SYNTAX],
    ),
    (
        "nginx down",
        {"process:nginx-down", "http:port-closed"},
        [F.NGINX_DOWN, F.PORT_CLOSED],
    ),
    (
        "nginx down on the only entry point, everything else fine",
        {"process:nginx-down", "http:port-closed", "config:ok", "sites:ok", "upstreams:ok"},
        [F.NGINX_DOWN, F.PORT_CLOSED],
    ),
    (
        "port closed alone",
        {"process:ok", "sites:ok", "config:ok", "http:port-closed"},
        [F.PORT_CLOSED],
    ),
    (
        "backend dead, entry point still answers",
        {"upstreams:upstream-down", "http:ok"},
        [F.UPSTREAM_DOWN],
    ),
    (
        "backend's nginx stopped: the engine sees it on web-02 too",
        {"upstreams:upstream-down", "process:nginx-down", "http:port-closed"},
        [F.UPSTREAM_DOWN, F.NGINX_DOWN],
    ),
    (
        "backend's nginx stopped, entry point answering, the rest healthy",
        {
            "upstreams:upstream-down",
            "process:nginx-down",
            "http:port-closed",
            "http:ok",
            "config:ok",
            "sites:ok",
        },
        [F.UPSTREAM_DOWN, F.NGINX_DOWN],
    ),
    (
        "every backend dead: the balancer answers 502",
        {"upstreams:upstream-down", "http:http-5xx", "error_rate:http-5xx"},
        [F.UPSTREAM_DOWN, F.HTTP_5XX],
    ),
    (
        "5xx from the log and the probe",
        {"error_rate:http-5xx", "http:http-5xx"},
        [F.HTTP_5XX],
    ),
    ("5xx from the log only", {"error_rate:http-5xx"}, [F.HTTP_5XX]),
    (
        "5xx minutes after a deploy",
        {"error_rate:http-5xx", "deploy:recent"},
        [F.BAD_DEPLOY, F.HTTP_5XX],
    ),
    (
        "5xx after a deploy, seen by the probe too",
        {"error_rate:http-5xx", "http:http-5xx", "deploy:recent", "process:ok", "config:ok"},
        [F.BAD_DEPLOY, F.HTTP_5XX],
    ),
    ("capacity from the error-rate probe", {"error_rate:capacity"}, [F.CAPACITY]),
    (
        "capacity: 5xx under a surge",
        {"error_rate:http-5xx", "rate:above-baseline"},
        [F.CAPACITY, F.HTTP_5XX],
    ),
    (
        "capacity: slowness under a surge",
        {"http:slow-responses", "rate:above-baseline"},
        [F.CAPACITY, F.SLOW_RESPONSES],
    ),
    ("slow responses", {"http:slow-responses"}, [F.SLOW_RESPONSES]),
    ("slow responses, errors fine", {"http:slow-responses", "error_rate:ok"}, [F.SLOW_RESPONSES]),
    ("an Alertmanager alert only", {"alert:http-5xx"}, [F.HTTP_5XX]),
]


@pytest.mark.parametrize(("name", "terms", "expected"), CASES, ids=[c[0] for c in CASES])
def test_classic_outages_rank_right(name: str, terms: set[str], expected: list[Fault]) -> None:
    ranked = rank_causes({term: [f"seen: {term}"] for term in sorted(terms)})
    assert [c.fault for c in ranked[: len(expected)]] == expected, ranked


@pytest.mark.parametrize("fault", list(Fault))
def test_an_alert_alone_points_at_its_fault(fault: Fault) -> None:
    assert rank_causes({f"alert:{fault}": ["firing"]})[0].fault is fault


def test_no_evidence_no_candidates() -> None:
    assert rank_causes({}) == []
    assert rank_causes({"process:ok": ["fine"], "http:ok": ["fine"]}) == []
    assert rank_causes({"someprobe:whatever": ["ignored"]}) == []


def test_candidate_carries_its_evidence_strongest_first() -> None:
    ranked = rank_causes(
        {
            "process:ok": ["lb-01: nginx master 1234 running"],
            "sites:missing-symlink": ["lb-01: sites-available/default is not linked"],
            "http:port-closed": ["lb-01: connection refused on :80"],
            "config:ok": [],
        }
    )
    top = ranked[0]
    assert top == Candidate(
        fault=F.MISSING_SYMLINK,
        confidence=0.88,
        evidence=[
            "lb-01: sites-available/default is not linked",
            "lb-01: connection refused on :80",
            "lb-01: nginx master 1234 running",
            "config probe healthy on every host",
        ],
    )
    assert top.to_json() == {
        "fault": "missing-symlink",
        "confidence": 0.88,
        "evidence": top.evidence,
    }
    assert ranked[1].fault is F.PORT_CLOSED and ranked[1].confidence == 0.39


def test_a_bare_string_is_one_piece_of_evidence() -> None:
    ranked = rank_causes({"http:slow-responses": "lb-01: 2.3 s for /"})  # type: ignore[dict-item]
    assert ranked[0].evidence == ["lb-01: 2.3 s for /"]


@pytest.mark.parametrize(
    ("term", "words"),
    [
        ("deploy:recent", "a deploy of the service shortly before the harm started"),
        ("rate:above-baseline", "the request rate far above its baseline"),
        ("alert:nginx-down", "Alertmanager alert firing: nginx-down"),
        ("http:ok", "http probe healthy on every host"),
        ("sites:dangling-symlink", "sites probe observed dangling-symlink"),
    ],
)
def test_terms_in_words(term: str, words: str) -> None:
    assert describe_term(term) == words


def test_ties_are_broken_the_same_way_every_time(tmp_path: Path) -> None:
    # Two runbooks with identical symptoms: more matched signs first, then enum order.
    books = dict(load_runbooks())
    for fault in (F.PORT_CLOSED, F.NGINX_DOWN):
        data = yaml.safe_load(
            (Path(__file__).parent.parent / "runbooks" / f"{fault}.yml").read_text("utf-8")
        )
        data["symptoms"] = {
            "requires": ["http:port-closed"],
            "supports": [{"term": "http:port-closed", "weight": 0.5}],
        }
        books[fault] = parse_runbook(data)
    books = {f: b for f, b in books.items() if f in (F.NGINX_DOWN, F.PORT_CLOSED)}
    ranked = rank_causes({"http:port-closed": ["x"]}, books)
    assert [c.fault for c in ranked] == [F.PORT_CLOSED, F.NGINX_DOWN]
    assert ranked[0].confidence == ranked[1].confidence == 0.5


TERMS = sorted(
    {
        w.term
        for b in load_runbooks().values()
        for w in (*b.symptoms.supports, *b.symptoms.contradicts)
    }
)


@settings(max_examples=150, deadline=None)
@given(st.sets(st.sampled_from(TERMS), max_size=8))
def test_any_evidence_ranks_sanely(terms: set[str]) -> None:
    evidence = {t: [t] for t in sorted(terms)}
    ranked = rank_causes(evidence)
    assert ranked == rank_causes(dict(reversed(list(evidence.items()))))  # order-free
    books = load_runbooks()
    for c in ranked:
        assert 0 < c.confidence <= 1 and round(c.confidence, 2) == c.confidence
        assert any(t in terms for t in books[c.fault].symptoms.requires)
        assert c.evidence and all(e in terms for e in c.evidence)
    assert [c.confidence for c in ranked] == sorted((c.confidence for c in ranked), reverse=True)
    assert len({c.fault for c in ranked}) == len(ranked)
