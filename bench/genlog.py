"""Generate a realistic nginx access log in the combined format, deterministically.

    python bench/genlog.py OUT.log --lines 2000000 --seed 8

Realistic where it matters to a log reader: IPv4 and IPv6 clients with a long-tailed
popularity (a few busy clients, many rare ones), authenticated users now and then, real
paths with query strings, referers, user agents with spaces, parentheses and escaped
quotes (both `\\"`, as Apache and nginx's `escape=json` write it, and `\\x22`, nginx's
default), status codes from 200 to 504 with 5-10% 5xx concentrated in two "incident"
stretches, sizes from 0 to megabytes, and times that move forward through one day.

The generator keeps a ledger of what it wrote (requests per status class, distinct
clients, clients that got a 5xx) in OUT.json beside the log. The ledger is the
independent reference the throughput benchmark checks every reader against: it is
counted from the values chosen, never by parsing the file. A log that already exists with
a ledger for the same lines and seed is reused.
"""

from __future__ import annotations

import itertools
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

FORMAT_VERSION = 3  # bump when the output changes, so cached logs are regenerated
BATCH = 10_000
START = 1795392000  # 2026-11-23T00:00:00Z

METHODS = (("GET", 86), ("POST", 9), ("HEAD", 3), ("PUT", 1), ("DELETE", 1))
PROTOCOLS = (("HTTP/1.1", 70), ("HTTP/2.0", 28), ("HTTP/1.0", 2))
USERS = (("-", 97), ("alice", 2), ("svc-backup", 1))

# (status, weight) in normal times and during the two incident stretches.
STATUS_NORMAL = (
    (200, 780),
    (204, 10),
    (206, 5),
    (301, 25),
    (302, 20),
    (304, 60),
    (400, 5),
    (401, 6),
    (403, 4),
    (404, 50),
    (429, 5),
    (500, 15),
    (502, 8),
    (503, 5),
    (504, 2),
)
STATUS_INCIDENT = (
    (200, 500),
    (304, 30),
    (404, 30),
    (500, 250),
    (502, 120),
    (503, 60),
    (504, 10),
)
# Share of the day (start, end) spent in an incident: about 11% of all requests.
INCIDENTS = ((0.31, 0.37), (0.72, 0.77))

USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7_1) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    'Mozilla/5.0 (compatible; \\"ScanBot\\" 3.2; +https://scan.example/bot \\"beta\\")',
    "curl/8.5.0",
    "python-requests/2.32.3",
    "Go-http-client/1.1 \\x22monitor\\x22 (probe \\x22eu-west\\x22)",
    "Prometheus/2.55.1",
    "-",
)
UA_WEIGHTS = (30, 18, 10, 14, 12, 4, 2, 3, 3, 1, 1, 2)

REFERERS = (
    "-",
    "https://www.example.com/",
    "https://www.example.com/products?category=shoes&page=2",
    "https://www.google.com/search?q=example+shoes+sale",
    "https://t.co/AbCdEf123",
    'https://forum.example/thread?title=\\"best\\"+deals',
)
REFERER_WEIGHTS = (50, 20, 12, 12, 4, 2)


def _paths(rnd: random.Random) -> list[str]:
    paths = ["/", "/favicon.ico", "/robots.txt", "/healthz", "/login", "/cart", "/checkout"]
    paths += [f"/static/{name}" for name in ("app.3f9a1c.js", "main.8b2e.css", "logo.svg")]
    paths += [f"/products/{slug}" for slug in ("red-shoes", "blue-jacket", "wool-socks")]
    paths += [f"/api/v1/items/{rnd.randrange(1, 99999)}" for _ in range(40)]
    paths += [f"/api/v1/search?q=term{i}&page={i % 7 + 1}&sort=price" for i in range(30)]
    paths += [f"/images/{rnd.randrange(10**6):06d}.jpg?w=640&h=480" for _ in range(30)]
    paths += ["/wp-login.php", "/.env", "/admin/../../etc/passwd", "/search?q=%22quoted%22"]
    return paths


def _clients(rnd: random.Random, count: int) -> list[str]:
    """Distinct client addresses, about a fifth of them IPv6."""
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < count:
        if rnd.random() < 0.2:
            addr = (
                f"2001:db8:{rnd.randrange(1, 0xFFFF):x}:{rnd.randrange(0xFFFF):x}"
                f"::{rnd.randrange(1, 0xFFFF):x}"
            )
        else:
            first = rnd.choice((23, 41, 62, 81, 95, 103, 141, 176, 185, 197, 203, 212))
            addr = f"{first}.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"
        if addr not in seen:
            seen.add(addr)
            out.append(addr)
    return out


def _cum(weights: Any) -> list[float]:
    return list(itertools.accumulate(float(w) for w in weights))


def generate(path: Path, lines: int, seed: int) -> dict[str, Any]:
    """Write the log and return its ledger (also written to PATH.json)."""
    rnd = random.Random(seed)
    pool = _clients(rnd, max(50, lines // 20))
    # Long-tailed popularity: client i is chosen with weight 1/(i+1)^0.9.
    client_cum = _cum(1.0 / (i + 1) ** 0.9 for i in range(len(pool)))
    paths = _paths(rnd)
    path_cum = _cum(1.0 / (i + 1) ** 0.7 for i in range(len(paths)))
    sizes = [0] + [int(rnd.lognormvariate(8.5, 1.6)) for _ in range(999)]
    methods, method_cum = [m for m, _ in METHODS], _cum(w for _, w in METHODS)
    protocols, proto_cum = [p for p, _ in PROTOCOLS], _cum(w for _, w in PROTOCOLS)
    users, user_cum = [u for u, _ in USERS], _cum(w for _, w in USERS)
    normal, normal_cum = [s for s, _ in STATUS_NORMAL], _cum(w for _, w in STATUS_NORMAL)
    incident, incident_cum = [s for s, _ in STATUS_INCIDENT], _cum(w for _, w in STATUS_INCIDENT)
    ua_cum, ref_cum = _cum(UA_WEIGHTS), _cum(REFERER_WEIGHTS)

    classes: Counter[str] = Counter()
    seen: set[int] = set()
    with_5xx: set[int] = set()
    stamps: dict[int, str] = {}
    step = 86400.0 / max(lines, 1)
    escaped = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="ascii", newline="\n") as out:
        # Batches small enough that even a short log passes through both incidents.
        batch = min(BATCH, max(100, lines // 100))
        for first in range(0, lines, batch):
            k = min(batch, lines - first)
            share = first / max(lines, 1)
            in_incident = any(a <= share < b for a, b in INCIDENTS)
            codes, codes_cum = (incident, incident_cum) if in_incident else (normal, normal_cum)
            who = rnd.choices(range(len(pool)), cum_weights=client_cum, k=k)
            statuses = rnd.choices(codes, cum_weights=codes_cum, k=k)
            uas = rnd.choices(range(len(USER_AGENTS)), cum_weights=ua_cum, k=k)
            refs = rnd.choices(REFERERS, cum_weights=ref_cum, k=k)
            chosen_paths = rnd.choices(paths, cum_weights=path_cum, k=k)
            chosen_methods = rnd.choices(methods, cum_weights=method_cum, k=k)
            chosen_protos = rnd.choices(protocols, cum_weights=proto_cum, k=k)
            chosen_users = rnd.choices(users, cum_weights=user_cum, k=k)
            chosen_sizes = rnd.choices(sizes, k=k)
            rows = []
            for j in range(k):
                second = START + int((first + j) * step)
                stamp = stamps.get(second)
                if stamp is None:
                    stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(second))
                    stamps[second] = stamp
                status = statuses[j]
                size = 0 if status in (204, 304) else chosen_sizes[j]
                ua = uas[j]
                if ua in (6, 9) or refs[j] is REFERERS[5]:
                    escaped += 1
                rows.append(
                    f"{pool[who[j]]} - {chosen_users[j]} [{stamp}] "
                    f'"{chosen_methods[j]} {chosen_paths[j]} {chosen_protos[j]}" '
                    f'{status} {size} "{refs[j]}" "{USER_AGENTS[ua]}"\n'
                )
            out.write("".join(rows))
            classes.update(f"{s // 100}xx" for s in statuses)
            seen.update(who)
            with_5xx.update(c for c, s in zip(who, statuses, strict=True) if s >= 500)
    ledger = {
        "format_version": FORMAT_VERSION,
        "lines": lines,
        "seed": seed,
        "bytes": path.stat().st_size,
        "requests": lines,
        "status_classes": {c: classes.get(c, 0) for c in ("2xx", "3xx", "4xx", "5xx")},
        "clients": len(seen),
        "clients_with_5xx": len(with_5xx),
        "ipv6_clients": sum(1 for c in seen if ":" in pool[c]),
        "lines_with_escaped_quotes": escaped,
        "share_5xx": round(classes.get("5xx", 0) / max(lines, 1), 4),
    }
    ledger_path(path).write_text(json.dumps(ledger, indent=2) + "\n", encoding="utf-8")
    return ledger


def ledger_path(path: Path) -> Path:
    return path.with_suffix(path.suffix + ".json")


def ensure_log(path: Path, lines: int, seed: int) -> dict[str, Any]:
    """The ledger of PATH, generating the log unless a matching one is already there."""
    try:
        ledger: dict[str, Any] = json.loads(ledger_path(path).read_text(encoding="utf-8"))
        if (
            ledger.get("format_version") == FORMAT_VERSION
            and ledger.get("lines") == lines
            and ledger.get("seed") == seed
            and path.stat().st_size == ledger.get("bytes")
        ):
            return ledger
    except (OSError, ValueError):
        pass
    return generate(path, lines, seed)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="Generate a combined-format access log.")
    p.add_argument("out", type=Path)
    p.add_argument("--lines", type=int, default=2_000_000)
    p.add_argument("--seed", type=int, default=8)
    args = p.parse_args(argv)
    if args.lines < 1:
        print("genlog: --lines must be at least 1", file=sys.stderr)
        return 2
    started = time.perf_counter()
    ledger = ensure_log(args.out, args.lines, args.seed)
    print(
        f"{args.out}: {ledger['lines']:,} lines, {ledger['bytes'] / 1e6:.1f} MB, "
        f"{ledger['clients']:,} clients ({ledger['ipv6_clients']:,} IPv6), "
        f"5xx share {ledger['share_5xx']:.1%}, {ledger['clients_with_5xx']:,} clients with a 5xx "
        f"({time.perf_counter() - started:.1f}s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
