"""The nginx config reader: the tokenizer on the syntax that fools line-based parsing, and
`nginx -T` dumps (from the real nginx where it matters)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from probes import nginxconf
from probes.nginxconf import ConfigParseError, parse, parse_dump, split_address, upstreams

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def test_tokens_quotes_comments_and_variables() -> None:
    text = (
        'set $a "x;y{z}" ;  # a comment with ; and {\n'
        "return 200 'it\\'s \"fine\"\\n';\n"
        "rewrite ^/(.*)$ /${a}/$1 last;\n"
        "location ~ \\.php$ { deny all; }\n"
    )
    tree = parse(text, "t.conf")
    assert [d.name for d in tree] == ["set", "return", "rewrite", "location"]
    assert tree[0].args == ["$a", "x;y{z}"]
    assert tree[0].comment == "a comment with ; and {"
    assert tree[1].args == ["200", 'it\'s "fine"\\n']
    assert tree[2].args == ["^/(.*)$", "/${a}/$1", "last"]
    assert tree[3].args == ["~", "\\.php$"]
    assert tree[3].block is not None and tree[3].block[0].name == "deny"
    assert tree[3].line == 4


def test_comment_after_directive_labels_it() -> None:
    tree = parse("upstream app {\n  server 10.0.0.1:80; # web-01\n  # web-02 is gone\n}\n")
    server = tree[0].block[0]  # type: ignore[index]
    assert server.comment == "web-01"


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("events {\n", 'expecting "}"', 1),
        ("a b;\n}\n", 'unexpected "}"', 2),
        ("a b\n", 'expecting ";" or "}"', 1),
        ('a "b;\n', "unexpected end of file", 2),
        ("a b;\nc d; }", 'unexpected "}"', 2),
        ("; a;", 'unexpected ";"', 1),
    ],
)
def test_syntax_errors_name_file_and_line(text: str, message: str, line: int) -> None:
    with pytest.raises(ConfigParseError) as err:
        parse(text, "bad.conf")
    assert message in str(err.value)
    assert err.value.file == "bad.conf"
    assert err.value.line == line


DUMP = """\
# configuration file /etc/nginx/nginx.conf:
http {
    include /etc/nginx/conf.d/*.conf;
    include sites-enabled/*;
}

# configuration file /etc/nginx/conf.d/a.conf:
upstream api { server [::1]:9000; server api.internal:8080 weight=2 max_fails=3; }

# configuration file /etc/nginx/sites-enabled/lb:
upstream app {
    server 10.0.0.1:8081 weight=3;  # web-01
    server 10.0.0.2:8082;           # web-02
    server 10.0.0.3 backup;
    server 10.0.0.4:80 down;
    server unix:/run/app.sock;
}
stream { upstream db { server 10.0.0.9:5432; } }

"""


def test_dump_includes_and_upstreams() -> None:
    dump = parse_dump(DUMP, "/etc/nginx/nginx.conf")
    assert list(dump.files) == [
        "/etc/nginx/nginx.conf",
        "/etc/nginx/conf.d/a.conf",
        "/etc/nginx/sites-enabled/lb",
    ]
    found = {u.name: u for u in upstreams(dump.tree())}
    assert set(found) == {"api", "app", "db"}
    assert found["db"].context == "stream"
    api = found["api"].servers
    assert (api[0].host, api[0].port) == ("::1", 9000)
    assert (api[1].host, api[1].port, api[1].weight) == ("api.internal", 8080, 2)
    app = found["app"].servers
    assert [(s.address, s.weight, s.backup, s.down) for s in app] == [
        ("10.0.0.1:8081", 3, False, False),
        ("10.0.0.2:8082", 1, False, False),
        ("10.0.0.3", 1, True, False),
        ("10.0.0.4:80", 1, False, True),
        ("unix:/run/app.sock", 1, False, False),
    ]
    assert app[0].label == "web-01" and app[1].label == "web-02"
    assert app[2].port == 80
    assert app[4].unix
    assert app[0].file == "/etc/nginx/sites-enabled/lb" and app[0].line == 2


def test_include_glob_stays_within_one_directory() -> None:
    dump = parse_dump(
        "# configuration file /c/nginx.conf:\ninclude /c/d/*;\n\n"
        "# configuration file /c/d/x:\nupstream x { server 1.1.1.1; }\n\n"
        "# configuration file /c/d/sub/y:\nupstream y { server 2.2.2.2; }\n"
    )
    assert [u.name for u in upstreams(dump.tree())] == ["x"]


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("10.0.0.1:8080", ("10.0.0.1", 8080)),
        ("10.0.0.1", ("10.0.0.1", 80)),
        ("[2001:db8::1]:443", ("2001:db8::1", 443)),
        ("[2001:db8::1]", ("2001:db8::1", 80)),
        ("backend.local:81", ("backend.local", 81)),
        ("unix:/tmp/s.sock", ("", 0)),
    ],
)
def test_split_address(address: str, expected: tuple[str, int]) -> None:
    assert split_address(address) == expected


@pytest.mark.parametrize("address", ["10.0.0.1:http", "10.0.0.1:70000", "[::1]x"])
def test_bad_addresses(address: str) -> None:
    with pytest.raises(ValueError):
        split_address(address)


def test_real_nginx_dump(tmp_path: Path) -> None:
    """What `nginx -T` prints for includes, symlinks, quotes and comments parses back."""
    if not os.path.exists(NGINX):
        pytest.skip("nginx is not installed")
    conf = tmp_path / "nginx.conf"
    (tmp_path / "sites").mkdir()
    (tmp_path / "sites" / "lb.conf").write_text(
        "upstream app {  # the web tier\n"
        "    server 127.0.0.1:18081 weight=5; # web-01\n"
        '    server 127.0.0.1:18082 max_fails=2 fail_timeout=5s; # web-02 "b"\n'
        "}\n"
        "server { listen 127.0.0.1:18080; location / {\n"
        '    set $x "a;b{c}"; return 200 "${x}\\n"; proxy_pass http://app; } }\n'
    )
    os.symlink(tmp_path / "sites" / "lb.conf", tmp_path / "enabled-lb")
    conf.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        "events {}\n"
        f"http {{ access_log off; include {tmp_path}/enabled-*; }}\n"
    )
    done = subprocess.run(
        [NGINX, "-T", "-p", f"{tmp_path}/", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    dump = parse_dump(done.stdout, str(conf))
    (app,) = upstreams(dump.tree())
    assert [(s.port, s.weight, s.label) for s in app.servers] == [
        (18081, 5, "web-01"),
        (18082, 1, 'web-02 "b"'),
    ]
    assert app.file == str(tmp_path / "enabled-lb")
    renamed = nginxconf.rename_files(dump.tree(), lambda p: p.replace(str(tmp_path), ""))
    assert {d.file for d in nginxconf.walk(renamed)} == {"/nginx.conf", "/enabled-lb"}


SERVERS_DUMP = """\
# configuration file /etc/nginx/nginx.conf:
http {
    access_log /var/log/nginx/access.log combined;
    include /etc/nginx/sites-enabled/*;
}

# configuration file /etc/nginx/sites-enabled/api:
server {
    listen 127.0.0.1:8080 default_server;
    server_name api.test;
    location / { access_log /var/log/nginx/api.log; }
}

# configuration file /etc/nginx/sites-enabled/shop:
server { listen 8080; server_name shop.test www.shop.test; }
server { listen [::]:443 ssl; listen unix:/run/shop.sock; access_log off; }
"""


def test_which_server_serves_a_port_or_writes_a_log() -> None:
    found = nginxconf.servers(parse_dump(SERVERS_DUMP).tree())
    assert [(s.file, s.listens, s.logs) for s in found] == [
        ("/etc/nginx/sites-enabled/api", ((8080, True),), ("/var/log/nginx/api.log",)),
        ("/etc/nginx/sites-enabled/shop", ((8080, False),), ("/var/log/nginx/access.log",)),
        ("/etc/nginx/sites-enabled/shop", ((443, False),), ()),
    ]
    # nginx's choice on a port: the server naming the host, else its default_server.
    assert [s.line for s in nginxconf.serving_port(found, 8080, "www.shop.test")] == [1]
    assert [s.names for s in nginxconf.serving_port(found, 8080, "other")] == [("api.test",)]
    assert [s.line for s in nginxconf.serving_port(found, 443)] == [2]
    assert nginxconf.serving_port(found, 80) == []
    # The log a server writes: its own (a location's counts), else the http block's.
    shop = nginxconf.writing_log(found, "/var/log/nginx/../nginx/access.log", lambda p: p)
    assert [s.file for s in shop] == ["/etc/nginx/sites-enabled/shop"]
    lab = nginxconf.writing_log(found, "/var/log/nginx/api.log", lambda p: "/lab" + p)
    assert lab == []
