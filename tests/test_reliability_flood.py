"""A flood of unauthenticated webhook requests with large bodies against the real daemon
(#22.1): hundreds of connections each sending the webhook's headers and then a body over
waitress' 512 KiB spill size, slowly, and reconnecting when dropped. They must cost the
daemon no more than a socket each for a moment: no temporary files, open descriptors
bounded well below its limit, `/healthz` answering throughout, no incident opened.

The daemon runs with its descriptor limit at 1024 (soft and hard), the usual default the
flood exhausted; the clients run in their own process.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from recorder.api import CONNECTION_LIMIT
from tests.conftest import free_port
from tests.test_reliability_daemon import (
    RECORDER,
    DaemonProcess,
    RecordingSite,
    webhook_config,
)

FLOOD_SCRIPT = r"""
import asyncio, json, resource, sys, time
port, seconds, clients = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
body_sent, declared = int(sys.argv[4]), int(sys.argv[5])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
head = (
    "POST /api/v1/alertmanager HTTP/1.1\r\nHost: recorder\r\n"
    "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % declared
).encode()
chunk = b"x" * 65536
# answered: the server's answer was read; dropped: the server closed or reset the
# connection (a refusal cut off mid-body); held: still open when the run ended.
done = {"connections": 0, "answered": 0, "dropped": 0, "held": 0, "connect_failed": 0,
        "statuses": {}}

async def attacker(i):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port), 5
            )
        except Exception:
            done["connect_failed"] += 1
            await asyncio.sleep(0.2)
            continue
        done["connections"] += 1
        try:
            writer.write(head)
            sent = 0
            while sent < body_sent and time.monotonic() < end:
                writer.write(chunk[: min(len(chunk), body_sent - sent)])
                await writer.drain()
                sent += len(chunk)
                await asyncio.sleep(0.02)
            # Hold the connection (the body is never finished) until the server answers
            # or drops it, or the run ends.
            while True:
                if time.monotonic() >= end:
                    done["held"] += 1
                    break
                try:
                    data = await asyncio.wait_for(reader.read(4096), 1.0)
                except asyncio.TimeoutError:
                    continue
                if data:
                    status = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "?"
                    done["statuses"][status] = done["statuses"].get(status, 0) + 1
                    done["answered"] += 1
                else:
                    done["dropped"] += 1
                break
        except Exception:
            done["dropped"] += 1
        finally:
            writer.close()
        await asyncio.sleep(0.1)

async def main():
    await asyncio.gather(*(attacker(i) for i in range(clients)))
    print(json.dumps(done), flush=True)

asyncio.run(main())
"""


def _fds(pid: int) -> tuple[int, int]:
    """(open descriptors, of which not sockets) of a process."""
    total = files = 0
    directory = f"/proc/{pid}/fd"
    for name in os.listdir(directory):
        try:
            target = os.readlink(f"{directory}/{name}")
        except OSError:
            continue  # closed while listing
        total += 1
        if not target.startswith(("socket:", "pipe:", "anon_inode:")):
            files += 1
    return total, files


class LimitedDaemon(DaemonProcess):
    """The daemon with RLIMIT_NOFILE at `nofile` (soft and hard), as under a default
    systemd unit or shell limit."""

    nofile = 1024

    def start(self) -> None:
        nofile = self.nofile

        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [RECORDER, "--config", str(self.config), "run", "--log-level", self.level],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=limit,
            )
        self.started_at = time.monotonic()


@pytest.fixture
def site() -> Iterator[RecordingSite]:
    s = RecordingSite().start()
    yield s
    s.stop()


@pytest.mark.slow
def test_unauthenticated_large_bodies_cost_no_descriptors(
    tmp_path: Path, site: RecordingSite
) -> None:
    seconds = float(os.environ.get("RELIABILITY_FLOOD_SECONDS", "12"))
    port = free_port()
    config = webhook_config(tmp_path, port, site.url, "flood-test-token-0123456789")
    daemon = LimitedDaemon(config, tmp_path / "daemon.log", port)
    try:
        daemon.start()
        daemon.wait_healthy()
        assert daemon.proc is not None
        pid = daemon.proc.pid
        time.sleep(1.0)  # a few probe rounds: the descriptors the daemon keeps anyway
        base_total, base_files = max(_fds(pid) for _ in range(5))

        samples: list[tuple[int, int]] = []
        health: list[tuple[float, int, str]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                try:
                    samples.append(_fds(pid))
                except OSError:
                    pass
                stop.wait(0.05)

        def check_health() -> None:
            while not stop.is_set():
                t0 = time.monotonic()
                status, body = daemon.get("/healthz", timeout=3.0)
                health.append((time.monotonic() - t0, status, body[:120]))
                stop.wait(0.5)

        script = tmp_path / "flood.py"
        script.write_text(FLOOD_SCRIPT)
        flood = subprocess.Popen(
            [sys.executable, str(script), str(port), str(seconds), "600", "600000", "700000"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        watchers = [threading.Thread(target=sample), threading.Thread(target=check_health)]
        for watcher in watchers:
            watcher.start()
        try:
            output, _ = flood.communicate(timeout=seconds + 60)
        finally:
            stop.set()
            for watcher in watchers:
                watcher.join(10)
            if flood.poll() is None:
                flood.kill()
                flood.wait()
        text = output.decode(errors="replace")
        assert '"connections"' in text, text
        report = json.loads(text.strip().splitlines()[-1])
        peak_total = max(total for total, _ in samples)
        peak_files = max(files for _, files in samples)
        print(
            f"flood: {report}; descriptors before {base_total} ({base_files} files), "
            f"peak {peak_total} ({peak_files} files); /healthz worst "
            f"{max(h[0] for h in health):.2f}s over {len(health)} checks"
        )
        assert report["connections"] >= 600, report
        # The server ended the connections (a refusal, or cut off mid-body) instead of
        # holding them while their bodies came in: at most the last round is left open.
        assert report["answered"] + report["dropped"] >= report["connections"] - 600, report
        # No body was buffered: no temporary file, whatever the flood.
        assert peak_files <= base_files + 4, (peak_files, base_files)
        # At most a socket per connection the server holds, and far from the limit.
        assert peak_total <= base_total + CONNECTION_LIMIT + 16, (peak_total, base_total)
        # Whatever answer a client could read before the server cut it off was a 401.
        assert set(report["statuses"]) <= {"401"}, report
        failed = [h for h in health if h[1] != 200]
        assert not failed, failed[:5]
        assert daemon.running, daemon.tail()
        status, body = daemon.get("/api/v1/incidents")
        assert status == 200 and json.loads(body) == [], body[:500]
        refusals = daemon.metrics()['recorder_webhook_refusals_total{reason="unauthorized"}']
        assert refusals >= report["answered"] + report["dropped"] / 2, (refusals, report)
        log = daemon.log.read_text(errors="replace")
        assert "Traceback" not in log, daemon.tail()
    finally:
        daemon.stop()
