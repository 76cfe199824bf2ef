#!/bin/sh
# PID 1's child in a lab nginx container (compose runs an init first). It is not nginx
# itself: the lab's nginx-down and upstream-down faults stop nginx inside a running
# container, as on a real server, and that must not end the container.
set -eu
if [ -f /opt/lab/app.py ]; then
    python3 /opt/lab/app.py --port 8000 --name "${LAB_HOST}" \
        --faults /var/lib/lab-app/faults.json &
fi
nginx
trap 'nginx -s quit 2>/dev/null || true; exit 0' TERM INT
while :; do
    sleep 3600 &
    wait $! || true
done
