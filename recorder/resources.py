"""Where the data folders (`runbooks/`, `templates/`) are.

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
