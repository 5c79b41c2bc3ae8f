"""Scheduled `mlflow gc`: a deleted run's artifacts leave the store once it is old enough."""

from __future__ import annotations

import time
import uuid

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAY_MS = 24 * 3600 * 1000


def test_scheduled_gc_removes_old_deleted_runs_and_their_artifacts(
    platform, client, mlflow_db, bucket_keys, run_job, job_log
):
    experiment_id = client.create_experiment(f"ops-gc-{uuid.uuid4().hex[:8]}")
    runs = {}
    for label in ("old", "recent", "kept"):
        run = client.create_run(experiment_id, run_name=label)
        client.log_text(run.info.run_id, f"{label} artifact", "data/note.txt")
        client.set_terminated(run.info.run_id)
        runs[label] = run.info.run_id
    prefix = {label: f"{experiment_id}/{run_id}/" for label, run_id in runs.items()}
    for label in runs:
        assert bucket_keys(prefix[label]), f"{label}: artifact not in the store"

    client.delete_run(runs["old"])
    client.delete_run(runs["recent"])
    # The run deleted 40 days ago (gc's --older-than is 30d): move its deletion time back.
    with mlflow_db.cursor() as cur:
        cur.execute(
            "UPDATE runs SET deleted_time = %s WHERE run_uuid = %s",
            (int(time.time() * 1000) - 40 * DAY_MS, runs["old"]),
        )
        assert cur.rowcount == 1

    result = run_job("gc")
    log = job_log("gc")
    assert result.returncode == 0, result.output + log[-3000:]
    assert "gc: finished (exit status 0)" in log

    assert not bucket_keys(prefix["old"]), "the old deleted run's artifacts are still in the store"
    s3_dir = platform.path("data") / "s3" / "mlflow-artifacts"
    assert not [p for p in s3_dir.rglob("*") if runs["old"] in str(p) and p.is_file()], "still on s3rver's disk"
    assert bucket_keys(prefix["recent"]), "a run deleted less than 30 days ago lost its artifacts"
    assert bucket_keys(prefix["kept"]), "a live run lost its artifacts"
    with mlflow_db.cursor() as cur:
        cur.execute("SELECT run_uuid, lifecycle_stage FROM runs WHERE experiment_id = %s", (int(experiment_id),))
        stages = dict(cur.fetchall())
    assert stages == {runs["recent"]: "deleted", runs["kept"]: "active"}


def test_gc_job_reaches_the_tracking_server_directly(platform):
    """Proxied artifacts (mlflow-artifacts:/) are deleted through the server: the job sets
    MLFLOW_TRACKING_URI to the server's loopback address (its login is in its HOME's credentials file, never
    in the script)."""
    script = (platform.path("home") / "bin" / "job-gc").read_text()
    assert f"MLFLOW_TRACKING_URI=http://127.0.0.1:{platform.ports['mlflow_port']}" in script
    assert "--older-than 30d" in script
    assert platform.db_password not in script and platform.admin_password not in script
