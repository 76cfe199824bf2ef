"""Root-cause ranking: which fault kinds explain the evidence, best first.

The knowledge is in the runbooks' `symptoms` (runbooks/*.yml); this module only combines
it. For each runbook whose `requires` terms include at least one present term (and, when
it has `requires_also`, at least one of those too):

    belief     = 1 - prod(1 - w)   over the present `supports` terms (noisy-OR)
    confidence = belief * prod(1 - w)   over the present `contradicts` terms

Noisy-OR treats each supporting sign as independent evidence: two signs of 0.6 and 0.5
give 0.8, never more than 1, and adding a sign can only raise the belief. A contradicting
sign of weight w removes that share of the belief. Candidates at 0 are dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from probes.base import Fault
from recorder.runbooks import Runbook, load_runbooks

_ORDER = {fault: i for i, fault in enumerate(Fault)}


@dataclass(frozen=True)
class Candidate:
    fault: Fault
    confidence: float  # 0..1, two decimals
    evidence: list[str] = field(default_factory=list)  # why, in words, strongest first

    def to_json(self) -> dict[str, Any]:
        return {
            "fault": str(self.fault),
            "confidence": self.confidence,
            "evidence": list(self.evidence),
        }


def describe_term(term: str) -> str:
    """An evidence term in words, for when the engine gave no evidence text with it."""
    source, _, what = term.partition(":")
    if term == "deploy:recent":
        return "a deploy of the service shortly before the harm started"
    if term == "rate:above-baseline":
        return "the request rate far above its baseline"
    if source == "alert":
        return f"Alertmanager alert firing: {what}"
    if what == "ok":
        return f"{source} probe healthy on every host"
    return f"{source} probe observed {what}"


def _strings(value: Sequence[str] | str) -> list[str]:
    # A bare string is a Sequence[str] too; take it as one piece of evidence, not letters.
    return [value] if isinstance(value, str) else [str(v) for v in value]


def rank_causes(
    evidence: Mapping[str, Sequence[str]],
    runbooks: Mapping[Fault, Runbook] | None = None,
) -> list[Candidate]:
    """Fault candidates for the evidence, best first.

    `evidence` maps each present term (see recorder.runbooks) to the human evidence behind
    it, e.g. {"sites:missing-symlink": ["lb-01: sites-available/default is not linked"]}.
    Terms no runbook mentions are ignored. Ties go to the candidate with more matching
    signs, then to the order of the Fault enum, so the ranking is always the same.
    """
    books = load_runbooks() if runbooks is None else runbooks
    present = {term: _strings(texts) for term, texts in evidence.items()}
    ranked: list[tuple[float, int, int, Candidate]] = []
    for fault, book in books.items():
        symptoms = book.symptoms
        if not any(term in present for term in symptoms.requires):
            continue
        if symptoms.requires_also and not any(t in present for t in symptoms.requires_also):
            continue
        matched = sorted(
            (w for w in symptoms.supports if w.term in present),
            key=lambda w: -w.weight,
        )
        doubt = 1.0
        for w in matched:
            doubt *= 1.0 - w.weight
        confidence = 1.0 - doubt
        for w in symptoms.contradicts:
            if w.term in present:
                confidence *= 1.0 - w.weight
        if confidence <= 0.005:
            continue
        # In order, once each: a dict, since a list's `in` made 200 hosts' lines cost
        # 200 x 200 comparisons per candidate at every observation.
        lines = dict.fromkeys(
            text for w in matched for text in present[w.term] or [describe_term(w.term)]
        )
        candidate = Candidate(fault=fault, confidence=round(confidence, 2), evidence=list(lines))
        # Compare on a rounded value: float noise must not decide between equal scores.
        ranked.append((-round(confidence, 6), -len(matched), _ORDER[fault], candidate))
    ranked.sort(key=lambda r: r[:3])
    return [r[3] for r in ranked]
