"""Offline checks of the deployment files: compose topology, pins, lint, client helpers."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from mlops.tracking import load_client_env, read_env_file
from mlops_cli.status import PlatformStatus, ServiceHealth, render_status

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
LONG_RUNNING = {"postgres", "minio", "mlflow", "serving", "scheduler", "nginx"}
ONE_SHOT = {"minio-init", "mlflow-db-upgrade", "nginx-init"}


def _pyproject_mlflow_pin() -> str:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(d.split("==")[1] for d in deps if d.startswith("mlflow=="))


def test_compose_has_the_platform_services():
    assert set(SERVICES) == LONG_RUNNING | ONE_SHOT


@pytest.mark.parametrize("name", sorted(LONG_RUNNING))
def test_compose_long_running_services_have_healthchecks(name):
    assert SERVICES[name]["healthcheck"]["test"]


def test_compose_dependencies_wait_for_health_and_init():
    assert SERVICES["mlflow"]["depends_on"] == {
        "mlflow-db-upgrade": {"condition": "service_completed_successfully"},
        "minio-init": {"condition": "service_completed_successfully"},
    }
    assert SERVICES["mlflow-db-upgrade"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert SERVICES["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    assert SERVICES["nginx"]["depends_on"]["mlflow"]["condition"] == "service_healthy"
    for name in ONE_SHOT:
        assert SERVICES[name]["restart"] == "no"


def test_compose_publishes_only_nginx():
    published = {name for name, svc in SERVICES.items() if svc.get("ports")}
    assert published == {"nginx"}


def test_compose_images_are_pinned():
    for name, svc in SERVICES.items():
        image = svc["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: {image}"


def test_compose_mlflow_matches_the_project_pin():
    pin = _pyproject_mlflow_pin()
    dockerfile = SERVICES["mlflow"]["build"]["dockerfile_inline"]
    assert f"mlflow=={pin}" in dockerfile
    assert SERVICES["mlflow"]["image"].endswith(f":{pin}")


def test_compose_required_variables_fail_loudly():
    text = (REPO / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    assert {"POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "MLOPS_ADMIN_PASSWORD"} <= required
    example = read_env_file(REPO / ".env.example")
    assert required <= set(example), "every required variable is listed in .env.example"
    assert not (REPO / ".env").exists() or ".env" in (REPO / ".gitignore").read_text()


def test_compose_nginx_mounts_the_shared_template():
    volumes = SERVICES["nginx"]["volumes"]
    assert "./nginx/templates:/etc/nginx/templates:ro" in volumes
    template = (REPO / "nginx/templates/mlops.conf.template").read_text()
    used = set(re.findall(r"\$\{(MLOPS_[A-Z_]+)\}", template))
    assert used == set(k for k in SERVICES["nginx"]["environment"] if k.startswith("MLOPS_"))


def test_ansible_role_pins_the_same_mlflow_as_the_client():
    defaults = yaml.safe_load((REPO / "ansible/roles/mlflow/defaults/main.yml").read_text())
    assert defaults["mlflow_version"] == _pyproject_mlflow_pin()


@pytest.mark.slow
def test_ansible_lint_production_profile_is_clean():
    lint = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin" / "ansible-lint"
    if not lint.exists():
        lint = REPO / ".venv/bin/ansible-lint"
    result = subprocess.run(
        [str(lint), "--profile", "production", "--offline"], cwd=REPO / "ansible",
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]


def test_read_env_file_parses_and_rejects(tmp_path):
    good = tmp_path / "ok.env"
    good.write_text("# comment\n\nA=1\nexport B='two words'\nC=\"x=y\"\n")
    assert read_env_file(good) == {"A": "1", "B": "two words", "C": "x=y"}
    bad = tmp_path / "bad.env"
    bad.write_text("A=1\nnot a pair\n")
    with pytest.raises(ValueError, match="bad.env:2"):
        read_env_file(bad)


def test_load_client_env_respects_an_explicit_tracking_uri(tmp_path, monkeypatch):
    env_file = tmp_path / "local.env"
    env_file.write_text("MLFLOW_TRACKING_URI=https://platform:8443\nMLFLOW_TRACKING_USERNAME=admin\n")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://elsewhere")
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    assert load_client_env(env_file) is None
    assert "MLFLOW_TRACKING_USERNAME" not in os.environ
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert load_client_env(env_file) == env_file
    assert os.environ["MLFLOW_TRACKING_URI"] == "https://platform:8443"


def test_status_is_unhealthy_when_any_service_fails():
    ok = ServiceHealth("mlflow", "RUNNING", "HTTP 200", True)
    down = ServiceHealth("postgresql", "STOPPED", "refused", False)
    assert PlatformStatus("https://x/", [ok]).healthy
    report = PlatformStatus("https://x/", [ok, down])
    assert not report.healthy
    assert "FAILING" in render_status(report)
    assert not PlatformStatus("https://x/", []).healthy


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_compose_nginx_config_passes_nginx_t(platform, tmp_path):
    """Render the shared template with compose's values (as envsubst would) and run `nginx -t`.

    Upstream service names only resolve inside the compose network: loopback addresses stand in.
    """
    env = dict(SERVICES["nginx"]["environment"])
    tls = platform.path("config") / "nginx" / "tls"
    env.update(
        MLOPS_PUBLIC_HTTPS_PORT="8443", MLOPS_TLS_CERT=str(tls / "server.crt"),
        MLOPS_TLS_KEY=str(tls / "server.key"), MLOPS_HTPASSWD=str(tmp_path / "htpasswd"),
        MLOPS_MLFLOW_UPSTREAM="127.0.0.1:5000", MLOPS_SERVING_UPSTREAM="127.0.0.1:8700",
    )
    (tmp_path / "htpasswd").write_text("admin:$6$salt$x\n")
    text = (REPO / "nginx/templates/mlops.conf.template").read_text()
    rendered = re.sub(r"\$\{(MLOPS_[A-Z_]+)\}", lambda m: str(env[m.group(1)]), text)
    (tmp_path / "conf.d.conf").write_text(rendered)
    for sub in ("logs", "tmp"):
        (tmp_path / sub).mkdir()
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"pid {tmp_path}/nginx.pid; error_log {tmp_path}/logs/error.log;\n"
        f"events {{}}\nhttp {{ client_body_temp_path {tmp_path}/tmp/b; proxy_temp_path {tmp_path}/tmp/p;"
        f" fastcgi_temp_path {tmp_path}/tmp/f; uwsgi_temp_path {tmp_path}/tmp/u; scgi_temp_path {tmp_path}/tmp/s;"
        f" include {tmp_path}/conf.d.conf; }}\n"
    )
    result = subprocess.run(["nginx", "-t", "-p", str(tmp_path), "-c", str(main)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
