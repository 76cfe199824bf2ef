#!/usr/bin/env bash
# Set up a Debian machine for recorder: system packages when missing, then the virtual
# environment with the package and its test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v gawk >/dev/null 2>&1 || need+=(gawk)
command -v goaccess >/dev/null 2>&1 || need+=(goaccess)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v python3 >/dev/null 2>&1 || need+=(python3)
# Debian splits venv's pip bootstrap into python3-venv.
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
# A C compiler, the C library's headers and Python's: the access-log counter is compiled
# at install (optional for users, expected here: tests/test_accesslog_compiled.py).
command -v cc >/dev/null 2>&1 || need+=(gcc)
[ -f /usr/include/string.h ] || need+=(libc6-dev)
"${PYTHON:-python3}" -c 'import os, sys, sysconfig
sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    >/dev/null 2>&1 || need+=(python3-dev)
command -v ps >/dev/null 2>&1 || need+=(procps)
if [ "${#need[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing ${need[*]}; run as root (or install them) first" >&2
        exit 1
    fi
    echo "setup: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # policy-rc.d keeps apt from starting the distribution's nginx/sshd on ports 80/22:
    # the lab and the tests start their own on loopback high ports.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    rm -f /usr/sbin/policy-rc.d
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
reader=$(.venv/bin/python -c 'from probes.accesslog import READER; print(READER)')
echo "setup: ready (.venv/bin/recorder $(.venv/bin/recorder --version 2>/dev/null | awk '{print $NF}'), log counter: $reader)"
