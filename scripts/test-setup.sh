#!/usr/bin/env bash
# What only the tests need, on top of scripts/setup.sh (which the demo also runs and which
# stays quick): Debian packages for the end-to-end tests. Safe to run again; installs only
# what is missing. Called by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
# One line per package: `have COMMAND-OR-PATH || need+=(PACKAGE)`, with why.
have() { command -v "$1" >/dev/null 2>&1 || [ -e "$1" ]; }
# The real Prometheus family for tests/test_prometheus_files.py (promtool checks the rules and
# runs their unit tests, amtool the Alertmanager config) and tests/test_prometheus_e2e.py
# (Prometheus scrapes a running recorder, Alertmanager delivers to its webhook,
# blackbox_exporter probes the lab) and bench/peers.py (detection side by side).
have promtool || need+=(prometheus)
have amtool || need+=(prometheus-alertmanager)
have prometheus-blackbox-exporter || need+=(prometheus-blackbox-exporter)
# The web pages' browser tests (tests/test_web_browser.py) run headless Chromium under its
# WebDriver, both from Debian: nothing is downloaded at test time.
have chromium || need+=(chromium)
have chromedriver || need+=(chromium-driver)
# The store tests on PostgreSQL (#21): tests/postgres_fixture.py runs initdb and postgres
# from /usr/lib/postgresql/*/bin as an unprivileged user; policy-rc.d below keeps the
# package's own cluster from starting.
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || need+=(postgresql)
# The docker lab's test (tests/test_docker_e2e.py: scripts/test.sh's short run, `make
# docker-test`'s full one): scripts/docker-lab.sh starts its own dockerd, makes the Debian
# base image with debootstrap (no registry is reached) and runs the compose lab with
# Debian's docker-compose (1.29) when the `docker compose` plugin is absent.
have dockerd || need+=(docker.io)
have docker-compose || docker compose version >/dev/null 2>&1 || need+=(docker-compose)
have debootstrap || need+=(debootstrap)

if [ "${#need[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "test-setup: missing ${need[*]}; run as root (or install them) first" >&2
        exit 1
    fi
    echo "test-setup: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # policy-rc.d keeps apt from starting the packages' own services (Prometheus, Docker,
    # PostgreSQL): the tests start their own on loopback and stop them by pid.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    rm -f /usr/sbin/policy-rc.d
fi
