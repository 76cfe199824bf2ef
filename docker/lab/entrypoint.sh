#!/bin/sh
# The lab image's entrypoint. With LAB_HOST set it is a lab nginx host: PID 1's child
# (compose runs an init first), not nginx itself: the lab's nginx-down and upstream-down
# faults stop nginx inside a running container, as on a real server, and that must not
# end the container. Without LAB_HOST it runs its arguments (the recorder's service).
set -eu
if [ -z "${LAB_HOST:-}" ]; then
    exec "$@"
fi
# The host's nginx files, installed once: a restarted container keeps a fault's edits.
if [ ! -e /var/lib/lab/installed ]; then
    cp "/opt/lab/${LAB_HOST}/nginx.conf" /etc/nginx/nginx.conf
    cp "/opt/lab/${LAB_HOST}/sites-available/example" /etc/nginx/sites-available/example
    ln -sfn /etc/nginx/sites-available/example /etc/nginx/sites-enabled/example
    touch /var/lib/lab/installed
fi
if [ "${LAB_APP:-0}" = 1 ]; then
    python3 /opt/lab/app.py --port 8000 --name "${LAB_HOST}" \
        --faults /var/lib/lab-app/faults.json &
fi
nginx
trap 'nginx -s quit 2>/dev/null || true; exit 0' TERM INT
while :; do
    sleep 3600 &
    wait $! || true
done
