"""Build hook: compile the access-log reader's optional C counter (probes/_accesslog.c),
and carry the docker lab's files into the wheel (recorder/lab/docker_files).

The counter makes `recorder logscan` several times faster (BENCHMARKS.md, section 1). It
is optional, like PyYAML's libyaml binding: when there is no C compiler or no Python
headers, the wheel is built without it (a warning says so) and the reader counts in
Python, with the same results. RECORDER_NO_EXTENSION=1 leaves it out on purpose.

setuptools does the compiling because it knows each platform's compiler and flags for
Python extensions; hatchling stays the build backend for everything else.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = "probes/_accesslog.c"
MODULE = "probes._accesslog"


def module_file() -> str:
    """The compiled module's file name for the Python that builds it."""
    return "_accesslog" + str(sysconfig.get_config_var("EXT_SUFFIX"))


def build(root: Path, out: Path | None = None) -> Path:
    """Compile the counter; returns the built file: in `out` (as out/probes/NAME), or next
    to its source when `out` is None (an editable install imports it from there)."""
    from setuptools import Distribution, Extension
    from setuptools.command.build_ext import build_ext

    built = (out or root) / "probes" / module_file()
    # A file from an earlier build must not outlive a failed one: an editable install
    # would import it although it no longer matches the source.
    built.unlink(missing_ok=True)
    here = Path.cwd()
    os.chdir(root)  # the extension's source path is relative to the project
    try:
        # Object files go to a scratch directory: none is left in the checkout to be
        # mistaken for up to date by a later build.
        with tempfile.TemporaryDirectory(prefix="recorder-build-") as scratch:
            ext = Extension(MODULE, [SOURCE], extra_compile_args=["-O2"])
            dist = Distribution({"name": "nginx-recorder", "ext_modules": [ext]})
            cmd = build_ext(dist)
            cmd.inplace = out is None
            cmd.build_temp = scratch
            cmd.build_lib = str(out) if out is not None else scratch
            cmd.ensure_finalized()
            cmd.run()
    finally:
        os.chdir(here)
    if not built.is_file():
        raise RuntimeError(f"the compiler left no {built}")
    return built


# The docker lab's files (docker/) go into the wheel as recorder/lab/docker_files, so an
# installed recorder can run `recorder lab up --backend docker`. Listed file by file here,
# not by pyproject's force-include: that takes a directory whole, and docker/secrets/ holds
# the lab's tokens when a checkout's lab was run from docker/ itself.
DOCKER_DIR = "docker"
DOCKER_FILES = "recorder/lab/docker_files"
DOCKER_SKIP = {"secrets", "__pycache__"}


def docker_files(root: Path) -> dict[str, str]:
    """{source path: path in the wheel} for the docker lab's files."""
    top = root / DOCKER_DIR
    files = {}
    for path in sorted(top.rglob("*")):
        rel = path.relative_to(top)
        if path.is_file() and not DOCKER_SKIP.intersection(rel.parts):
            files[str(path)] = f"{DOCKER_FILES}/{rel.as_posix()}"
    return files


class CounterBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        self.scratch: str | None = None
        if self.target_name != "wheel":
            return
        editable = version == "editable"
        if not editable:  # an editable install finds docker/ in its checkout
            build_data["force_include"].update(docker_files(Path(self.root)))
        if os.environ.get("RECORDER_NO_EXTENSION"):
            if editable:  # one left by an earlier editable build would still be imported
                (Path(self.root) / "probes" / module_file()).unlink(missing_ok=True)
            return
        try:
            if editable:
                built = build(Path(self.root))
            else:  # a wheel never writes into the source tree (an editable install's)
                self.scratch = tempfile.mkdtemp(prefix="recorder-wheel-")
                built = build(Path(self.root), Path(self.scratch))
        except Exception as exc:  # any failure leaves the pure-Python reader, never no wheel
            print(
                f"recorder: the compiled log counter was not built ({exc}); "
                "`recorder logscan` will count in Python (same results, slower)",
                file=sys.stderr,
            )
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if not editable:
            build_data["force_include"][str(built)] = f"probes/{built.name}"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        if getattr(self, "scratch", None):
            shutil.rmtree(str(self.scratch), ignore_errors=True)
