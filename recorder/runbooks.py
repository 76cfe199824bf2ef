"""Runbooks: what the team knows about each fault kind, kept as data in `runbooks/*.yml`.

One YAML file per fault kind (`runbooks/<fault>.yml`), read with `recorder.yamlfile` and
validated here. The engine ranks root causes from each runbook's `symptoms`
(recorder.ranking); the postmortem drafter takes its causes, resolution, misleading paths,
improvements and task templates.

Symptoms are written in evidence terms, the words the engine uses for what it saw:

- `<probe>:<fault>`  a probe observed that fault on some host of the service
                     (`sites:missing-symlink`, `http:port-closed`, `error_rate:http-5xx`);
- `<probe>:ok`       that probe is healthy on every host of the service where it runs;
- `alert:<fault>`    an Alertmanager alert mapped to that fault kind is firing;
- `deploy:recent`    the service was deployed within minutes before the harm started;
- `rate:above-baseline`  the request rate is far above its baseline.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from probes.base import Fault
from probes.registry import PROBES
from recorder.fillin import fill_in
from recorder.resources import data_path
from recorder.yamlfile import YamlFileError, read_yaml

# What the engine knows about an incident and can put into a task template. Anything else
# in braces is a typo in a runbook and is refused when the runbooks load.
#   host     the host the fault was observed on (for upstream-down: the load balancer)
#   site     the site name in sites-available     file, line  a config file and line
#   service  the service of the incident          url         the probe URL users hit
#   backend  an upstream server, `address:port`   version     the deployed version
PLACEHOLDERS = frozenset({"host", "site", "file", "line", "service", "url", "backend", "version"})

SPECIAL_TERMS = frozenset({"deploy:recent", "rate:above-baseline"})


def is_known_term(term: str) -> bool:
    """Whether `term` is an evidence term the engine can produce (see the module doc)."""
    if term in SPECIAL_TERMS:
        return True
    source, sep, what = term.partition(":")
    if not sep:
        return False
    faults = {str(f) for f in Fault}
    if source == "alert":
        return what in faults
    return source in PROBES and (what == "ok" or what in faults)


class RunbookError(Exception):
    """A runbook file that cannot be used; `errors` holds one line per problem."""

    def __init__(self, path: str, errors: list[str]) -> None:
        super().__init__(f"{path}: " + "; ".join(errors))
        self.path = path
        self.errors = errors


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Weighted(_Strict):
    """A term and how much it moves the belief in the fault (0 < weight < 1).

    A weight of 1 would mean "certain whatever else is seen", which no single sign is.
    """

    term: str
    weight: float = Field(gt=0, lt=1)

    @field_validator("term")
    @classmethod
    def _known(cls, v: str) -> str:
        if not is_known_term(v):
            raise ValueError(f"unknown evidence term {v!r}")
        return v


class Symptoms(_Strict):
    requires: list[str] = Field(min_length=1)  # at least one of these must be present
    # ...and, when given, at least one of these as well (a deploy alone is no bad deploy).
    requires_also: list[str] = Field(default_factory=list)
    supports: list[Weighted] = Field(min_length=1)
    contradicts: list[Weighted] = Field(default_factory=list)

    @field_validator("requires", "requires_also")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = [t for t in v if not is_known_term(t)]
        if unknown:
            raise ValueError(f"unknown evidence terms {unknown}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Symptoms:
        supported = [w.term for w in self.supports]
        against = [w.term for w in self.contradicts]
        problems: list[str] = []
        # Every required term carries a weight in `supports`, so the confidence of a
        # candidate is always explained by the weights written in the file.
        missing = [t for t in [*self.requires, *self.requires_also] if t not in supported]
        if missing:
            problems.append(f"requires terms without a weight in supports: {missing}")
        for name, terms in (("supports", supported), ("contradicts", against)):
            dupes = sorted({t for t in terms if terms.count(t) > 1})
            if dupes:
                problems.append(f"{name} lists terms twice: {dupes}")
        both = sorted(set(supported) & set(against))
        if both:
            problems.append(f"terms both support and contradict: {both}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _non_blank(v: str) -> str:
    if not v.strip():
        raise ValueError("must not be empty")
    return v.strip()


class Runbook(_Strict):
    """One fault kind's knowledge: how it shows (symptoms), what users see, why it happens,
    how to fix it, where people go wrong, and what to do so it does not happen again."""

    fault: Fault
    title: str
    symptoms: Symptoms
    users_experience: str  # one sentence: what users saw
    causes: str  # what usually causes it, explained
    resolution: list[str] = Field(min_length=1)  # steps, in order
    misleading: list[str] = Field(min_length=1)  # paths people commonly take in vain
    improvements: list[str] = Field(min_length=1)  # broad
    tasks: list[str] = Field(min_length=1)  # specific, with {placeholders}

    @field_validator("title", "causes")
    @classmethod
    def _text(cls, v: str) -> str:
        return _non_blank(v)

    @field_validator("users_experience")
    @classmethod
    def _sentence(cls, v: str) -> str:
        v = _non_blank(v)
        if "\n" in v:
            raise ValueError("must be one sentence on one line")
        return v

    @field_validator("resolution", "misleading", "improvements", "tasks")
    @classmethod
    def _items(cls, v: list[str]) -> list[str]:
        return [_non_blank(item) for item in v]

    @field_validator("tasks")
    @classmethod
    def _placeholders(cls, v: list[str]) -> list[str]:
        for task in v:
            try:
                names = [f for _, f, _, _ in string.Formatter().parse(task) if f is not None]
            except ValueError as exc:
                raise ValueError(f"{task!r}: {exc}") from None
            bad = [n for n in names if n not in PLACEHOLDERS]
            if bad:
                known = ", ".join("{" + p + "}" for p in sorted(PLACEHOLDERS))
                raise ValueError(f"{task!r}: unknown placeholders {bad} (known: {known})")
        return v

    def render_tasks(self, context: Mapping[str, str]) -> list[str]:
        """The task templates filled from `context`; what it lacks (or holds empty) becomes
        a `[[FILL IN: name]]` marker that `close` and `lint` refuse until a person fills it."""
        values = _Filler({k: v for k, v in context.items() if v})
        return [task.format_map(values) for task in self.tasks]


class _Filler(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return fill_in(key)


def _errors(exc: ValidationError) -> list[str]:
    return [
        f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: "
        + e["msg"].removeprefix("Value error, ")
        for e in exc.errors()
    ]


def parse_runbook(data: Any, path: str = "<runbook>") -> Runbook:
    if not isinstance(data, dict):
        raise RunbookError(path, ["the file must hold a YAML mapping at the top level"])
    try:
        return Runbook.model_validate(data)
    except ValidationError as exc:
        raise RunbookError(path, _errors(exc)) from None


def load_runbook(path: Path) -> Runbook:
    try:
        data = read_yaml(path, "runbook")
    except YamlFileError as exc:
        raise RunbookError(str(path), [exc.brief]) from None
    runbook = parse_runbook(data, str(path))
    if path.stem != runbook.fault:
        raise RunbookError(str(path), [f"fault {runbook.fault!s} does not match the file name"])
    return runbook


_FILE = re.compile(r"^[a-z0-9-]+\.ya?ml$")


@functools.lru_cache(maxsize=8)
def _load_all(directory: Path) -> tuple[tuple[Fault, Runbook], ...]:
    if not directory.is_dir():
        raise RunbookError(str(directory), ["not a directory"])
    found: dict[Fault, Runbook] = {}
    errors: list[str] = []
    for path in sorted(directory.iterdir()):
        if not _FILE.match(path.name):
            continue
        try:
            runbook = load_runbook(path)
        except RunbookError as exc:
            errors.extend(f"{path.name}: {e}" for e in exc.errors)
            continue
        if runbook.fault in found:
            errors.append(f"{path.name}: a second runbook for {runbook.fault!s}")
        found[runbook.fault] = runbook
    missing = [str(f) for f in Fault if f not in found]
    if missing:
        errors.append(f"no runbook for fault kinds: {', '.join(missing)}")
    if errors:
        raise RunbookError(str(directory), errors)
    return tuple((f, found[f]) for f in Fault)


def load_runbooks(directory: Path | None = None) -> dict[Fault, Runbook]:
    """Every runbook, one per fault kind, from `directory` (default: the shipped
    `runbooks/`). Read once per directory and cached; a missing, invalid or duplicate
    runbook raises RunbookError listing every problem, because the engine's ranking and
    drafts would otherwise be silently incomplete."""
    where = directory.resolve() if directory else _shipped()
    return dict(_load_all(where))


@functools.lru_cache(maxsize=1)
def _shipped() -> Path:
    # Found once: the ranking asks for the runbooks twice per alert applied, and finding
    # the folder (two stats and a realpath) cost more than the ranking (#19.5).
    return data_path("runbooks").resolve()
