"""Where the data folders (`runbooks/`, `templates/`) and the postmortem standard are.

In a wheel they sit inside the `recorder` package (pyproject's force-include); in a checkout
(editable install, tests) they are at the top of the tree, beside `recorder/`.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_path(name: str) -> Path:
    """The directory of data folder `name` ("runbooks" or "templates")."""
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"data folder {name!r} is missing from the installation")


STANDARD = "postmortem-standard.md"


def standard_path() -> Path:
    """The postmortem standard that `close` and `lint` enforce (docs/ in a checkout)."""
    for candidate in (_PACKAGE / STANDARD, _PACKAGE.parent / "docs" / STANDARD):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{STANDARD} is missing from the installation")
