#!/usr/bin/env bash
# Every benchmark, from a fresh clone: set the machine up (scripts/setup.sh: nginx, gawk,
# goaccess, wrk, the virtualenv), then run each script; figures go to stdout and to
# bench/out/NAME.json (with the machine they came from), logs to bench/out/NAME.txt.
#
#   bash bench/run-all.sh            # the full run (about 115 minutes: see BENCHMARKS.md)
#   bash bench/run-all.sh --smoke    # every script tiny and fast (also BENCH_SMOKE=1)
#
# Any other arguments are passed to every script (e.g. --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
args=()
for arg in "$@"; do
    args+=("$arg")
done
if [ "${BENCH_SMOKE:-0}" != "0" ] && [[ " ${args[*]-} " != *" --smoke "* ]]; then
    args+=(--smoke)
fi
mkdir -p bench/out
status=0
for script in logreader noise scale endpoint alerts outage pages detection notify peers; do
    echo "== bench/$script.py ${args[*]-}"
    if ! .venv/bin/python "bench/$script.py" "${args[@]}" 2>&1 | tee "bench/out/$script.txt"; then
        echo "== bench/$script.py FAILED (see bench/out/$script.txt)"
        status=1
    fi
done
exit "$status"
