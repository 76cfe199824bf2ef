"""The docker lab's files and its backend, without a Docker engine: the compose file
uses only what compose v2 and Debian's docker-compose 1.29 both understand, every image
builds from debian:bookworm-slim alone, every file the Dockerfiles COPY is in the staged
build context, the rendered files match the lab's templates, and the backend issues the
right argv, recorded by a fake `docker` CLI (fast, for every fault's steps). The real
engine runs the lab in tests/test_docker_e2e.py (scripts/docker-lab.sh).
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from recorder.config import load_config
from recorder.lab import Lab, LabError
from recorder.lab import docker as docker_lab

DOCKER_DIR = Path(__file__).resolve().parents[1] / "docker"
COMPOSE = DOCKER_DIR / "compose.yml"


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


# ---- the compose file and the images -----------------------------------------------


def test_compose_has_the_lab_services_on_one_network() -> None:
    services = compose()["services"]
    assert set(services) == {
        *("lb", "web-01", "web-02", "users", "recorder", "prometheus", "alertmanager")
    }
    for name, service in services.items():
        assert service["networks"] == ["lab"], name
    assert set(compose()["networks"]) == {"lab"}
    assert services["lb"]["ports"] == ["127.0.0.1:${RECORDER_LAB_LB_PORT:-8080}:80"]
    assert set(services["lb"]["depends_on"]) == {"web-01", "web-02"}


def test_lab_up_builds_every_image_of_the_compose_file_once() -> None:
    services = compose()["services"]
    images = {s["image"] for s in services.values()}
    built = [services[name]["image"] for name in docker_lab.BUILT_SERVICES]
    assert sorted(built) == sorted(images)  # each image, and once


def test_users_service_sends_steady_traffic_from_inside_the_lab_network(
    published_lb: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The users service's command, run here against a real server standing for lb-01:
    it parses, and sends from the machine's own address (the container's, in the lab)."""
    from recorder.lab import traffic

    users = compose()["services"]["users"]
    assert users["image"] == compose()["services"]["recorder"]["image"]
    assert users["depends_on"] == ["lb"] and users["restart"] == "unless-stopped"
    python, m, module, *args = users["command"]
    assert (python, m, module) == ("/opt/recorder/bin/python", "-m", "recorder.lab.traffic")
    assert "--url=http://lb/" in args and "--from-here" in args
    local = []
    for arg in args:
        arg = arg.replace("${RECORDER_LAB_USERS_RPS:-5}", "5")  # compose's default
        if arg.startswith("--url="):
            arg = f"--url=http://127.0.0.1:{published_lb}/"
        elif arg.startswith("--seconds="):
            arg = "--seconds=1"  # an hour in the lab
        local.append(arg)
    sent: list[tuple[str, int]] = []
    real_send = traffic.send

    def send(host: str, port: int, path: str, client: str, timeout: float) -> traffic.Result:
        sent.append((client, port))
        return real_send(host, port, path, client, timeout)

    monkeypatch.setattr(traffic, "send", send)
    assert traffic.main(local) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["clients"] == 1 and report["status_classes"]["2xx"] == report["requests"]
    assert report["requests"] == 5  # 5 requests/s for 1 s
    assert {client for client, _ in sent} == {traffic.HERE}  # no source address bound
    assert traffic.main([*local, "--clients=2"]) == 2  # one client, or none at all


def test_webhook_token_is_one_secret_shared_by_alertmanager_and_the_recorder(
    tmp_path: Path,
) -> None:
    spec = compose()
    assert spec["secrets"]["webhook-token"]["file"] == "./secrets/webhook-token"
    for service in ("recorder", "alertmanager"):
        assert "webhook-token" in spec["services"][service]["secrets"]
    config = load_config(DOCKER_DIR / "recorder.yml")
    assert config.alertmanager.token_file == docker_lab.WEBHOOK_TOKEN_SECRET
    routes = yaml.safe_load((DOCKER_DIR / "prometheus" / "alertmanager.yml").read_text())
    hooks = [r for r in routes["receivers"] if r["name"] == "recorder"][0]["webhook_configs"]
    credentials = hooks[0]["http_config"]["authorization"]["credentials_file"]
    assert credentials == docker_lab.WEBHOOK_TOKEN_SECRET
    token = docker_lab.ensure_webhook_token(tmp_path)
    assert token.stat().st_mode & 0o777 == 0o600 and len(token.read_text().strip()) >= 32
    assert docker_lab.ensure_webhook_token(tmp_path).read_text() == token.read_text()


def test_read_token_is_one_secret_shared_by_the_recorder_and_prometheus(tmp_path: Path) -> None:
    # The recorder listens on 0.0.0.0 in its container: without a read token it refuses
    # to start, and Prometheus must send the token to scrape it.
    spec = compose()
    assert spec["secrets"]["read-token"]["file"] == "./secrets/read-token"
    for service in ("recorder", "prometheus"):
        assert "read-token" in spec["services"][service]["secrets"], service
    config = load_config(DOCKER_DIR / "recorder.yml")
    assert config.web.read_token_file == docker_lab.READ_TOKEN_SECRET
    scrape = yaml.safe_load((DOCKER_DIR / "prometheus" / "prometheus.yml").read_text())
    job = [j for j in scrape["scrape_configs"] if j["job_name"] == "recorder"][0]
    assert job["authorization"]["credentials_file"] == docker_lab.READ_TOKEN_SECRET
    token = docker_lab.ensure_read_token(tmp_path)
    assert token.stat().st_mode & 0o777 == 0o600 and len(token.read_text().strip()) >= 32


def test_containers_are_named_as_the_docker_recorder_config_expects() -> None:
    services = compose()["services"]
    config = load_config(DOCKER_DIR / "recorder.yml")
    by_service = {"lb": "lb-01", "web-01": "web-01", "web-02": "web-02"}
    for service, host in by_service.items():
        host_config = config.hosts[host].docker
        assert host_config is not None
        assert services[service]["container_name"] == host_config.container
        assert host_config.container == docker_lab.CONTAINERS[host]
        # the http probe reaches the host by its compose service name, on port 80
        http = next(cfg for _, name, cfg in config.checks_for(host) if name == "http")
        assert http.model_dump()["url"] == f"http://{service}/"
    assert services["recorder"]["container_name"] == docker_lab.CONTAINERS["recorder"]


def test_recorder_service_mounts_the_socket_config_and_state() -> None:
    services = compose()["services"]
    recorder = services["recorder"]
    volumes = recorder["volumes"]
    # The engine's socket: DOCKER_SOCK follows DOCKER_HOST (docker_env).
    assert "${DOCKER_SOCK:-/var/run/docker.sock}:/var/run/docker.sock" in volumes
    assert f"./recorder.yml:{docker_lab.IN_CONTAINER_CONFIG}:ro" in volumes
    config = load_config(DOCKER_DIR / "recorder.yml")
    assert f"recorder-state:{config.state_dir}" in volumes
    assert recorder["command"] == ["recorder", "run", "--config", docker_lab.IN_CONTAINER_CONFIG]
    assert config.listen == f"0.0.0.0:{docker_lab.RECORDER_PORT}"
    published = f"127.0.0.1:${{RECORDER_LAB_RECORDER_PORT:-{docker_lab.RECORDER_PORT}}}:9468"
    assert recorder["ports"] == [published]
    named = {v.split(":")[0] for s in services.values() for v in s.get("volumes", [])}
    named = {v for v in named if not v.startswith((".", "/", "$"))}
    assert named == set(compose()["volumes"])
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith(".") and "prometheus" not in source:  # docker/prometheus/
                assert (DOCKER_DIR / source).exists(), source  # is another engineer's


def test_compose_file_is_one_both_compose_versions_read() -> None:
    """No top-level name: (1.29 rejects it), the 2.x/3.x-free compose spec, no BuildKit
    `# syntax=` line in any Dockerfile (BuildKit would pull its frontend)."""
    spec = compose()
    assert "name" not in spec and "version" not in spec
    assert set(spec) == {"x-lab-image", "x-nginx", "services", "networks", "secrets", "volumes"}
    for dockerfile in DOCKER_DIR.rglob("Dockerfile*"):
        assert not re.search(r"^#\s*syntax=", dockerfile.read_text(), re.M), dockerfile
    for name, service in spec["services"].items():
        build = service["build"]
        assert build["network"] == "${RECORDER_LAB_BUILD_NETWORK:-default}", name


def _copies(dockerfile: Path) -> list[tuple[str, str]]:
    """(source, destination) of every COPY that reads the build context."""
    copies = []
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if not words or words[0] != "COPY" or any(w.startswith("--from=") for w in words):
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        copies += [(src, args[-1]) for src in args[:-1]]
    return copies


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The build context `lab up --backend docker` stages, without the wheels it downloads."""
    stage = tmp_path_factory.mktemp("stage") / "docker-context"
    compose_file = docker_lab.stage_files(stage)
    assert compose_file == stage / "docker" / "compose.yml"
    return stage


def test_every_image_builds_from_the_debian_base_and_finds_what_it_copies(staged: Path) -> None:
    checked = 0
    for name, service in compose()["services"].items():
        build = service["build"]
        context = (staged / "docker" / build["context"]).resolve()
        assert context == staged, name
        dockerfile = context / build["dockerfile"].replace("${RECORDER_LAB_PROM_FLAVOR:-}", "")
        assert dockerfile.is_file(), dockerfile
        text = dockerfile.read_text()
        stages = re.findall(r"^FROM \S+ AS (\S+)$", text, re.M)
        # Every stage from the Debian base or from an earlier stage of the same file.
        bases = [b for b in re.findall(r"^FROM (\S+)", text, re.M) if b not in stages]
        assert set(bases) == {"debian:bookworm-slim"}, f"{name}: FROM {bases}"
        for word in re.findall(r"--from=(\S+)", text):
            assert word in stages, f"{dockerfile}: COPY --from={word}"
        for source, _ in _copies(dockerfile):
            assert (context / source).exists(), f"{name}: COPY {source}: missing"
            checked += 1
    # src/: what the wheel stage builds from (the checkout's source here).
    assert (staged / "src" / "pyproject.toml").is_file()
    assert (staged / "src" / "recorder" / "lab" / "docker.py").is_file()
    assert not list(staged.rglob("__pycache__")) and not list(staged.rglob("*.so"))
    # The prom/* images stay one variable away (RECORDER_LAB_PROM_FLAVOR=.upstream).
    for name in ("prometheus", "alertmanager"):
        upstream = (DOCKER_DIR / name / "Dockerfile.upstream").read_text()
        assert re.search(rf"^FROM prom/{name}:v", upstream, re.M), name
    assert checked >= 5


def test_entrypoint_is_executable_and_runs_the_app_file_of_the_local_lab(staged: Path) -> None:
    entrypoint = DOCKER_DIR / "lab" / "entrypoint.sh"
    assert entrypoint.stat().st_mode & stat.S_IXUSR
    copies = dict(_copies(DOCKER_DIR / "lab" / "Dockerfile"))
    assert copies["docker/lab/app.py"] == "/opt/lab/"  # several sources: into the directory
    assert copies["docker/nginx"] == "/opt/lab/"  # its contents: /opt/lab/HOST/...
    assert "/opt/lab/app.py" in entrypoint.read_text()
    assert '"/opt/lab/${LAB_HOST}/nginx.conf"' in entrypoint.read_text()
    assert (staged / "docker" / "nginx" / "lb-01" / "nginx.conf").is_file()
    # The staged app.py is the local lab's own file.
    app = Path(docker_lab.__file__).with_name("app.py")
    assert (staged / "docker" / "lab" / "app.py").read_bytes() == app.read_bytes()


def test_staging_keeps_the_labs_tokens_and_never_copies_the_checkouts(tmp_path: Path) -> None:
    stage = tmp_path / "docker-context"
    docker_lab.stage_files(stage)
    token = docker_lab.ensure_webhook_token(stage / "docker").read_text()
    docker_lab.stage_files(stage)  # a second `lab up` of the same lab
    secret = stage / "docker" / "secrets" / "webhook-token"
    assert secret.read_text() == token and secret.stat().st_mode & 0o777 == 0o600
    fresh = tmp_path / "other"
    docker_lab.stage_files(fresh)
    assert not (fresh / "docker" / "secrets").exists()


def test_rendered_files_match_the_lab_templates() -> None:
    """docker/nginx/* and docker/recorder.yml come from recorder/lab/templates.py."""
    for rel, text in docker_lab.rendered_files().items():
        path = DOCKER_DIR / rel
        assert path.is_file(), f"{path} missing: run python -m recorder.lab.docker"
        assert path.read_text() == text, f"{path} is stale: run python -m recorder.lab.docker"
    lb = (DOCKER_DIR / "nginx/lb-01/sites-available/example").read_text()
    assert "server web-01:80;" in lb and "server web-02:80;" in lb


# ---- the backend's argv, against a fake docker CLI -----------------------------------

FAKE_DOCKER = """\
#!{python}
# A fake `docker` (or `docker-compose`) CLI: records its argv (and the lb port it was
# given) and answers the few questions the lab asks. Nothing here emulates the engine.
import json, os, sys
argv = sys.argv[1:]
prog = os.path.basename(sys.argv[0])
with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
    port = os.environ.get("RECORDER_LAB_LB_PORT")
    log.write(json.dumps({{"prog": prog, "argv": argv, "lb_port": port}}) + "\\n")
if argv[:2] == ["compose", "version"] and os.environ.get("FAKE_DOCKER_NO_COMPOSE"):
    sys.stderr.write("docker: unknown command: docker compose\\n")
    sys.exit(1)
if argv[:2] == ["inspect", "-f"]:
    for name in argv[3:]:
        print(f"/{{name}} healthy")
if argv[:1] == ["exec"] and argv[-1] == "/run/nginx.pid":
    print("7")
sys.exit(0)
"""


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "docker"
    script.write_text(FAKE_DOCKER.format(python=sys.executable))
    script.chmod(0o755)
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(tmp_path / "argv.jsonl"))
    # Only the fakes on PATH: the machine's own docker-compose must not answer.
    monkeypatch.setenv("PATH", str(bin_dir))
    return script


def calls(fake: Path) -> list[dict[str, Any]]:
    log = fake.parent.with_name("argv.jsonl")
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.fixture
def published_lb() -> Iterator[int]:
    """A real HTTP server standing where Docker would publish lb-01's port."""

    class OK(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), OK)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def execs(records: list[dict[str, Any]], container: str) -> list[list[str]]:
    prefix = ["exec", "-i", container]
    return [r["argv"][3:] for r in records if r["argv"][:3] == prefix]


def staged_lab(tmp_path: Path, fake_docker: Path, compose_file: Path, lb_port: int) -> Lab:
    """A docker lab on a build context the test staged (no wheels downloaded)."""
    return Lab(
        tmp_path / "lab",
        backend="docker",
        docker=str(fake_docker),
        compose_file=compose_file,
        lb_port=lb_port,
    )


def test_docker_backend_drives_compose_and_faults_by_docker_exec(
    tmp_path: Path, fake_docker: Path, published_lb: int
) -> None:
    compose_file = docker_lab.stage_files(tmp_path / "stage")
    compose_argv = ["compose", "-f", str(compose_file), "-p", "recorder-lab"]
    lab = staged_lab(tmp_path, fake_docker, compose_file, published_lb)
    status = lab.up()
    records = calls(fake_docker)
    names = [f"recorder-lab-{h}" for h in ("lb-01", "web-01", "web-02")]
    assert [r["argv"] for r in records[:4]] == [
        ["compose", "version"],
        # each image once (v2 builds them in parallel by itself), then up without --build
        [*compose_argv, "build", "recorder", "alertmanager", "prometheus"],
        [*compose_argv, "up", "-d"],
        # compose 1.29 has no --wait: the backend waits for the healthchecks itself
        ["inspect", "-f", "{{.Name}} {{.State.Health.Status}}", *names],
    ]
    assert records[2]["lb_port"] == str(published_lb)
    assert status["backend"] == "docker"
    assert status["hosts"]["lb-01"]["url"] == f"http://127.0.0.1:{published_lb}/"
    assert status["hosts"]["web-01"]["container"] == "recorder-lab-web-01"
    assert status["config"] == str(compose_file.parent / "recorder.yml")
    # The tokens compose mounts as secrets, made before `up`, 0600.
    for name in ("webhook-token", "read-token"):
        assert (compose_file.parent / "secrets" / name).stat().st_mode & 0o777 == 0o600

    # Later commands come from a new Lab, as from a new CLI run: the state says docker.
    later = Lab(tmp_path / "lab", docker=str(fake_docker))
    start = len(calls(fake_docker))
    truth = later.break_("missing-symlink", host="web-01")
    assert truth["reload"] == "reloaded"
    web1 = execs(calls(fake_docker)[start:], "recorder-lab-web-01")
    assert ["rm", "-f", "--", "/etc/nginx/sites-enabled/example"] in web1
    assert ["nginx", "-t"] in web1
    assert web1[-1] == ["kill", "-HUP", "7"]

    start = len(calls(fake_docker))
    later.break_("backend-5xx", rate=0.25)
    write = execs(calls(fake_docker)[start:], "recorder-lab-web-01")[-1]
    assert write[:2] == ["sh", "-c"] and write[3:] == [
        "sh",
        '{"backend-5xx": {"error_rate": 0.25}}\n',
        "/var/lib/lab-app/faults.json",
    ]

    start = len(calls(fake_docker))
    deploy = later.break_("bad-deploy", host="web-02", version="9.9.9")
    assert deploy["version"] == "9.9.9"
    assert [
        "exec",
        "recorder-lab-recorder",
        "recorder",
        "--config",
        "/etc/recorder/recorder.yml",
        "event",
        "deploy",
        "--service",
        "web",
        "--version",
        "9.9.9",
    ] in [r["argv"] for r in calls(fake_docker)[start:]]

    start = len(calls(fake_docker))
    fixed = later.fix()
    assert {(f["fault"], f["host"]) for f in fixed} == {
        ("missing-symlink", "web-01"),
        ("backend-5xx", "web-01"),
        ("bad-deploy", "web-02"),
    }
    web1 = execs(calls(fake_docker)[start:], "recorder-lab-web-01")
    link = ["ln", "-sfn", "--", "/etc/nginx/sites-available/example"]
    assert [*link, "/etc/nginx/sites-enabled/example"] in web1
    assert ["kill", "-HUP", "7"] in web1
    assert later.status()["hosts"]["web-02"]["running"] is True

    start = len(calls(fake_docker))
    later.down()
    # --volumes: the recorder's store and Prometheus's data go with the lab.
    assert [r["argv"] for r in calls(fake_docker)[start:]] == [
        [*compose_argv, "down", "--remove-orphans", "--volumes"]
    ]
    assert later.status()["up"] is False


def test_docker_backend_falls_back_to_docker_compose_and_follows_docker_host(
    tmp_path: Path, fake_docker: Path, published_lb: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Debian's docker-compose (1.29) when the `docker compose` plugin is missing; the
    socket compose mounts into the recorder follows DOCKER_HOST."""
    monkeypatch.setenv("FAKE_DOCKER_NO_COMPOSE", "1")
    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/some-engine/docker.sock")
    monkeypatch.delenv("DOCKER_SOCK", raising=False)
    (fake_docker.parent / "docker-compose").symlink_to(fake_docker)
    compose_file = docker_lab.stage_files(tmp_path / "stage")
    lab = staged_lab(tmp_path, fake_docker, compose_file, published_lb)
    lab.up()
    used = [(r["prog"], r["argv"]) for r in calls(fake_docker)]
    compose_file_args = ["-f", str(compose_file), "-p", "recorder-lab"]
    assert used[:4] == [
        ("docker", ["compose", "version"]),  # no plugin
        ("docker-compose", ["version"]),
        # 1.29 builds one image at a time unless told
        ("docker-compose", [*compose_file_args, "build", "--parallel", *docker_lab.BUILT_SERVICES]),
        ("docker-compose", [*compose_file_args, "up", "-d"]),
    ]
    assert docker_lab.docker_env(8080)["DOCKER_SOCK"] == "/tmp/some-engine/docker.sock"
    start = len(calls(fake_docker))
    Lab(tmp_path / "lab", docker=str(fake_docker)).down()
    assert [r["prog"] for r in calls(fake_docker)[start:]] == ["docker-compose"]


def test_compose_v2_is_preferred_whenever_the_plugin_answers(
    fake_docker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """v2 is not packaged on the test machine: a fake `docker` that answers `compose
    version` stands for it, with Debian's docker-compose present as well."""
    (fake_docker.parent / "docker-compose").symlink_to(fake_docker)
    assert docker_lab.compose_command(str(fake_docker)) == [str(fake_docker), "compose"]
    backend = docker_lab.DockerBackend(docker=str(fake_docker))
    backend.compose = docker_lab.compose_command(str(fake_docker))
    # v2 builds the images in parallel by itself (and no longer honours --parallel).
    assert backend._build_args() == ["build", *docker_lab.BUILT_SERVICES]
    monkeypatch.setenv("FAKE_DOCKER_NO_COMPOSE", "1")
    assert docker_lab.compose_command(str(fake_docker)) == ["docker-compose"]


def test_docker_backend_says_what_is_missing(
    tmp_path: Path, fake_docker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_DOCKER_NO_COMPOSE", "1")
    with pytest.raises(LabError, match="needs Docker with the compose plugin"):
        Lab(tmp_path / "a", backend="docker", docker=str(fake_docker)).up()
    with pytest.raises(LabError, match="not found"):
        Lab(tmp_path / "b", backend="docker", docker=str(tmp_path / "no-docker")).up()
    assert not Lab(tmp_path / "a").status()["up"]
    # Nothing was staged or downloaded before the missing compose was found.
    assert not (tmp_path / "a" / "docker-context").exists()
    # The CLI reaches the same backend; RECORDER_LAB_DOCKER names the client.
    from click.testing import CliRunner

    from recorder.cli import main

    env = {"RECORDER_LAB_DOCKER": str(fake_docker), "FAKE_DOCKER_NO_COMPOSE": "1"}
    result = CliRunner().invoke(
        main, ["lab", "up", "--backend", "docker", "--dir", str(tmp_path / "c")], env=env
    )
    assert result.exit_code == 1
    assert "compose plugin" in result.output
    assert os.environ.get("RECORDER_LAB_DOCKER") is None
