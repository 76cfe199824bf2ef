"""The lab's application: the process behind each web server's nginx.

A tiny threaded HTTP server (stdlib only, so the docker web image runs this same file
with the system python3). It answers 200 unless a fault file says otherwise; it re-reads
that file when it changes, so injecting or fixing an app fault needs no restart:

    {"backend-5xx": {"error_rate": 0.3},
     "slow-backend": {"delay": 3.0, "rate": 1.0}}

Which requests fail is decided per *client*, not at random: the client address (the
`X-Real-IP` nginx passes on, else the peer) is hashed into [0, 1) and a client whose
bucket is below the rate always fails, the others never do. That is what "certain
conditions hit some users and not others" looks like from the outside, and it makes the
true affected share knowable.

Run: `python3 app.py --port 8000 --name web-01 --faults /var/lib/lab-app/faults.json`
(`--daemon --pid-file F --log F` to detach, as the local lab does).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def client_bucket(client: str, salt: str = "errors") -> float:
    """Where a client falls in [0, 1): the same client always lands in the same place."""
    digest = hashlib.sha256(f"{salt}:{client}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def client_fails(client: str, rate: float) -> bool:
    """Whether an error fault at `rate` hits this client (the one rule the app applies)."""
    return client_bucket(client, "errors") < rate


def client_delayed(client: str, rate: float) -> bool:
    return client_bucket(client, "delay") < rate


class FaultFile:
    """The fault file, re-read only when its size or mtime changes (checked per request)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._key: tuple[int, int, int] | None = None
        self._faults: dict[str, Any] = {}

    def current(self) -> dict[str, Any]:
        try:
            st = os.stat(self.path)
        except OSError:
            return {}
        key = (st.st_ino, st.st_mtime_ns, st.st_size)  # writers replace the file
        with self._lock:
            if key != self._key:
                try:
                    with open(self.path, encoding="utf-8") as f:
                        data = json.load(f)
                except (OSError, ValueError):
                    data = {}  # a half-written file is never served: writers rename atomically
                self._faults = data if isinstance(data, dict) else {}
                self._key = key
            return self._faults


def decide(faults: dict[str, Any], client: str) -> tuple[int, float]:
    """The status and delay this client gets under these faults."""
    status, delay = 200, 0.0
    for spec in faults.values():
        if not isinstance(spec, dict):
            continue
        error_rate = float(spec.get("error_rate", 0.0))
        if error_rate > 0 and client_fails(client, error_rate):
            status = 500
        seconds = float(spec.get("delay", 0.0))
        if seconds > 0 and client_delayed(client, float(spec.get("rate", 1.0))):
            delay = max(delay, seconds)
    return status, delay


def make_handler(name: str, faults: FaultFile) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "lab-app/1"
        protocol_version = "HTTP/1.0"

        def _client(self) -> str:
            real = self.headers.get("X-Real-IP")
            if real:
                return real.strip()
            forwarded = self.headers.get("X-Forwarded-For")
            if forwarded:
                return forwarded.split(",")[0].strip()
            return str(self.client_address[0])

        def _answer(self, with_body: bool) -> None:
            client = self._client()
            status, delay = decide(faults.current(), client)
            if delay:
                time.sleep(delay)
            if status == 200:
                body = f"example site, served by {name}\n".encode()
            else:
                body = f"Internal Server Error ({name}: unhandled exception)\n".encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Served-By", name)
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (the stdlib's naming)
            self._answer(True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(False)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # nginx's access logs are the record; the app stays quiet

    return Handler


def daemonize(pid_file: str, log_file: str) -> None:
    """Detach: the parent writes the child's pid and exits; the child carries on.

    Sockets are bound before this, so when the parent exits the service already accepts
    connections. The child is not the caller's child, so no one has to reap it.
    """
    pid = os.fork()
    if pid > 0:
        tmp = f"{pid_file}.tmp"
        with open(tmp, "w", encoding="ascii") as f:
            f.write(f"{pid}\n")
        os.replace(tmp, pid_file)
        os._exit(0)
    os.setsid()
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.close(null)


def server_parser(description: str) -> argparse.ArgumentParser:
    """The options every lab server takes (this app and the webhook sink)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--daemon", action="store_true")
    parser.add_argument("--pid-file")
    parser.add_argument("--log", default=os.devnull)
    return parser


class _Server(ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: a burst through lb-01 (the 51 requests
    # traffic-spike's limit_req lets pass at once) overflowed it, and each dropped SYN
    # waited a second for its retry, so the app, not the lab's limits, set the latency.
    request_queue_size = 128


def serve(prog: str, args: argparse.Namespace, handler: type[BaseHTTPRequestHandler]) -> int:
    """Bind, detach when asked (after binding, so the port answers once `up` returns), and
    serve until stopped; the exit code."""
    try:
        server = _Server((args.bind, args.port), handler)
    except OSError as exc:
        print(f"{prog}: cannot listen on {args.bind}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    server.daemon_threads = True
    if args.daemon:
        if not args.pid_file:
            print(f"{prog}: --daemon needs --pid-file", file=sys.stderr)
            return 2
        daemonize(args.pid_file, args.log)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = server_parser("The fault lab's application server.")
    parser.add_argument("--name", required=True)
    parser.add_argument("--faults", required=True, help="the fault file (JSON)")
    args = parser.parse_args(argv)
    return serve("lab-app", args, make_handler(args.name, FaultFile(args.faults)))


if __name__ == "__main__":
    sys.exit(main())
