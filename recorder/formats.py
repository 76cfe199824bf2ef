"""The postmortem's output formats, as one table: `recorder draft --format` offers its
names, and the drafter renders each with its template (templates/). A new format is a row
here and a template, nothing else."""

from __future__ import annotations

# name -> the Jinja template that renders it
POSTMORTEM_FORMATS: dict[str, str] = {
    "md": "postmortem.md.j2",
    "html": "postmortem.html.j2",
}
