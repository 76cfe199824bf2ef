"""Access-log throughput: the recorder's reader against gawk, goaccess and a plain
`re.match` loop, on the same generated log, one core each, in the same run.

    python bench/logreader.py              # 2,000,000 lines, median of 3 runs each
    python bench/logreader.py --smoke      # 20,000 lines, one run each

Every contender does the same job: requests per status class, distinct clients, and
clients that got at least one 5xx. Each runs as its own process pinned to CPU 0
(`taskset -c 0`); its peak RSS comes from wait4(). Rounds are interleaved (every contender
once, then again) so that noise from the rest of the machine falls on all of them alike.

Contenders:
- `recorder`: `recorder.logscan.scan()`, the reader behind `recorder logscan`, timed
  inside its process (interpreter start excluded), with the compiled counter
  (probes/_accesslog.c) when it was built; the line says which counter ran;
- `recorder python`: the same with RECORDER_PURE_PYTHON=1, the counter a machine without
  a C compiler gets (and the parser of the daemon's error_rate probe);
- `recorder logscan`: the same through the CLI, end to end (start-up included);
- `gawk`: the issue's one-liner, LC_ALL=C (its fastest setting), wall time;
- `goaccess`: its JSON report (`--log-format=COMBINED -o report.json`), wall time;
- `re.match loop`: a straightforward per-line regular expression in Python, timed inside.

The reference for the counts is the generator's ledger (bench/genlog.py): what it wrote,
counted as it chose the values, never by parsing the file. goaccess reports requests and
status classes but no distinct-client count (its "unique visitors" are IP + date + user
agent), so only those are compared for it.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import benchlib as bl
import genlog

CLASSES = ("2xx", "3xx", "4xx", "5xx")
GAWK_PROGRAM = (
    '{c[$1]=1; s=substr($9,1,1); n[s]++; if (s=="5") b[$1]=1} '
    'END{for (k in n) print k "xx", n[k]; print "clients", length(c); '
    'print "clients_with_5xx", length(b)}'
)
# The combined format as people write it: every field, quoted fields with escapes allowed.
COMBINED = re.compile(
    r'(\S+) \S+ (\S+) \[([^\]]+)\] "((?:[^"\\]|\\.)*)" (\d{3}) (\d+|-) '
    r'"((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)"'
)
CONTENDERS = (
    "recorder",
    "recorder python",
    "recorder logscan",
    "gawk",
    "goaccess",
    "re.match loop",
)


# ---- workers: run in a pinned child process, print JSON ------------------------------------------


def counts_of(summary: dict[str, Any]) -> dict[str, Any]:
    classes = summary.get("status_classes") or {}
    return {
        "requests": summary.get("requests"),
        "status_classes": {c: int(classes.get(c, 0)) for c in CLASSES},
        "clients": summary.get("clients"),
        "clients_with_5xx": summary.get("clients_with_5xx"),
    }


def worker_recorder(path: str) -> dict[str, Any]:
    from recorder.logscan import scan

    start = time.perf_counter()
    summary = scan([path], None, None)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "counts": counts_of(summary), "reader": summary["reader"]}


def worker_regex(path: str) -> dict[str, Any]:
    start = time.perf_counter()
    classes: Counter[str] = Counter()
    clients: set[str] = set()
    with_5xx: set[str] = set()
    malformed = 0
    with open(path, encoding="utf-8", errors="replace") as log:
        for line in log:
            m = COMBINED.match(line)
            if m is None:
                malformed += 1
                continue
            client, status = m.group(1), m.group(5)
            cls = status[0] + "xx"
            classes[cls] += 1
            clients.add(client)
            if cls == "5xx":
                with_5xx.add(client)
    seconds = time.perf_counter() - start
    summary = {
        "requests": sum(classes.values()),
        "status_classes": dict(classes),
        "clients": len(clients),
        "clients_with_5xx": len(with_5xx),
    }
    return {"seconds": seconds, "counts": counts_of(summary), "malformed": malformed}


WORKERS = {"recorder": worker_recorder, "re.match loop": worker_regex}


# ---- the parent: run each contender, check its counts --------------------------------------------


def run_contender(name: str, log: Path, scratch: Path) -> dict[str, Any]:
    """One run of one contender: seconds (what the throughput is computed from),
    wall seconds, peak RSS, counts."""
    me = str(Path(__file__).resolve())
    timeout = 1800.0
    if name in WORKERS or name == "recorder python":
        env = {k: v for k, v in os.environ.items() if k != "RECORDER_PURE_PYTHON"}
        if name == "recorder python":
            name, env["RECORDER_PURE_PYTHON"] = "recorder", "1"
        m = bl.run_measured(
            bl.pinned([bl.PYTHON, me, "--worker", name, str(log)]), timeout=timeout, env=env
        ).check()
        result = json.loads(m.stdout)
        return {**result, "wall": m.seconds, "maxrss_kb": m.maxrss_kb}
    if name == "recorder logscan":
        m = bl.run_measured(
            bl.pinned([bl.RECORDER, "logscan", "--json", str(log)]), timeout=timeout
        ).check()
        counts = counts_of(json.loads(m.stdout))
        return {"seconds": m.seconds, "wall": m.seconds, "maxrss_kb": m.maxrss_kb, "counts": counts}
    if name == "gawk":
        env = {**os.environ, "LC_ALL": "C"}
        m = bl.run_measured(
            bl.pinned(["gawk", GAWK_PROGRAM, str(log)]), timeout=timeout, env=env
        ).check()
        got: dict[str, int] = {}
        for line in m.stdout.splitlines():
            key, _, value = line.partition(" ")
            got[key] = int(value)
        counts = {
            "requests": sum(got.get(c, 0) for c in CLASSES),
            "status_classes": {c: got.get(c, 0) for c in CLASSES},
            "clients": got.get("clients"),
            "clients_with_5xx": got.get("clients_with_5xx"),
        }
        return {"seconds": m.seconds, "wall": m.seconds, "maxrss_kb": m.maxrss_kb, "counts": counts}
    if name == "goaccess":
        report = scratch / "goaccess-report.json"
        report.unlink(missing_ok=True)
        argv = [
            "goaccess",
            str(log),
            "--log-format=COMBINED",
            "--no-progress",
            "--no-global-config",
            "-o",
            str(report),
        ]
        m = bl.run_measured(bl.pinned(argv), timeout=timeout, cwd=scratch).check()
        data = json.loads(report.read_text(encoding="utf-8"))
        by_class = {
            str(item["data"])[:3]: int(item["hits"]["count"])
            for item in data.get("status_codes", {}).get("data", [])
        }
        counts = {
            "requests": int(data["general"]["valid_requests"]),
            "status_classes": {c: by_class.get(c, 0) for c in CLASSES},
            "clients": None,  # goaccess counts unique visitors (IP+date+agent), not clients
            "clients_with_5xx": None,
        }
        return {"seconds": m.seconds, "wall": m.seconds, "maxrss_kb": m.maxrss_kb, "counts": counts}
    raise bl.BenchError(f"unknown contender {name}")


def disagreements(counts: dict[str, Any], ledger: dict[str, Any]) -> list[str]:
    """Where a contender's counts differ from the ledger (None: it does not report it)."""
    wrong = []
    for key in ("requests", "clients", "clients_with_5xx"):
        if counts.get(key) is not None and counts[key] != ledger[key]:
            wrong.append(f"{key} {counts[key]:,} != {ledger[key]:,}")
    for c in CLASSES:
        got = counts["status_classes"].get(c, 0)
        if got != ledger["status_classes"][c]:
            wrong.append(f"{c} {got:,} != {ledger['status_classes'][c]:,}")
    return wrong


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    if args_list[:1] == ["--worker"]:
        _, name, log_file = args_list
        print(json.dumps(WORKERS[name](log_file)))
        return 0
    bl.stop_on_sigterm()
    p = bl.parser("Access-log throughput: the recorder against gawk, goaccess, re.match.")
    p.add_argument("--lines", type=int, help="log size (default 2,000,000; smoke 20,000)")
    p.add_argument("--seed", type=int, default=8)
    p.add_argument("--runs", type=int, help="runs per contender (default 3; smoke 1)")
    p.add_argument("--log", type=Path, help="where the generated log is kept (reused)")
    p.add_argument("--skip", action="append", default=[], choices=CONTENDERS, help="leave one out")
    args = p.parse_args(args_list)
    lines = args.lines or (20_000 if args.smoke else 2_000_000)
    runs = args.runs or (1 if args.smoke else 3)
    base = Path(os.environ.get("BENCH_TMP") or tempfile.gettempdir()) / "recorder-bench"
    log = args.log or base / f"access-{lines}-{args.seed}.log"
    print(bl.machine_line())
    started = time.perf_counter()
    ledger = genlog.ensure_log(log, lines, args.seed)
    print(
        f"log: {log} ({lines:,} lines, {ledger['bytes'] / 1e6:.1f} MB, "
        f"{ledger['clients']:,} clients of which {ledger['ipv6_clients']:,} IPv6, "
        f"5xx share {ledger['share_5xx']:.1%}; ready in {time.perf_counter() - started:.1f}s)"
    )
    print(
        f"reference (generator's ledger): {ledger['status_classes']}, "
        f"clients {ledger['clients']:,}, clients with a 5xx {ledger['clients_with_5xx']:,}"
    )
    contenders = [c for c in CONTENDERS if c not in args.skip]
    scratch = bl.scratch_dir("logreader")
    results: dict[str, list[dict[str, Any]]] = {c: [] for c in contenders}
    failures: dict[str, str] = {}
    for round_no in range(runs):
        for name in contenders:
            if name in failures:
                continue
            try:
                r = run_contender(name, log, scratch)
            except (bl.BenchError, ValueError, KeyError) as exc:
                failures[name] = str(exc)
                print(f"  {name}: FAILED: {exc}")
                continue
            results[name].append(r)
            counter = f"  ({r['reader']} counter)" if "reader" in r else ""
            print(
                f"  run {round_no + 1}/{runs} {name:16s} {r['seconds']:8.3f}s "
                f"{lines / r['seconds']:>12,.0f} lines/s  peak RSS {r['maxrss_kb'] / 1024:6.1f} MB"
                f"{counter}"
            )
    bl.remove_scratch(scratch)
    summary: dict[str, dict[str, Any]] = {}
    for name in contenders:
        rs = results[name]
        if not rs:
            continue
        secs = bl.median([r["seconds"] for r in rs])
        wrong = disagreements(rs[-1]["counts"], ledger)
        summary[name] = {
            "median_seconds": round(secs, 4),
            "lines_per_second": round(lines / secs),
            "median_wall_seconds": round(bl.median([r["wall"] for r in rs]), 4),
            "peak_rss_mb": round(max(r["maxrss_kb"] for r in rs) / 1024, 1),
            "runs": len(rs),
            "counts": rs[-1]["counts"],
            "counts_agree": not wrong,
            "disagreements": wrong,
            "reader": rs[-1].get("reader"),
        }
    rows = []
    for name, s in summary.items():
        rows.append(
            (
                name,
                f"{s['median_seconds']:.3f}",
                f"{s['lines_per_second']:,}",
                f"{s['peak_rss_mb']:.1f}",
                "yes" if s["counts_agree"] else "NO: " + "; ".join(s["disagreements"]),
            )
        )
    print()
    print(f"median of {runs} run(s), {lines:,} lines, one core each (taskset -c 0):")
    print(bl.table(("reader", "seconds", "lines/s", "peak RSS MB", "counts agree"), rows))
    ratio = ratio_cli = None
    if "recorder" in summary and "gawk" in summary:
        ratio = summary["recorder"]["lines_per_second"] / summary["gawk"]["lines_per_second"]
        print(
            f"ratio recorder/gawk (lines/s): {ratio:.2f}x "
            f"(target at least 3x: {bl.verdict(ratio >= 3)}; "
            f"{summary['recorder']['reader']} counter)"
        )
    if "recorder python" in summary and "gawk" in summary:
        ratio_py = (
            summary["recorder python"]["lines_per_second"] / summary["gawk"]["lines_per_second"]
        )
        print(f"ratio recorder python (no compiled counter)/gawk: {ratio_py:.2f}x")
    if "recorder logscan" in summary and "gawk" in summary:
        ratio_cli = (
            summary["recorder logscan"]["lines_per_second"] / summary["gawk"]["lines_per_second"]
        )
        print(f"ratio recorder logscan CLI (with start-up)/gawk: {ratio_cli:.2f}x")
    for name, why in failures.items():
        print(f"{name}: failed: {why}")
    path = bl.save_results(
        args.out,
        "logreader",
        {
            "smoke": args.smoke,
            "lines": lines,
            "runs": runs,
            "log": str(log),
            "ledger": ledger,
            "results": summary,
            "ratio_recorder_gawk": ratio,
            "ratio_recorder_cli_gawk": ratio_cli,
            "failures": failures,
        },
    )
    print(f"figures: {path}")
    ok = not failures and all(s["counts_agree"] for s in summary.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
