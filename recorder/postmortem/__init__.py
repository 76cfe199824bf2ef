"""Postmortems: holding a document to docs/postmortem-standard.md (`lint`), and the marker for
what only a person can fill in, which `draft` writes and `close` and `lint` refuse."""

from __future__ import annotations

from recorder.postmortem.lint import (
    PLACEHOLDER_MARK,
    SECTIONS,
    Gap,
    fill_in,
    lint_bytes,
    lint_file,
    lint_text,
    to_json,
)

__all__ = [
    "PLACEHOLDER_MARK",
    "SECTIONS",
    "Gap",
    "fill_in",
    "lint_bytes",
    "lint_file",
    "lint_text",
    "to_json",
]
