#!/usr/bin/env bash
# Runs a command against a Docker engine for the docker lab, on a machine where none runs
# (CI, this repository's test machines): as root it starts its own dockerd under a temp
# dir, makes the lab's one base image (debian:bookworm-slim) with debootstrap when the
# engine has no way to pull it, runs the command with DOCKER_HOST and DOCKER_SOCK set, then
# stops the dockerd it started (by pid) and removes its data root. When an engine already
# answers (DOCKER_HOST, or /var/run/docker.sock) it is used as is and left running.
#
#   scripts/docker-lab.sh                      # the docker lab's end-to-end test (short)
#   RECORDER_DOCKER_LAB=full scripts/docker-lab.sh   # every fault (make docker-test)
#   scripts/docker-lab.sh recorder lab up --backend docker   # any command
#
# Needs (scripts/test-setup.sh installs them): docker.io, debootstrap, and
# docker-compose (1.29) unless the `docker compose` plugin is present.
# The base image's tarball is cached in $RECORDER_DOCKER_CACHE (default
# ~/.cache/recorder-docker), so later runs skip debootstrap (about 45 s).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$#" -eq 0 ]; then
    set -- .venv/bin/python -m pytest -q -s -p no:cacheprovider tests/test_docker_e2e.py
    export RECORDER_DOCKER_LAB="${RECORDER_DOCKER_LAB:-short}"
fi
BASE=debian:bookworm-slim
cache="${RECORDER_DOCKER_CACHE:-${HOME:-/root}/.cache/recorder-docker}"

engine_answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

root=""
dockerd_pid=""
cleanup() {
    if [ -n "$dockerd_pid" ]; then
        # dockerd stops the containers and the containerd it started on TERM.
        kill "$dockerd_pid" 2>/dev/null || true
        for _ in $(seq 60); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.5; done
        if kill -0 "$dockerd_pid" 2>/dev/null; then
            echo "docker-lab: dockerd $dockerd_pid still running after 30 s; killing it" >&2
            kill -KILL "$dockerd_pid" 2>/dev/null || true
        fi
        wait "$dockerd_pid" 2>/dev/null || true
    fi
    if [ -n "$root" ]; then
        # vfs layers hold files owned by many users; a mount may be left behind by a
        # killed container: unmount what is under the root before removing it.
        { grep -o " $root/[^ ]*" /proc/self/mounts || true; } | sort -r | while read -r m; do
            umount -l "$m" 2>/dev/null || true
        done
        rm -rf "$root"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${DOCKER_HOST:-}" ] && [ -S /var/run/docker.sock ] && engine_answers; then
    echo "docker-lab: using the engine at /var/run/docker.sock"
elif [ -n "${DOCKER_HOST:-}" ] && engine_answers; then
    echo "docker-lab: using the engine at $DOCKER_HOST"
else
    if [ "$(id -u)" -ne 0 ]; then
        echo "docker-lab: no Docker engine answers and starting one needs root" >&2
        exit 1
    fi
    command -v dockerd >/dev/null || { echo "docker-lab: dockerd missing (apt-get install docker.io, or run scripts/test-setup.sh)" >&2; exit 1; }
    root="$(mktemp -d /tmp/recorder-dockerd.XXXXXX)"
    # vfs: no overlay mounts inside this machine's container; no iptables and no default
    # bridge: user-defined bridge networks (the lab's) still connect the containers.
    dockerd --storage-driver=vfs --iptables=false --ip6tables=false --bridge=none \
        --data-root "$root/data" --exec-root "$root/exec" --pidfile "$root/dockerd.pid" \
        --host "unix://$root/docker.sock" >"$root/dockerd.log" 2>&1 &
    dockerd_pid=$!
    export DOCKER_HOST="unix://$root/docker.sock"
    for _ in $(seq 120); do
        engine_answers && break
        kill -0 "$dockerd_pid" 2>/dev/null || { tail -20 "$root/dockerd.log" >&2; exit 1; }
        sleep 0.5
    done
    engine_answers || { echo "docker-lab: dockerd did not answer in 60 s" >&2; tail -20 "$root/dockerd.log" >&2; exit 1; }
    echo "docker-lab: started dockerd (pid $dockerd_pid) at $DOCKER_HOST"
    # No default bridge here: builds (apt-get) use the host's network.
    export RECORDER_LAB_BUILD_NETWORK="${RECORDER_LAB_BUILD_NETWORK:-host}"
fi
if [ -n "${DOCKER_HOST:-}" ]; then
    export DOCKER_SOCK="${DOCKER_HOST#unix://}"
fi

if ! docker image inspect "$BASE" >/dev/null 2>&1; then
    if [ ! -s "$cache/debian-bookworm-slim.tar" ]; then
        [ "$(id -u)" -eq 0 ] || { echo "docker-lab: $BASE missing and debootstrap needs root" >&2; exit 1; }
        command -v debootstrap >/dev/null || { echo "docker-lab: debootstrap missing (apt-get install debootstrap)" >&2; exit 1; }
        # The mirror apt already uses (the first deb.debian.org-style URI of its sources).
        mirror="$({ cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
            /etc/apt/sources.list.d/*.sources 2>/dev/null || true; } \
            | awk '/^(URIs:|deb) / && $2 ~ /^https?:\/\/.*\/debian\/?$/ {print $2; exit}')"
        mirror="${mirror:-http://deb.debian.org/debian}"
        echo "docker-lab: making $BASE with debootstrap from $mirror"
        mkdir -p "$cache"
        tree="$(mktemp -d /tmp/recorder-bookworm.XXXXXX)"
        debootstrap --variant=minbase bookworm "$tree" "$mirror" >"$cache/debootstrap.log" 2>&1 \
            || { tail -20 "$cache/debootstrap.log" >&2; rm -rf "$tree"; exit 1; }
        # Slim as the registry's image: no apt lists, no caches.
        rm -rf "$tree"/var/lib/apt/lists/* "$tree"/var/cache/apt/*.bin "$tree"/var/cache/apt/archives/*.deb
        tar -C "$tree" -c . >"$cache/debian-bookworm-slim.tar.tmp"
        mv "$cache/debian-bookworm-slim.tar.tmp" "$cache/debian-bookworm-slim.tar"
        rm -rf "$tree"
    fi
    docker import "$cache/debian-bookworm-slim.tar" "$BASE" >/dev/null
    echo "docker-lab: imported $BASE"
fi

status=0
"$@" || status=$?
exit "$status"
