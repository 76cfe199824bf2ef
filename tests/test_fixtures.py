"""The shared fixtures stand in for the lab with the lab's own config, and the test modules
that need it take it from there instead of keeping copies that drift."""

from __future__ import annotations

import ast
from pathlib import Path

from recorder.lab.templates import recorder_config
from tests.fixtures import HOSTS, LISTEN, PORTS, ZONE, lab_config, lab_config_data, parse_source

TESTS = Path(__file__).parent
USERS = ("test_incidents.py", "test_draft.py", "test_api.py", "test_close.py")


def test_the_config_is_the_labs_own(tmp_path: Path) -> None:
    hosts = {name: {"local": {"prefix": f"/srv/lab/{name}"}} for name in HOSTS}
    urls = {name: f"http://127.0.0.1:{PORTS[name]}/" for name in HOSTS}
    _, written = recorder_config(
        state_dir=str(tmp_path), listen=LISTEN, hosts=hosts, urls=urls, header=""
    )
    assert lab_config_data(tmp_path) == {"timezone": ZONE, **written}
    config = lab_config(tmp_path, prefix="/")
    assert config.zone.key == ZONE and list(config.hosts) == list(HOSTS)


def test_no_test_module_keeps_its_own_copy() -> None:
    for name in USERS:
        tree = parse_source(TESTS / name)
        defined = {
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.ClassDef)
            and node.name in {"lab_config", "lab_config_data", "Harness"}
        }
        assert not defined, f"{name} defines {sorted(defined)}: use tests/fixtures.py"
