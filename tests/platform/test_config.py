"""Offline checks of the deployment files: Ansible lint, client helpers, status (compose: test_compose.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mlops.tracking import load_client_env, read_env_file
from mlops_cli.status import PlatformStatus, ServiceHealth, render_status

REPO = Path(__file__).resolve().parents[2]


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
    assert not PlatformStatus("https://x/", [ok], auth="MLflow: anonymous API call NOT refused", auth_ok=False).healthy


@pytest.mark.parametrize(("body", "refused"), [
    ("<html><head><title>Node Exporter</title></head></html>", True),
    ('<?xml version="1.0"?><ListAllMyBucketsResult><Buckets/></ListAllMyBucketsResult>', False),
], ids=["another-program", "s3-store"])
def test_s3_store_readiness_refuses_another_program_on_its_port(tmp_path, body, refused):
    # A second instance's node exporter once held the store's port: it answered 200, so the old check
    # passed while s3rver could not bind. The role's readiness check now wants the store's bucket list.
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    playbook = tmp_path / "ready.yml"
    playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"ansible.builtin.include_role": {"name": "s3server", "tasks_from": "ready"}}]}]))
    (tmp_path / "vars.json").write_text(json.dumps({
        "s3server_listen_address": "127.0.0.1", "s3server_port": server.server_address[1],
        "s3server_ready_timeout": 2}))
    try:
        result = subprocess.run(
            [str(REPO / ".venv/bin/ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook),
             "-e", f"@{tmp_path / 'vars.json'}"],
            capture_output=True, text=True, timeout=120, check=False,
            env={"ANSIBLE_ROLES_PATH": str(REPO / "ansible/roles"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        )
    finally:
        server.shutdown()
    if refused:
        assert result.returncode != 0, result.stdout[-2000:]
        assert "does not answer as the S3 store" in result.stdout, result.stdout[-2000:]
        assert "another program listening there" in result.stdout
    else:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]


def test_project_sources_travel_once_and_only_when_they_change(tmp_path):
    """The mlops role's project copy (serving, trainer and MLflow's app install from it): the packaging file and
    the packages' Python sources arrive as root's, files 0644 and directories 0755, nothing else (caches, data);
    a second run changes nothing and says so; an edited source arrives and marks the project changed; a checkout
    without sources fails naming them. The controller keeps nothing of the archive."""
    source, dest, controller_tmp = tmp_path / "checkout", tmp_path / "host/src", tmp_path / "controller-tmp"
    for path, text in {"pyproject.toml": "[project]\nname = 'probe'\n", "pkg/__init__.py": "",
                       "pkg/sub/mod.py": "VALUE = 1\n", "pkg/notes.txt": "not a source\n",
                       "pkg/__pycache__/mod.cpython-311.pyc": "cache"}.items():
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        (source / path).write_text(text)
    controller_tmp.mkdir()
    playbook = tmp_path / "copy.yml"
    playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"ansible.builtin.include_role": {"name": "mlops", "tasks_from": "project"}},
        {"ansible.builtin.debug": {"msg": "project changed: {{ __mlops_project_changed }}"}}]}]))

    def copy(packages: list[str]) -> subprocess.CompletedProcess[str]:
        (tmp_path / "vars.json").write_text(json.dumps({
            # As the serving role names it (playbook_dir ~ '/..'): a path through '..'.
            "mlops_project_source": f"{source}/pkg/..", "mlops_project_dest": str(dest),
            "mlops_project_packages": packages}))
        return subprocess.run(
            [str(REPO / ".venv/bin/ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook),
             "-e", f"@{tmp_path / 'vars.json'}"],
            capture_output=True, text=True, timeout=120, check=False,
            env={"ANSIBLE_ROLES_PATH": str(REPO / "ansible/roles"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                 "TMPDIR": str(controller_tmp)},
        )

    first = copy(["pkg"])
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-1000:]
    assert "project changed: True" in first.stdout
    copied = sorted(str(p.relative_to(dest)) for p in dest.rglob("*"))
    assert copied == [".sources.sha256", "README.md", "pkg", "pkg/__init__.py", "pkg/sub", "pkg/sub/mod.py",
                      "pyproject.toml"], copied
    for path in dest.rglob("*"):
        assert (path.stat().st_uid, path.stat().st_gid) == (0, 0), path
        assert path.stat().st_mode & 0o777 == (0o755 if path.is_dir() else 0o644), (path, oct(path.stat().st_mode))
    assert not list(controller_tmp.iterdir()), "the archive was left on the controller"

    second = copy(["pkg"])
    assert second.returncode == 0 and "project changed: False" in second.stdout, second.stdout[-3000:]
    assert re.search(r"changed=0\s", second.stdout), second.stdout[-3000:]

    (source / "pkg/sub/mod.py").write_text("VALUE = 2\n")
    third = copy(["pkg"])
    assert third.returncode == 0 and "project changed: True" in third.stdout, third.stdout[-3000:]
    assert (dest / "pkg/sub/mod.py").read_text() == "VALUE = 2\n"
    assert not list(controller_tmp.iterdir())

    (source / "empty").mkdir()
    missing = copy(["empty"])
    assert missing.returncode != 0 and "No Python sources of empty under" in missing.stdout, missing.stdout[-3000:]
