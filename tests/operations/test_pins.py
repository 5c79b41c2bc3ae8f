"""Pins live in pyproject.toml only: the Ansible roles install what it pins, and name no versions.

(These replace the check that the mlflow role's own `mlflow_version` equals the client pin: the
role has no copy any more, it reads pyproject.toml.)
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
ANSIBLE = REPO / "ansible"
# Packages the project pins; a version of one of them written anywhere in ansible/ is a second pin.
PINNED = re.compile(r"\b(mlflow|torch|torchao|intel-extension-for-pytorch|psycopg2-binary)\s*==\s*[0-9]")
VERSION_LITERAL = re.compile(r"^\s*mlflow_version:\s*['\"]?[0-9]", re.M)


def _project_pin(name: str) -> str:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(d.split("==", 1)[1] for d in deps if d.startswith(f"{name}=="))


def test_ansible_pins_no_versions_of_its_own():
    offenders = []
    for path in sorted(ANSIBLE.rglob("*")):
        if path.suffix not in {".yml", ".yaml", ".j2", ".mk", ".cfg"} or not path.is_file():
            continue
        text = path.read_text()
        offenders += [f"{path.relative_to(REPO)}: {m.group(0)}" for m in PINNED.finditer(text)]
        offenders += [f"{path.relative_to(REPO)}: {m.group(0).strip()}" for m in VERSION_LITERAL.finditer(text)]
    assert not offenders, "versions are pinned in pyproject.toml only:\n" + "\n".join(offenders)


@pytest.mark.integration
def test_mlflow_server_runs_the_client_pin(platform):
    """The server the mlflow role installed (by default from pyproject.toml's pin) is the release
    the client and every other environment pin."""
    url = f"http://127.0.0.1:{platform.ports['mlflow_port']}/version"
    assert requests.get(url, auth=("admin", platform.admin_password), timeout=10).text.strip() == _project_pin("mlflow")
    installed = platform.path("home") / "venv" / "bin" / "mlflow"
    assert installed.exists()
