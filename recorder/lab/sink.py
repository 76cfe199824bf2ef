"""The lab's webhook sink: a loopback HTTP server the lab's recorder.yml routes incidents to.

What a real webhook receiver does, in a few lines, so the lab shows the whole path from a
fault to a message: it checks the HMAC-SHA256 signature over the timestamp and body
(docs/notifications.md) and the timestamp's age, and appends every message it accepts to
a JSON Lines file, one object a line: `{"received_at": ISO, "delivery_id": ..., "event":
..., "body": {...}}`. A request with a bad signature is answered 401 and not kept.

Stdlib only and run as a file, like app.py (`python3 -I sink.py`), so it starts fast.
Run: `python3 sink.py --port P --secret-file F --out messages.jsonl`
(`--daemon --pid-file F --log F` to detach, as `recorder lab up` does).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

TOLERANCE = 300  # seconds; the recorder's documented replay window
MAX_BODY = 1 << 20  # a webhook message is a few KiB; refuse anything far larger unread


def verify(secret: bytes, timestamp: str, body: bytes, signature: str, now: float) -> str:
    """Why the request is refused, or "" when its signature and timestamp are good."""
    if not timestamp.isdigit() or abs(now - int(timestamp)) > TOLERANCE:
        return "stale or missing timestamp"
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    if not hmac.compare_digest("sha256=" + mac.hexdigest(), signature):
        return "bad signature"
    return ""


def make_handler(secret: bytes, out: str) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()  # one line at a time, so concurrent deliveries never interleave

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, text: str) -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802 (the stdlib's naming)
            length = self.headers.get("Content-Length", "")
            if not length.isdigit() or int(length) > MAX_BODY:
                self._answer(413, "body missing or too large\n")
                return
            body = self.rfile.read(int(length))
            why = verify(
                secret,
                self.headers.get("X-Recorder-Timestamp", ""),
                body,
                self.headers.get("X-Recorder-Signature-256", ""),
                time.time(),
            )
            if why:
                print(f"lab-sink: refused a message: {why}", file=sys.stderr, flush=True)
                self._answer(401, why + "\n")
                return
            try:
                message = json.loads(body)
            except ValueError:
                self._answer(400, "not JSON\n")
                return
            record = {
                "received_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "delivery_id": self.headers.get("X-Recorder-Delivery"),
                "event": message.get("event") if isinstance(message, dict) else None,
                "body": message,
            }
            with lock, open(out, "a", encoding="utf-8") as f:
                f.write(json.dumps(record, sort_keys=True) + "\n")
            self._answer(200, "ok\n")

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the messages file is the record

    return Handler


def main(argv: list[str] | None = None) -> int:
    # app.py's option parsing and serving, loaded from beside this file: both run as plain
    # files (no package import, which would cost the lab's start-up most of a second).
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from app import serve, server_parser  # type: ignore[import-not-found]

    parser = server_parser("The fault lab's webhook sink.")
    parser.add_argument("--secret-file", required=True)
    parser.add_argument("--out", required=True, help="messages are appended here (JSON Lines)")
    args = parser.parse_args(argv)
    try:
        with open(args.secret_file, "rb") as f:
            secret = f.read().strip()
    except OSError as exc:
        print(f"lab-sink: cannot read {args.secret_file}: {exc.strerror}", file=sys.stderr)
        return 1
    return int(serve("lab-sink", args, make_handler(secret, args.out)))


if __name__ == "__main__":
    sys.exit(main())
