"""The lab's topology and every config file it runs on, for both backends.

One source of truth: the local lab renders these into its directory with loopback ports;
`python -m recorder.lab.docker` renders the same templates into `docker/` with container
names and port 80. A `Layout` carries what differs between the two.

Topology: `lb-01` (nginx, round-robin upstream `app` over the web tier, a deliberately
small capacity with `limit_req`) in front of `web-01` and `web-02` (nginx proxying to the
lab app, `recorder/lab/app.py`, on the same machine). The LB passes the client address on
(`X-Real-IP`, `X-Forwarded-For`); the web servers trust it from the LB (`realip`), so
their access logs show real clients too and the app can fail per client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from probes.accesslog import COMBINED
from recorder.config import NOTIFY_EVENTS

SITE = "example"
LB = "lb-01"
WEB_HOSTS = ("web-01", "web-02")
HOSTS = (LB, *WEB_HOSTS)
ROLES = {LB: "lb", "web-01": "web", "web-02": "web"}
SERVICE = "web"
ESCALATION = "platform-team"

# Paths as each host itself sees them (a local host maps them under its prefix).
NGINX_CONF = "/etc/nginx/nginx.conf"
NGINX_DIR = "/etc/nginx"
SITES_AVAILABLE = "/etc/nginx/sites-available"
SITES_ENABLED = "/etc/nginx/sites-enabled"
PID_FILE = "/run/nginx.pid"
ACCESS_LOG = "/var/log/nginx/access.log"
ERROR_LOG = "/var/log/nginx/error.log"
APP_FAULTS = "/var/lib/lab-app/faults.json"
BACKUP_DIR = "/var/lib/lab/backup"  # where faults keep what they moved aside

# The lab's access log format: combined, then how long each request took, so the log
# shows which clients got slow responses (the affected share of slow-backend). Tools that
# read combined still read these lines: the reader stops after the user agent.
LOG_FORMAT_NAME = "timed"
LOG_FORMAT = COMBINED + " $request_time"

# Slower than this is slow in the lab (the http probe's `slow`, which the error_rate probe
# takes too): its pages answer in milliseconds, so a second is already slow for them, and
# the lower bar lets slow-backend be seen a second sooner than at the default 2s.
SLOW_SECONDS = 1.0

# Capacity of lb-01: requests per second and the burst above it before 503s. Normal lab
# traffic stays well below; `traffic-spike` goes well above.
CAPACITY_RPS = 50
CAPACITY_BURST = 50


def site_available(site: str = SITE) -> str:
    return f"{SITES_AVAILABLE}/{site}"


def site_enabled(site: str = SITE) -> str:
    return f"{SITES_ENABLED}/{site}"


@dataclass(frozen=True)
class Layout:
    """What one backend's rendering of a host needs.

    root: the real directory the host's `/` lives in ("" in a container, the host's
    directory in the local lab); every path in the nginx config is written with it,
    so the config is valid whatever `-p` nginx is started with.
    """

    host: str
    root: str
    listen: str  # nginx `listen` argument: "127.0.0.1:PORT" or "80"
    app: str = ""  # web: where the app listens, "127.0.0.1:PORT"
    backends: tuple[str, ...] = ()  # lb: the upstream servers, "HOST:PORT"
    trusted_proxies: tuple[str, ...] = ("127.0.0.0/8",)
    user: str | None = None  # nginx `user`; None leaves it out (non-root local lab)
    capacity_rps: int = CAPACITY_RPS
    capacity_burst: int = CAPACITY_BURST
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def role(self) -> str:
        return ROLES[self.host]

    def path(self, host_path: str) -> str:
        """A host path as the real filesystem names it."""
        return self.root + host_path

    def quoted(self, host_path: str) -> str:
        """`path(host_path)` as one nginx argument: quoted, so a lab directory whose path
        holds a space, `;`, `{` or a quote stays one word (`\\` and `"` escaped)."""
        return nginx_quote(self.path(host_path))


def nginx_quote(value: str) -> str:
    """A double-quoted nginx string holding `value` exactly."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def nginx_conf(layout: Layout) -> str:
    p = layout.quoted
    user = f"user {layout.user};\n" if layout.user else ""
    return f"""\
# {layout.host}: written by recorder lab (recorder/lab/templates.py). Laid out like a
# Debian server: sites live in sites-available and are enabled by a link in sites-enabled.
{user}worker_processes 1;
pid {p(PID_FILE)};
error_log {p(ERROR_LOG)};

events {{
    worker_connections 512;
}}

http {{
    default_type text/plain;
    log_format {LOG_FORMAT_NAME} '{LOG_FORMAT}';
    access_log {p(ACCESS_LOG)} {LOG_FORMAT_NAME};
    keepalive_timeout 5s;
    client_body_temp_path {p("/var/lib/nginx/body")};
    proxy_temp_path {p("/var/lib/nginx/proxy")};
    fastcgi_temp_path {p("/var/lib/nginx/fastcgi")};
    uwsgi_temp_path {p("/var/lib/nginx/uwsgi")};
    scgi_temp_path {p("/var/lib/nginx/scgi")};

    include {p(SITES_ENABLED + "/*")};
}}
"""


def lb_site(layout: Layout) -> str:
    servers = "\n".join(f"    server {b};" for b in layout.backends)
    return f"""\
# The {SITE} site on {layout.host}: the entry point users hit. Round-robin over the web
# tier; the capacity is deliberately small (limit_req on one shared key), so a traffic
# spike turns into 503s instead of melting the backends.
limit_req_zone $server_name zone=capacity:1m rate={layout.capacity_rps}r/s;

upstream app {{
{servers}
}}

server {{
    listen {layout.listen};
    server_name {SITE}.test;

    location / {{
        limit_req zone=capacity burst={layout.capacity_burst} nodelay;
        limit_req_status 503;
        proxy_pass http://app;
        proxy_set_header Host $host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_connect_timeout 2s;
        proxy_read_timeout 30s;
    }}
}}
"""


def web_site(layout: Layout) -> str:
    trusted = "\n".join(f"    set_real_ip_from {net};" for net in layout.trusted_proxies)
    return f"""\
# The {SITE} site on {layout.host}: nginx in front of the application. The load balancer
# is trusted to name the client (X-Real-IP), so this log shows real client addresses.
server {{
    listen {layout.listen};
    server_name {SITE}.test;
{trusted}
    real_ip_header X-Real-IP;

    location / {{
        proxy_pass http://{layout.app};
        proxy_set_header Host $host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $http_x_forwarded_for;
        proxy_read_timeout 30s;
    }}
}}
"""


def site_conf(layout: Layout) -> str:
    return lb_site(layout) if layout.role == "lb" else web_site(layout)


def break_syntax(site_text: str) -> tuple[str, int]:
    """The site with the classic typo: the `;` after `proxy_pass` dropped. Returns the
    broken text and the (1-based) line of the typo."""
    lines = site_text.split("\n")
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("proxy_pass ") and stripped.endswith(";"):
            lines[i] = line.rstrip()[:-1]
            return "\n".join(lines), i + 1
    # Not our template (edited by hand): an unterminated block breaks any config.
    return site_text + "\nserver {\n", len(lines) + 1


def recorder_config(
    *,
    state_dir: str,
    listen: str,
    hosts: dict[str, dict[str, Any]],
    urls: dict[str, str],
    header: str,
    interval: str = "1s",
    recover_after: str = "5s",
    token_file: str | None = None,
    read_token_file: str | None = None,
    webhook: dict[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """A recorder config watching the lab: YAML text and the data it holds.

    hosts: name -> the transport mapping (`{"local": {"prefix": ...}}` or
    `{"docker": {"container": ...}}`); urls: name -> the site's URL as the recorder
    reaches it; webhook: the lab's sink (`url`, `secret_file`), which then gets every
    event of every incident.
    """
    checks: list[dict[str, Any]] = []
    for name in HOSTS:
        probes: dict[str, Any] = {
            "http": {"url": urls[name], "slow": f"{SLOW_SECONDS:g}s"},
            "sites": {"expect_enabled": [SITE]},
            "config": {},
            "process": {"pid_file": PID_FILE},
            # The log says how long each request took; a response slower than the http
            # probe's `slow` counts its client as affected by slow-backend.
            "error_rate": {
                "log": ACCESS_LOG,
                "log_format": LOG_FORMAT,
                "window": "30s",
                "threshold": 0.05,
            },
        }
        if ROLES[name] == "lb":
            probes["upstreams"] = {}
        checks.append({"hosts": [name], "probes": probes})
    data: dict[str, Any] = {
        "state_dir": state_dir,
        "listen": listen,
        "defaults": {"interval": interval, "for": "0s", "recover_after": recover_after},
        "services": {
            SERVICE: {"entrypoints": [LB], "hosts": list(HOSTS), "escalation": ESCALATION}
        },
        "hosts": {name: {**hosts[name], "role": ROLES[name]} for name in HOSTS},
        "checks": checks,
    }
    if token_file:
        data["alertmanager"] = {"token_file": token_file}
    if read_token_file:
        data["web"] = {"read_token_file": read_token_file}
    if webhook:
        data["notify"] = {
            "receivers": {
                "lab-sink": {
                    "webhook": {"url": webhook["url"], "secret_file": webhook["secret_file"]}
                }
            },
            "routes": [{"events": list(NOTIFY_EVENTS), "receivers": ["lab-sink"]}],
        }
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)
    return "".join(f"# {line}\n" for line in header.splitlines()) + text, data
