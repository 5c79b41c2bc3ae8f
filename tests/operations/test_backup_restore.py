"""Backups of the self-hosted PostgreSQL to the artifact store, retention, and `make restore`."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
PREFIX = "backups/"
NAME = re.compile(r"^[0-9]{8}T[0-9]{6}\.[0-9]{3}Z$")


def _sets(bucket_keys) -> dict[str, set[str]]:
    sets: dict[str, set[str]] = {}
    for key in bucket_keys(PREFIX):
        name, _, filename = key[len(PREFIX):].partition("/")
        sets.setdefault(name, set()).add(filename)
    return sets


def _complete(bucket_keys) -> list[str]:
    return sorted((n for n, files in _sets(bucket_keys).items() if "MANIFEST.json" in files), reverse=True)


def _assert_no_secret(platform, text: str) -> None:
    for secret in (platform.db_password, platform.admin_password):
        assert secret not in text, "a password appears in the Ansible output"


def test_backup_wipe_restore_brings_back_runs_models_and_aliases(
    platform, client, bucket_keys, s3, psql_admin, mlflow_db
):
    tag = uuid.uuid4().hex[:8]
    experiment_id = client.create_experiment(f"ops-backup-{tag}")
    run = client.create_run(experiment_id, run_name="before-backup")
    client.log_param(run.info.run_id, "alpha", "0.5")
    client.log_metric(run.info.run_id, "rmse", 0.25)
    client.set_terminated(run.info.run_id)
    model = f"ops-backup-model-{tag}"
    client.create_registered_model(model)
    version = client.create_model_version(model, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    client.set_registered_model_alias(model, "champion", version.version)
    before = set(_complete(bucket_keys))

    backup = platform.make("backup").stdout
    _assert_no_secret(platform, backup)
    new = set(_complete(bucket_keys)) - before
    assert len(new) == 1, (new, backup[-3000:])
    name = new.pop()
    assert NAME.match(name)
    manifest = json.loads(s3.get_object(Bucket="mlflow-artifacts", Key=f"{PREFIX}{name}/MANIFEST.json")["Body"].read())
    assert "mlflow" in manifest["databases"]
    dump_key = f"{PREFIX}{name}/mlflow.dump"
    assert bucket_keys(dump_key)[dump_key] == manifest["databases"]["mlflow"]["size"] > 0
    assert f"backup {name} complete" in backup

    # Wipe: the backend store is dropped and comes back empty.
    mlflow_db.close()
    psql_admin("DROP DATABASE mlflow WITH (FORCE)")
    psql_admin("CREATE DATABASE mlflow OWNER mlflow")
    assert psql_admin("SELECT count(*) FROM pg_tables WHERE tablename = 'runs'", dbname="mlflow").strip() == "0"

    restore = platform.make("restore").stdout
    _assert_no_secret(platform, restore)
    assert f"Restored backup {name}" in restore

    restored = client.get_run(run.info.run_id)
    assert restored.data.params == {"alpha": "0.5"}
    assert restored.data.metrics == {"rmse": 0.25}
    assert restored.info.run_name == "before-backup"
    assert client.get_registered_model(model).aliases == {"champion": version.version}
    assert client.get_model_version_by_alias(model, "champion").run_id == run.info.run_id
    # The wiped database was kept, not dropped.
    assert psql_admin("SELECT datname FROM pg_database WHERE datname = 'mlflow_before_restore'").strip()


def test_restore_refuses_unknown_backups_and_changes_nothing(platform, client, bucket_keys):
    experiment = client.create_experiment(f"ops-after-backup-{uuid.uuid4().hex[:8]}")
    for bad, message in [
        ("yesterday", "BACKUP must be 'latest' or a backup name"),
        ("20000101T000000.000Z", "no complete backup named '20000101T000000.000Z'"),
    ]:
        result = platform.make("restore", f"BACKUP={bad}", check=False)
        assert result.returncode != 0
        assert message in result.stdout, result.stdout[-3000:]
    # Nothing was restored over the current data.
    assert client.get_experiment(experiment).lifecycle_stage == "active"


def test_retention_keeps_the_newest_backups(platform, s3, bucket_keys, run_job, job_log):
    """More than backup_keep (7) backups: after the scheduled job runs, only the newest 7 remain,
    and incomplete sets older than those go too."""
    keep = 7
    old = [f"20000101T0000{i:02d}.000Z" for i in range(keep + 1)]
    for name in old:
        s3.put_object(Bucket="mlflow-artifacts", Key=f"{PREFIX}{name}/mlflow.dump", Body=b"old")
        s3.put_object(Bucket="mlflow-artifacts", Key=f"{PREFIX}{name}/MANIFEST.json", Body=b"{}")
    incomplete = "19991231T000000.000Z"
    s3.put_object(Bucket="mlflow-artifacts", Key=f"{PREFIX}{incomplete}/mlflow.dump", Body=b"partial")
    expected_before = sorted(set(_complete(bucket_keys)), reverse=True)

    result = run_job("backup")
    assert result.returncode == 0, result.output + job_log("backup")[-3000:]

    complete = _complete(bucket_keys)
    assert len(complete) == keep, complete
    newest = max(complete)
    assert newest not in expected_before and NAME.match(newest)
    assert complete == sorted([newest, *expected_before], reverse=True)[:keep]
    assert incomplete not in _sets(bucket_keys)
    log = job_log("backup")
    assert "retention: deleted backup" in log and f"backup {newest} complete" in log
