#!/usr/bin/env bash
# The README's test command: set the machine up (as root on a fresh Debian: nginx,
# openssh-server, docker.io, the virtual environment), then lint, type-check and run every
# test, then the docker lab's short run against a real engine (scripts/docker-lab.sh:
# one fault end to end, Prometheus's target, one alert through Alertmanager; about 4
# minutes). With arguments (`scripts/test.sh tests/test_x.py`) only pytest runs, on them.
# RECORDER_DOCKER_LAB=off leaves the docker lab out; =full runs every fault (make
# docker-test).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/test-setup.sh
.venv/bin/ruff check recorder probes tests bench hatch_build.py
.venv/bin/ruff format --check recorder probes tests bench hatch_build.py
.venv/bin/mypy
# tests/test_docker_e2e.py needs the engine docker-lab.sh provides: skipped in this run.
RECORDER_DOCKER_LAB= .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
if [ "$#" -eq 0 ] && [ "${RECORDER_DOCKER_LAB:-short}" != off ]; then
    RECORDER_DOCKER_LAB="${RECORDER_DOCKER_LAB:-short}" bash scripts/docker-lab.sh
fi
