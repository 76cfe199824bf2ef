"""The one YAML reader for the recorder's own files (its config and the runbooks): read as
UTF-8, parsed with `yaml.safe_load`, and every way that can fail turned into one
`YamlFileError` whose message says what is wrong (never a traceback)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class YamlFileError(Exception):
    """A file that could not be read as YAML. `message`: what is wrong, with the line,
    column and problem of a syntax error; `brief`: the same with only the line."""

    def __init__(self, message: str, brief: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.brief = brief if brief is not None else message


def read_yaml(path: Path, what: str = "file") -> Any:
    """The data of the YAML file at `path` (`what` names it in messages: "config")."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise YamlFileError(f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise YamlFileError("not UTF-8 text") from None
    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise YamlFileError(f"not a usable {what}: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of thousands of digits
        raise YamlFileError(f"not a usable {what}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark else ""
        column = f", column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlFileError(
            f"not valid YAML{line}{column}: {problem}", f"not valid YAML{line}"
        ) from None
