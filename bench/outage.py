"""Engine CPU while many hosts of one service are down (issue 22 item 3): what does a quiet
second cost the incident book once the outage has settled?

    python bench/outage.py                          # 200 hosts, 20 measured seconds
    python bench/outage.py --peer /tmp/before       # and the same against another checkout
    python bench/outage.py --smoke                  # 20 hosts, 3 seconds

One service of N hosts, each the service's entry point (no load balancer), each with an
`http` check; every host's check fails (`port-closed`), so one incident holds them all. The
engine's part is run in a child process of each checkout (`python -c`, that checkout's
sources first on PYTHONPATH, this venv's packages), over a real store in a fresh state
dir: the detector and the incident book fed one observation per host per simulated second,
then a tick, as the daemon's engine thread does. After 15 seconds to settle, the CPU time
(process_time) of the next S seconds is measured, in milliseconds per simulated second.
Two rounds, the peer first in each, so the machine's load hits both alike.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import benchlib as bl

SETTLE = 15  # simulated seconds before measuring: the incident open, the ranking settled

# Run in the child, against the checkout first on its path.
CHILD = """
import json, sys, time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from probes.base import Fault, Observation, Status
from recorder.config import parse_config
from recorder.detector import Detector
from recorder.incidents import IncidentBook
from recorder.store import Store

state, n, seconds, settle = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
hosts = [f"web-{i:04d}" for i in range(n)]
config = parse_config({
    "state_dir": str(state),
    "services": {"web": {"hosts": hosts}},
    "hosts": {h: {"local": {"prefix": "/"}} for h in hosts},
    "checks": [{"hosts": hosts, "probes": {"http": {"url": "http://{address}/"}}}],
})
now = datetime(2026, 11, 23, 12, tzinfo=UTC)
book = IncidentBook(config, Store(state), clock=lambda: now)
detector = Detector()

def second():
    global now
    for host in hosts:
        obs = Observation(host=host, probe="http", status=Status.FAIL, fault=Fault.PORT_CLOSED,
                          summary="connection refused", details={}, at=now)
        book.observe(obs)
        for sig in detector.observe(obs, 0.0, 5.0):
            book.on_signal(sig)
    book.tick()
    now += timedelta(seconds=1)

for _ in range(settle):
    second()
cpu = time.process_time()
for _ in range(seconds):
    second()
ms = (time.process_time() - cpu) * 1000 / seconds
print(json.dumps({"ms_per_second": ms, "open": len(book.open_incidents())}))
"""


def measure(checkout: Path, hosts: int, seconds: int, scratch: Path) -> dict[str, Any]:
    state = Path(bl.scratch_dir("outage-state"))
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    try:
        out = subprocess.run(
            [bl.PYTHON, "-c", CHILD, str(state), str(hosts), str(seconds), str(SETTLE)],
            env=env,
            cwd=scratch,
            capture_output=True,
            text=True,
            timeout=1800,
        )
    finally:
        bl.remove_scratch(state)
    if out.returncode != 0:
        raise SystemExit(f"{checkout}: the engine run failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if result["open"] != 1:
        raise SystemExit(f"{checkout}: {result['open']} open incidents, expected one")
    return result


def main() -> int:
    p = bl.parser(__doc__.split("\n\n")[0])
    p.add_argument("--hosts", type=int, help="hosts of the service (default 200, smoke 20)")
    p.add_argument("--seconds", type=int, help="measured seconds (default 20, smoke 3)")
    p.add_argument("--peer", type=Path, help="another checkout to measure in the same run")
    args = p.parse_args()
    bl.stop_on_sigterm()
    hosts = args.hosts or (20 if args.smoke else 200)
    seconds = args.seconds or (3 if args.smoke else 20)
    sides = ([("peer", args.peer.resolve())] if args.peer else []) + [("this", bl.REPO)]
    print(bl.machine_line())
    print(f"{hosts} hosts of one service down, {seconds} quiet seconds measured, 2 rounds")
    scratch = bl.scratch_dir("outage")
    results: dict[str, list[float]] = {name: [] for name, _ in sides}
    try:
        for _ in range(2):
            for name, checkout in sides:
                results[name].append(measure(checkout, hosts, seconds, scratch)["ms_per_second"])
    finally:
        bl.remove_scratch(scratch)
    rows = [
        [name, str(checkout), *(f"{ms:.0f}" for ms in results[name])] for name, checkout in sides
    ]
    print(bl.table(("side", "checkout", "round 1 ms/s", "round 2 ms/s"), rows))
    print("engine CPU per quiet second (process_time), ms")
    saved = bl.save_results(
        args.out,
        "outage",
        {"smoke": args.smoke, "hosts": hosts, "seconds": seconds, "ms_per_second": results},
    )
    print(f"results: {saved}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
