#!/usr/bin/env bash
# The README's demo (`bash scripts/demo.sh`, or `make demo`): the recorder watching the local
# fault lab notices an outage by itself, opens an incident, sees it resolved, and drafts
# the postmortem.
#
#   1. `recorder lab up` in a new temporary directory (or $DEMO_LAB_DIR, new or empty)
#   2. `recorder run` on the lab's recorder.yml, and client traffic, in the background
#   3. `recorder lab break $DEMO_FAULT` (backend-5xx at rate 0.3 by default)
#   4. wait (bounded) until an incident is open; show it, and the message the lab's
#      webhook sink received for it (signature checked by the sink)
#   5. `recorder lab fix`; wait (bounded) until the incident is resolved; print the draft
#
# Everything it starts is stopped on exit, by pid, even on failure or Ctrl-C.
# Knobs: DEMO_FAULT (any `recorder lab break --help` fault), DEMO_RATE, DEMO_WAIT
# (seconds to wait for each step, default 90), DEMO_LAB_DIR, DEMO_SETUP=0 (skip setup).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=.venv/bin
REC="$BIN/recorder"
FAULT=${DEMO_FAULT:-backend-5xx}
RATE=${DEMO_RATE:-0.3}
WAIT=${DEMO_WAIT:-90}

say() { printf '\n== %s\n' "$*"; }

# A fresh machine gets nginx, the virtual environment and the package first
# (DEMO_SETUP=0 skips it on a machine already set up, as the demo's own test does).
[ "${DEMO_SETUP:-1}" = 0 ] || bash scripts/setup.sh

LAB=${DEMO_LAB_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/recorder-demo.XXXXXX")}
CONFIG="$LAB/recorder.yml"
daemon_pid=""
traffic_pid=""
lab_started=""

stop_pid() {
    # Only a pid this script started; TERM, then KILL if it lingers.
    local pid=$1
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop_pid "$traffic_pid"
    stop_pid "$daemon_pid"
    if [ -n "$lab_started" ]; then
        "$REC" lab down --dir "$LAB" || status=1
    fi
    echo "demo: lab directory kept for inspection: $LAB (recorder log: $LAB/recorder.log)"
    # The incidents stay in the lab's store: readable after the demo, without the daemon.
    if [ -f "$CONFIG" ]; then
        echo "demo: its incidents, again: $REC incidents list --config $CONFIG"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rec() { "$REC" --config "$CONFIG" "$@"; }

# The id of the first incident with this status, or nothing.
incident_with_status() {
    rec incidents list --status "$1" --json 2>/dev/null |
        "$BIN/python" -c 'import json,sys; l=json.load(sys.stdin); print(l[0]["id"] if l else "")'
}

daemon_alive() {
    if ! kill -0 "$daemon_pid" 2>/dev/null; then
        echo "demo: the recorder daemon exited; its log:" >&2
        tail -n 30 "$LAB/recorder.log" >&2 || true
        exit 1
    fi
}

say "recorder lab up --dir $LAB"
lab_started=1
"$REC" lab up --dir "$LAB"

say "recorder run --config $CONFIG (background, log in $LAB/recorder.log)"
# The daemon is started directly (not through the `rec` function, which would make $! a
# subshell's pid and leave the daemon running when that subshell is stopped).
"$REC" --config "$CONFIG" run >"$LAB/recorder.log" 2>&1 &
daemon_pid=$!

traffic_seconds=$((WAIT * 3 + 60))  # outlasts the fault, its fix and the resolution
say "recorder lab traffic --dir $LAB --clients 50 --rps 20 --seconds $traffic_seconds (background)"
"$REC" lab traffic --dir "$LAB" --clients 50 --rps 20 --seconds "$traffic_seconds" \
    >"$LAB/traffic.log" 2>&1 &
traffic_pid=$!

sleep 5 # a healthy baseline first, as in real life
daemon_alive

args=("$FAULT" --dir "$LAB")
case "$FAULT" in
backend-5xx | bad-deploy) args+=(--rate "$RATE") ;;
esac
say "recorder lab break ${args[*]}"
"$REC" lab break "${args[@]}"

say "waiting up to ${WAIT}s for the recorder to open an incident"
id=""
for _ in $(seq "$WAIT"); do
    daemon_alive
    id=$(incident_with_status open)
    [ -n "$id" ] && break
    sleep 1
done
if [ -z "$id" ]; then
    echo "demo: no incident opened within ${WAIT}s; the recorder's log:" >&2
    tail -n 30 "$LAB/recorder.log" >&2 || true
    exit 1
fi
say "recorder incidents show $id --config $CONFIG"
rec incidents show "$id"
say "the lab's webhook sink received ($LAB/notify/messages.jsonl):"
# The sink verified the HMAC signature before keeping the message; wait (bounded) for it.
"$BIN/python" - "$LAB/notify/messages.jsonl" "$id" "$WAIT" <<'PY'
import json, sys, time
path, incident, wait = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + wait
while True:
    with open(path, encoding="utf-8") as f:
        got = [json.loads(line) for line in f if line.strip()]
    mine = [m for m in got if m["body"]["incident"]["id"] == incident]
    if mine or time.monotonic() > deadline:
        break
    time.sleep(0.2)
if not mine:
    sys.exit(f"demo: the webhook sink received no message for incident {incident}")
m = mine[0]
b = m["body"]
print(f"{m['received_at']}  {b['event']}  delivery {m['delivery_id']}  (signature verified)")
print(b["text"])
PY
base_url=$("$BIN/python" -c 'import sys; from recorder.config import load_config; print(load_config(sys.argv[1]).base_url)' "$CONFIG")
say "in a browser, while the demo runs: ${base_url}incidents/$id"

say "recorder lab fix --dir $LAB"
"$REC" lab fix --dir "$LAB"

say "waiting up to ${WAIT}s for the incident to resolve"
resolved=""
for _ in $(seq "$WAIT"); do
    daemon_alive
    status=$(rec incidents show "$id" --json |
        "$BIN/python" -c 'import json,sys; print(json.load(sys.stdin)["status"])')
    if [ "$status" != open ]; then
        resolved=1
        break
    fi
    sleep 1
done
if [ -z "$resolved" ]; then
    echo "demo: incident $id still open after ${WAIT}s" >&2
    exit 1
fi
rec incidents show "$id"

say "recorder draft $id --config $CONFIG"
rec draft "$id"

# A person at a terminal gets time to look at the pages before everything stops; a script
# (or the demo's test) does not wait.
if [ -t 0 ] && [ -t 1 ]; then
    say "the daemon and the lab are still up: ${base_url} (incidents), ${base_url}status"
    read -r -t 600 -p "press Enter to stop them (or wait 10 minutes) " _ || true
    echo
else
    say "not at a terminal: stopping the daemon and the lab now (at a terminal the demo waits for Enter, so the pages can be read)"
fi
