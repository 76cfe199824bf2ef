"""A container reached with `docker exec` (the docker lab, or nginx in a container)."""

from __future__ import annotations

import stat as stat_module
from collections.abc import Sequence

from probes.base import CommandResult, FileStat, HostUnreachable
from recorder.hosts.local import run_bounded, run_raw
from recorder.hosts.statcmd import parse_stat, stat_argv

# Exit codes of coreutils inside the container that mean "no such file", told apart from
# docker's own failures (125: docker could not run; 126/127: command not runnable).
_DOCKER_FAILURES = {125, 126, 127}


class DockerHost:
    def __init__(
        self,
        name: str,
        container: str,
        docker: str = "docker",
        address: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.container = container
        self.docker = docker
        self.address = address or container
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"DockerHost({self.name!r}, container={self.container!r})"

    def real_path(self, path: str) -> str:
        return path

    def run(self, argv: Sequence[str], timeout: float) -> CommandResult:
        result = run_bounded([self.docker, "exec", "-i", self.container, *argv], timeout, self.name)
        if (
            result.exit_code in _DOCKER_FAILURES
            and "Error" in result.stderr
            and "container" in result.stderr
        ):
            raise HostUnreachable(f"{self.name}: {result.stderr.strip()}")
        return result

    def _file_cmd(self, argv: Sequence[str], path: str) -> CommandResult:
        result = self.run(argv, self.timeout)
        if result.exit_code != 0:
            self._raise_for(result.stderr, argv[0], path)
        return result

    def _raise_for(self, stderr: str, cmd: str, path: str) -> None:
        if "No such file" in stderr or "cannot stat" in stderr:
            raise FileNotFoundError(2, "No such file or directory", path)
        if "Permission denied" in stderr:
            raise PermissionError(13, "Permission denied", path)
        if "Not a directory" in stderr:
            raise NotADirectoryError(20, "Not a directory", path)
        raise HostUnreachable(f"{self.name}: {cmd} {path}: {stderr.strip()}")

    def read_text(self, path: str, limit: int = 16 * 1024 * 1024) -> str:
        return self._file_cmd(["head", "-c", str(limit), "--", path], path).stdout

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        # tail -c +N is 1-based; head bounds the length. Binary-safe only as far as
        # UTF-8 decoding with replacement allows, which the log reader tolerates.
        # tail -c +N is 1-based; head bounds the length. The script is a constant: the
        # path and numbers travel as positional arguments, never inside the string.
        # `exec <"$2"` first: a missing file fails the script (tail | head would exit 0).
        script = 'exec <"$2" && tail -c +"$1" | head -c "$3"'
        argv = [
            self.docker,
            "exec",
            "-i",
            self.container,
            "sh",
            "-c",
            script,
            "sh",
            str(offset + 1),
            path,
            str(length),
        ]
        code, out, err = run_raw(argv, self.timeout, self.name)
        if code != 0:
            self._raise_for(err.decode("utf-8", "replace"), "tail", path)
        return out

    def _stat(self, path: str, follow: bool) -> FileStat:
        return parse_stat(self.run(stat_argv(path, follow), self.timeout), self.name, path)

    def stat(self, path: str) -> FileStat:
        return self._stat(path, follow=True)

    def lstat(self, path: str) -> FileStat:
        return self._stat(path, follow=False)

    def readlink(self, path: str) -> str:
        st = self.lstat(path)
        if not stat_module.S_ISLNK(st.mode):
            raise OSError(22, "Invalid argument", path)
        return self._file_cmd(["readlink", "--", path], path).stdout.rstrip("\n")

    def listdir(self, path: str) -> list[str]:
        # NUL-separated (`ls` output cannot tell a newline in a name from the next name).
        # The trailing slash makes a file an error ("Not a directory") instead of an
        # empty list, and a leading "./" keeps a relative path from reading as an option.
        start = (path if path.startswith("/") else "./" + path).rstrip("/") + "/"
        argv = ["find", start, "-mindepth", "1", "-maxdepth", "1", "-printf", "%f\\0"]
        out = self._file_cmd(argv, path).stdout
        return sorted(name for name in out.split("\0") if name)
