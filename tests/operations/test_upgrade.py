"""`make upgrade`: an instance provisioned at the previous MLflow minor, with data, moves to the
pinned version; nothing is lost and the server is healthy.

It provisions a second private instance of its own (its own root, name and ports), with the same
`make up` and a vars file that pins the previous MLflow release, then runs `make upgrade`.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import tomllib
from pathlib import Path

import pytest
import requests
import yaml

from mlops.tracking import read_env_file

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("MLOPS_TEST_UPGRADE"),
        reason="provisions a second platform instance (several minutes): run by `make test-upgrade`, "
        "which `make test` includes (it sets MLOPS_TEST_UPGRADE=1)",
    ),
]

REPO = Path(__file__).resolve().parents[2]
PREVIOUS = "3.16.1"
OFFSET = int(os.environ.get("MLOPS_TEST_PORT_OFFSET", "0")) + 100


def _pinned() -> str:
    """The mlflow pin in pyproject.toml: the one place it is written (the mlflow role reads it)."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(d.split("==", 1)[1] for d in deps if d.startswith("mlflow=="))


@pytest.fixture(scope="module")
def old_instance(make_target, instance_ports):  # noqa: ANN001, ANN201
    """A platform instance at MLflow PREVIOUS; stopped and removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="mlops-upgrade-"))
    instance = f"mlopsupgrade{OFFSET}"
    vars_file = root / "vars.yml"
    settings = {
        "mlops_root": str(root), "mlops_instance": instance, "mlops_client_state_dir": str(root / "client"),
        "nginx_server_name": "mlops-test.internal", "mlops_client_host": "127.0.0.1",
        # Only what the upgrade touches: no serving app (its torch environment is not under test).
        "serving_enabled": False,
        "mlflow_version": PREVIOUS, **instance_ports(OFFSET),
    }
    vars_file.write_text(yaml.safe_dump(settings))
    try:
        up = make_target("up", vars_file=vars_file, check=False)
        assert up.returncode == 0, up.stdout[-5000:] + up.stderr[-2000:]
        yield {"root": root, "vars_file": vars_file, "instance": instance, "settings": settings}
    finally:
        make_target("down", vars_file=vars_file, timeout=300, check=False)
        for path in Path("/etc/cron.d").glob(f"{instance}-*"):
            path.unlink()
        if not os.environ.get("MLOPS_KEEP_TEST_ROOT"):
            shutil.rmtree(root, ignore_errors=True)


def test_upgrade_from_the_previous_minor_keeps_the_data(old_instance, monkeypatch, make_target):
    import mlflow

    target = _pinned()
    assert tuple(map(int, PREVIOUS.split("."))) < tuple(map(int, target.split(".")))
    settings = old_instance["settings"]
    mlflow_url = f"http://127.0.0.1:{settings['mlflow_port']}"
    admin = ("admin", (old_instance["root"] / "client" / "credentials" / "mlflow-admin").read_text().strip())
    assert requests.get(f"{mlflow_url}/version", auth=admin, timeout=10).text.strip() == PREVIOUS

    env = read_env_file(old_instance["root"] / "client" / "admin.env")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    experiment_id = client.create_experiment("upgrade-data")
    run = client.create_run(experiment_id, run_name="before-upgrade")
    client.log_param(run.info.run_id, "alpha", "0.5")
    client.log_metric(run.info.run_id, "rmse", 0.25)
    client.log_text(run.info.run_id, "kept", "notes/kept.txt")
    client.set_terminated(run.info.run_id)
    client.create_registered_model("upgrade-model")
    version = client.create_model_version("upgrade-model", source=f"runs:/{run.info.run_id}/model",
                                          run_id=run.info.run_id)
    client.set_registered_model_alias("upgrade-model", "champion", version.version)

    # A downgrade is refused before anything changes.
    refused = make_target("upgrade", "MLFLOW_VERSION=3.15.0", vars_file=old_instance["vars_file"], check=False)
    assert refused.returncode != 0
    assert "A downgrade is not supported" in refused.stdout, refused.stdout[-3000:]
    assert requests.get(f"{mlflow_url}/version", auth=admin, timeout=10).text.strip() == PREVIOUS

    upgraded = make_target("upgrade", f"MLFLOW_VERSION={target}", vars_file=old_instance["vars_file"], check=False)
    assert upgraded.returncode == 0, upgraded.stdout[-6000:] + upgraded.stderr[-2000:]
    out = upgraded.stdout
    assert f"Upgrading MLflow {PREVIOUS} -> {target}" in out
    # In order: backup, MLflow (after the database), nginx last. (The playbook first reads the
    # settings of the roles it acts on: look only after the version line.)
    position = out.index(f"Upgrading MLflow {PREVIOUS}")
    for step in ("backup : Run the backup job now", "mlflow : Upgrade the backend store schema",
                 "Run the MLflow tracking server", "Restart nginx last", "Check the version now running"):
        assert step in out[position:], f"{step!r} missing or out of order"
        position = out.index(step, position)
    assert re.search(r"backup [0-9T.]+Z complete", out)
    db_password = (old_instance["root"] / "client" / "credentials" / "postgresql-mlflow").read_text().strip()
    assert db_password not in out and env["MLFLOW_TRACKING_PASSWORD"] not in out
    # The pin in the repository is (still) the version now running.
    assert _pinned() == target

    assert requests.get(f"{mlflow_url}/version", auth=admin, timeout=10).text.strip() == target
    health = requests.get(f"https://127.0.0.1:{settings['nginx_https_port']}/health", verify=False, timeout=10)  # noqa: S501
    assert health.status_code == 200, health.text
    restored = client.get_run(run.info.run_id)
    assert restored.data.params == {"alpha": "0.5"} and restored.data.metrics == {"rmse": 0.25}
    assert client.download_artifacts(run.info.run_id, "notes/kept.txt", dst_path=str(old_instance["root"]))
    assert client.get_model_version_by_alias("upgrade-model", "champion").version == version.version
