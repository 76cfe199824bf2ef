"""False alarms and reaction time of the error_rate probe's judgement, on simulated days.

    python bench/noise.py              # a simulated day per background 5xx share, 20 req/s
    python bench/noise.py --smoke      # ten simulated minutes, two shares

The daemon's error_rate probe fails a log when the 5xx share of its window passes the
threshold, or when the last few seconds rise past it by more than chance explains (the
"sudden rise", see probes/error_rate.py). A real day of traffic per setting would take a
day; this drives the probe's own judgement (`error_rate.judge`, the function the probe
calls after reading the log) with one second of simulated log per call: each request is a
5xx with the background share, drawn at random, so the noise is exactly binomial. It
counts, per background share:

- false verdicts over the day, by cause: the sudden-rise test alone, or the window share
  (a site whose background sits near the threshold crosses it by chance: that is the
  threshold the operator chose, not the sudden-rise test);
- then, from the state the day left, how many seconds of a partial failure (the share
  rising by `--rise`) pass before the verdict, over `--trials` trials.

The window is 30 s and the threshold 5%, as in the lab's recorder.yml.
"""

from __future__ import annotations

import copy
import random
import statistics
import sys
from typing import Any

import benchlib as bl

from probes import error_rate
from probes.error_rate import Config, Second, Tail

SHARES = (0.0, 0.002, 0.01, 0.02, 0.03, 0.04)


def simulate_second(tail: Tail, second: int, rps: int, share: float, rnd: random.Random) -> None:
    errors = sum(1 for _ in range(rps) if rnd.random() < share)
    tail.buckets[second] = Second(counts=[0, rps - errors, 0, 0, errors])
    tail.latest = second
    if tail.first_second is None:
        tail.first_second = second


def day(share: float, seconds: int, rps: int, config: Config, seed: int) -> dict[str, Any]:
    rnd = random.Random(seed)
    tail = Tail()
    by_sudden = by_window = 0
    for second in range(seconds):
        simulate_second(tail, second, rps, share, rnd)
        stats, sudden, failing = error_rate.judge(tail, config, float(second))
        if sudden is not None:
            by_sudden += 1
        elif failing:
            by_window += 1
    return {"tail": tail, "false_sudden": by_sudden, "false_window": by_window}


def reaction(
    tail: Tail, start: int, share: float, rps: int, config: Config, trials: int, seed: int
) -> list[int | None]:
    """Seconds of the raised share until the verdict, per trial (None: not within 60 s)."""
    rnd = random.Random(seed)
    out: list[int | None] = []
    for _ in range(trials):
        t = copy.deepcopy(tail)
        for n in range(1, 61):
            simulate_second(t, start + n - 1, rps, share, rnd)
            if error_rate.judge(t, config, float(start + n - 1))[2]:
                out.append(n)
                break
        else:
            out.append(None)
    return out


def main(argv: list[str] | None = None) -> int:
    p = bl.parser("False alarms and reaction time of error_rate's judgement, simulated.")
    p.add_argument("--seconds", type=int, help="simulated seconds per share (default 86,400)")
    p.add_argument("--rps", type=int, default=20, help="requests per second (default 20)")
    p.add_argument("--rise", type=float, default=0.10, help="added 5xx share of the failure")
    p.add_argument("--trials", type=int, help="reaction trials per share (default 50)")
    args = p.parse_args(argv)
    seconds = args.seconds or (600 if args.smoke else 86_400)
    trials = args.trials or (3 if args.smoke else 50)
    shares = SHARES[:2] if args.smoke else SHARES
    config = Config(window=30.0, threshold=0.05)
    print(bl.machine_line())
    print(
        f"{seconds:,} simulated seconds per share at {args.rps} req/s (one probe call a"
        f" second), window 30s, threshold 5%; then a rise of {args.rise:.0%}, {trials} trials"
    )
    rows = []
    for i, share in enumerate(shares):
        result = day(share, seconds, args.rps, config, seed=1000 + i)
        delays = reaction(
            result["tail"], seconds, min(1.0, share + args.rise), args.rps, config, trials, i
        )
        seen = [d for d in delays if d is not None]
        row = {
            "background_share": share,
            "calls": seconds,
            "false_sudden": result["false_sudden"],
            "false_window": result["false_window"],
            "rise_to": round(min(1.0, share + args.rise), 4),
            "reaction_median_s": statistics.median(seen) if seen else None,
            "reaction_worst_s": max(seen) if seen else None,
            "reaction_missed": len(delays) - len(seen),
        }
        rows.append(row)
        print(
            f"background {share:6.1%}: false verdicts {row['false_sudden']} by the sudden-rise"
            f" test, {row['false_window']} by the window share; rise to {row['rise_to']:.1%}:"
            f" failed after {row['reaction_median_s']} s median, {row['reaction_worst_s']} s"
            f" worst, {row['reaction_missed']} missed",
            flush=True,
        )
    path = bl.save_results(
        args.out,
        "noise",
        {
            "smoke": args.smoke,
            "seconds": seconds,
            "rps": args.rps,
            "rise": args.rise,
            "trials": trials,
            "rows": rows,
        },
    )
    print(f"figures: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
