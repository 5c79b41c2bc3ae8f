"""The artifact store's disk fills up: the upload fails with a clear error, and no run holds a broken artifact.

The S3 store's data directory is moved onto a tmpfs sized to what it holds plus a little (a small
filesystem the test creates and removes); the store is restarted on it. Runs last in the group
(files run in name order).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from mlops_cli.soak import error_kind

pytestmark = [pytest.mark.integration, pytest.mark.resilience]

HEADROOM = 24 * 2**20
UPLOAD = 64 * 2**20


def _du(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


@pytest.fixture
def small_store(platform, health):  # noqa: ANN001, ANN201
    """The S3 store on a tmpfs with HEADROOM free; its data moved back afterwards, whatever happened."""
    name = f"{platform.instance}-s3server"
    data = platform.path("data") / "s3"
    real = data.with_name("s3.real")
    stat = data.stat()
    assert "stopped" in platform.supervisorctl("stop", name).stdout
    data.rename(real)
    data.mkdir()
    size = _du(real) + HEADROOM
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0750", "tmpfs", str(data)],
                             capture_output=True, text=True, check=False)
    try:
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
        subprocess.run(["cp", "-a", f"{real}/.", str(data)], check=True)
        os.chown(data, stat.st_uid, stat.st_gid)
        assert "started" in platform.supervisorctl("start", name).stdout
        health.wait(120)
        yield data
    finally:
        platform.supervisorctl("stop", name)
        if mounted.returncode == 0:
            subprocess.run(["umount", str(data)], check=False)
        shutil.rmtree(data, ignore_errors=True) if not os.path.ismount(data) else None
        if not data.exists():
            real.rename(data)
        platform.supervisorctl("start", name)
        health.wait(120)


def test_a_full_artifact_disk_is_a_clear_error_and_no_broken_artifact(platform, health, small_store, client_env,
                                                                        patched_environ, tmp_path, results) -> None:  # noqa: ANN001
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    from mlops.tracking import experiment_id

    run = client.create_run(experiment_id("resilience-disk-full", client))
    run_id = run.info.run_id
    client.log_metric(run_id, "before", 1.0)
    small = tmp_path / "small.bin"
    small.write_bytes(os.urandom(1000))
    client.log_artifact(run_id, str(small), "ok")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(UPLOAD))
    started = time.monotonic()
    # Two retries, not seven: the disk stays full, and the point is the error the client ends with.
    with patched_environ({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}), \
            pytest.raises((MlflowException, OSError)) as failure:
        client.log_artifact(run_id, str(big), "full")
    error = str(failure.value)
    failed_after_s = time.monotonic() - started
    # The run is intact: its metric and the artifact logged before are there, the failed one is not listed
    # (or, if the store kept a piece of it, the listing must not claim a complete file).
    lost = []
    if client.get_run(run_id).data.metrics.get("before") != 1.0:
        lost.append("metric before")
    got = client.download_artifacts(run_id, "ok/small.bin", str(tmp_path / "back"))
    if Path(got).read_bytes() != small.read_bytes():
        lost.append("artifact ok/small.bin")
    listed = {a.path: a.file_size for a in client.list_artifacts(run_id, "full")}
    results.append({
        "fault": f"artifact disk full ({UPLOAD // 2**20} MB upload, {HEADROOM // 2**20} MB free)",
        "recovery_s": None, "operations": 1, "operations_after_fault": 1,
        "failed": [{"operation": "log_artifact", "count": 1,
                    "error": f"{error_kind(failure.value)} after 2 retries ({failed_after_s:.0f} s)"}],
        "nginx_5xx": {}, "acknowledged_writes": 2, "lost_writes": len(lost),
    })
    assert "500" in error or "507" in error or "No space" in error, error
    assert not lost, lost
    assert listed.get("full/big.bin") in (None, UPLOAD), f"a partial artifact is listed: {listed}"
    # The client sees the run still usable: it can be ended (status in PostgreSQL, not on the full disk).
    client.set_terminated(run_id, "FAILED")
