#!/usr/bin/env bash
# The 10-minute notification receiver run of RELIABILITY.md (`make reliability-receiver`):
# a real `recorder run` on the lab while its webhook receiver alternately hangs past the
# timeout and answers 500, outages broken and fixed all along. Prints detection times and
# probe samples a second with a healthy receiver and with the bad one; fails if probing or
# detection slowed, or an event is missing from the outbox. CI runs the same test for 60 s.
# RECORDER_RECEIVER_SOAK=SECONDS changes the length (default 600).
set -euo pipefail
cd "$(dirname "$0")/.."
export RECORDER_RECEIVER_SOAK=${RECORDER_RECEIVER_SOAK:-600}
exec .venv/bin/python -m pytest -q -s -p no:cacheprovider \
    tests/test_notify_daemon.py -k test_a_hanging_or_failing_receiver_slows_nothing
