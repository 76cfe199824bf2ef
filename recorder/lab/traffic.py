"""Bounded client traffic to the lab's load balancer, from many loopback addresses.

Each simulated client has its own source address in 127.0.0.0/8 (Linux routes all of it
to `lo`), so nginx's access log holds as many distinct clients as we asked for, and the
report says exactly which clients got what: the true share of users hurt, to compare with
what the recorder works out from the logs.

Traffic is paced at `rps` requests per second in total, request k going to client
k mod N, for `seconds`; every request opens its own connection (as separate users do) and
is bounded by `timeout`. Nothing runs longer than seconds + 2 x timeout.

`python -m recorder.lab.traffic` is the same generator as a command; the lab starts it
detached for `traffic-spike`. With `--from-here` it sends as one client from this
machine's own address, binding none: the docker lab's users service runs it that way
inside the lab network, which loopback source addresses cannot reach.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import math
import os
import socket
import sys
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from recorder.lab.state import LabError, lab_command, load_state
from recorder.lab.templates import SLOW_SECONDS

CLIENT_BASE = "127.100.0.0"  # ordinary users: 127.100.0.1, 127.100.0.2, ...
SPIKE_BASE = "127.200.0.0"  # the burst of traffic-spike, told apart in the logs
HERE = "0.0.0.0"  # bound as a source, the kernel picks the address (--from-here)
MAX_CLIENTS = 60_000
MAX_SECONDS = 3600.0
MAX_RPS = 5000.0
MAX_REQUESTS = 500_000
LATE_LIMIT = 2.0  # seconds past the end before a late sender stops sending
USER_AGENT = "recorder-lab-traffic/1"


@dataclass(frozen=True)
class Result:
    client: str
    status: int | None  # None: no HTTP response at all (see error)
    error: str | None
    latency: float


def client_addresses(count: int, base: str = CLIENT_BASE) -> list[str]:
    """`count` distinct loopback addresses after `base`."""
    if not 1 <= count <= MAX_CLIENTS:
        raise LabError(f"clients must be between 1 and {MAX_CLIENTS}", 2)
    start = ipaddress.IPv4Address(base)
    last = start + count
    if last not in ipaddress.IPv4Network("127.0.0.0/8") or int(last) >= int(
        ipaddress.IPv4Address("127.255.255.255")
    ):
        raise LabError(f"{count} clients after {base} leave 127.0.0.0/8", 2)
    return [str(start + i + 1) for i in range(count)]


def sources(count: int, base: str, from_here: bool) -> list[str]:
    """The source addresses to send from: `count` after `base`, or with `from_here` one,
    left to the kernel (HERE)."""
    if not from_here:
        return client_addresses(count, base)
    if count != 1:
        raise LabError("--from-here sends as one client: --clients must be 1", 2)
    return [HERE]


def _classify(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout"
    if isinstance(exc, ConnectionResetError | http.client.RemoteDisconnected):
        return "reset"
    if isinstance(exc, OSError) and exc.errno == 99:  # EADDRNOTAVAIL: cannot bind source
        return "bind"
    return type(exc).__name__


def send(host: str, port: int, path: str, client: str, timeout: float) -> Result:
    """One GET from `client`'s address; never raises."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection(host, port, timeout=timeout, source_address=(client, 0))
    try:
        conn.request("GET", path, headers={"User-Agent": USER_AGENT, "Connection": "close"})
        response = conn.getresponse()
        response.read()
        return Result(client, response.status, None, time.perf_counter() - start)
    except (OSError, http.client.HTTPException) as exc:
        return Result(client, None, _classify(exc), time.perf_counter() - start)
    finally:
        conn.close()


def generate(
    url: str,
    clients: list[str],
    rps: float,
    seconds: float,
    *,
    timeout: float = 10.0,
    stop: threading.Event | None = None,
) -> list[Result]:
    """Send paced traffic and return every result (bounded in requests and time)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise LabError(f"only http:// URLs are supported, not {url!r}", 2)
    host, port = parts.hostname, parts.port or 80
    path = parts.path or "/"
    total = min(MAX_REQUESTS, max(1, math.ceil(rps * seconds)))
    # Enough workers to keep the pace when each answer takes a few seconds (slow-backend).
    workers = max(8, min(256, math.ceil(rps * 4)))
    futures: list[Future[Result]] = []
    start = time.monotonic()
    deadline = start + seconds
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lab-traffic") as pool:
        for k in range(total):
            due = start + k / rps
            now = time.monotonic()
            if due > now:
                if stop is not None:
                    if stop.wait(due - now):
                        break
                else:
                    time.sleep(due - now)
            # Every request due before the deadline is sent, late or not: a count that
            # depends on the scheduler makes the lab's truth (and its tests) wobble. Only a
            # loop far behind its pace (a starved machine) gives up on the rest.
            if time.monotonic() > deadline + LATE_LIMIT and k:
                break
            futures.append(pool.submit(send, host, port, path, clients[k % len(clients)], timeout))
        wait(futures, timeout=2 * timeout + 1)
    return [f.result() for f in futures]


def _class(result: Result) -> str:
    return "error" if result.status is None else f"{result.status // 100}xx"


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return round(sorted_values[index], 4)


def summarize(
    results: list[Result],
    *,
    url: str,
    rps: float,
    started: datetime,
    ended: datetime,
    slow: float = SLOW_SECONDS,
) -> dict[str, Any]:
    """The report: totals, status classes, and per-client outcomes.

    clients_with_5xx counts clients that got at least one 5xx; clients_affected also
    counts those that got no answer at all (refused, reset, timeout), which no access log
    can show; affected_ratio is clients_affected / clients. clients_slow counts those that
    got at least one answer after more than `slow` seconds (the lab's bar for slow: the
    truth of slow-backend's affected share).
    """
    per_client: dict[str, dict[str, int]] = {}
    for r in results:
        entry = per_client.setdefault(
            r.client,
            {"requests": 0, "2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0, "error": 0, "slow": 0},
        )
        entry["requests"] += 1
        entry[_class(r)] += 1
        entry["slow"] += r.status is not None and r.latency > slow
    classes = Counter(_class(r) for r in results)
    with_5xx = sum(1 for c in per_client.values() if c["5xx"])
    with_errors = sum(1 for c in per_client.values() if c["error"])
    affected = sum(1 for c in per_client.values() if c["5xx"] or c["error"])
    n_clients = len(per_client)
    with_slow = sum(1 for c in per_client.values() if c["slow"])
    duration = max((ended - started).total_seconds(), 1e-6)
    latencies = sorted(r.latency for r in results if r.status is not None)
    return {
        "url": url,
        "started_at": started.isoformat(timespec="milliseconds"),
        "ended_at": ended.isoformat(timespec="milliseconds"),
        "duration_seconds": round(duration, 3),
        "rps_target": rps,
        "rps_achieved": round(len(results) / duration, 2),
        "requests": len(results),
        "clients": n_clients,
        "status_classes": {k: classes.get(k, 0) for k in ("2xx", "3xx", "4xx", "5xx", "error")},
        "statuses": {
            str(s): n for s, n in sorted(Counter(r.status for r in results if r.status).items())
        },
        "errors": dict(sorted(Counter(r.error for r in results if r.error).items())),
        "clients_with_5xx": with_5xx,
        "clients_with_errors": with_errors,
        "clients_affected": affected,
        "clients_with_5xx_ratio": round(with_5xx / n_clients, 4) if n_clients else 0.0,
        "affected_ratio": round(affected / n_clients, 4) if n_clients else 0.0,
        "slow_above": slow,
        "clients_slow": with_slow,
        "clients_slow_ratio": round(with_slow / n_clients, 4) if n_clients else 0.0,
        "latency_seconds": {
            "p50": _percentile(latencies, 0.5),
            "p95": _percentile(latencies, 0.95),
            "max": round(latencies[-1], 4) if latencies else 0.0,
        },
        "per_client": dict(sorted(per_client.items(), key=lambda kv: ipaddress.ip_address(kv[0]))),
    }


def check_bounds(clients: int, rps: float, seconds: float) -> None:
    if not 1 <= clients <= MAX_CLIENTS:
        raise LabError(f"--clients must be between 1 and {MAX_CLIENTS}", 2)
    if not 0 < rps <= MAX_RPS:
        raise LabError(f"--rps must be above 0 and at most {MAX_RPS:g}", 2)
    if not 0 < seconds <= MAX_SECONDS:
        raise LabError(f"--seconds must be above 0 and at most {MAX_SECONDS:g}", 2)


def traffic_to(
    url: str,
    clients: int,
    rps: float,
    seconds: float,
    *,
    base: str = CLIENT_BASE,
    timeout: float = 10.0,
    stop: threading.Event | None = None,
    from_here: bool = False,
) -> dict[str, Any]:
    """Traffic to any URL, reported (what run_traffic does for a lab). `from_here`: one
    client, whatever address the kernel picks for the route (`clients` must be 1)."""
    check_bounds(clients, rps, seconds)
    addresses = sources(clients, base, from_here)
    started = datetime.now(UTC)
    results = generate(url, addresses, rps, seconds, timeout=timeout, stop=stop)
    return summarize(results, url=url, rps=rps, started=started, ended=datetime.now(UTC))


def run_traffic(
    lab_dir: str | os.PathLike[str],
    clients: int = 20,
    rps: float = 10.0,
    seconds: float = 10.0,
    *,
    timeout: float = 10.0,
    base: str = CLIENT_BASE,
) -> dict[str, Any]:
    """Traffic to the lab's load balancer (lb-01), from `clients` loopback addresses."""
    state = load_state(Path(lab_dir).absolute())
    if state is None:
        raise LabError(f"no lab in {lab_dir} (run `{lab_command('up', lab_dir)}` first)", 2)
    if not state.get("up"):
        up = lab_command("up", lab_dir, state.get("backend", "local"))
        raise LabError(f"the lab in {lab_dir} is not up (run `{up}`)", 2)
    url = state["hosts"]["lb-01"]["url"]
    return traffic_to(url, clients, rps, seconds, base=base, timeout=timeout)


def main(argv: list[str] | None = None) -> int:
    """`python -m recorder.lab.traffic`: the generator as a command (JSON on stdout)."""
    parser = argparse.ArgumentParser(description="Bounded HTTP traffic from loopback clients.")
    parser.add_argument("--url", required=True)
    parser.add_argument("--clients", type=int, help="default 20 (1 with --from-here)")
    parser.add_argument("--rps", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--base", default=CLIENT_BASE)
    parser.add_argument(
        "--from-here",
        action="store_true",
        help="one client, from this machine's own address (no source address bound)",
    )
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--detach", action="store_true", help="run in the background")
    parser.add_argument("--pid-file")
    parser.add_argument("--log", default=os.devnull)
    parser.add_argument("--report", help="write the JSON report here instead of stdout")
    args = parser.parse_args(argv)
    clients = args.clients if args.clients is not None else 1 if args.from_here else 20
    try:
        check_bounds(clients, args.rps, args.seconds)
        sources(clients, args.base, args.from_here)
    except LabError as exc:
        print(f"lab traffic: {exc}", file=sys.stderr)
        return 2
    if args.detach:
        if not args.pid_file:
            print("lab traffic: --detach needs --pid-file", file=sys.stderr)
            return 2
        from recorder.lab.app import daemonize

        daemonize(args.pid_file, args.log)  # before any thread exists: fork is safe here
    report = traffic_to(
        args.url,
        clients,
        args.rps,
        args.seconds,
        base=args.base,
        timeout=args.timeout,
        from_here=args.from_here,
    )
    report.pop("per_client")
    text = json.dumps(report, indent=2)
    if args.report:
        Path(args.report).write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
