#!/usr/bin/env bash
# The README's test command: set the machine up (as root on a fresh Debian: nginx,
# openssh-server, the virtual environment), then lint, type-check and run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/test-setup.sh
.venv/bin/ruff check recorder probes tests bench hatch_build.py
.venv/bin/ruff format --check recorder probes tests bench hatch_build.py
.venv/bin/mypy
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
