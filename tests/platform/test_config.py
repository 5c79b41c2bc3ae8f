"""Offline checks of the deployment files: Ansible lint, client helpers, status (compose: test_compose.py)."""

from __future__ import annotations

import os
import subprocess
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
