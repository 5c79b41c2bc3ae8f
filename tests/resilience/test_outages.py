"""Longer outages under load: the S3 store gone for 30 s during uploads, PostgreSQL gone while serving answers.

Both go into the same report as the kills (see conftest.py's ``under_load``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import tempfile
import time
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.resilience]

OUTAGE_S = 30.0
DB_OUTAGE_S = 20.0


def _outage(platform, service: str, seconds: float):  # noqa: ANN001, ANN202
    def inject(_load) -> float:  # noqa: ANN001
        name = f"{platform.instance}-{service}"
        assert "stopped" in platform.supervisorctl("stop", name).stdout
        time.sleep(seconds)
        assert "started" in platform.supervisorctl("start", name).stdout
        return time.monotonic()

    return inject


def test_s3_unreachable_for_30_s_leaves_no_half_written_artifact(health, platform, under_load) -> None:  # noqa: ANN001
    from mlflow import MlflowClient

    run = under_load(f"S3 store unreachable {OUTAGE_S:.0f} s during uploads", _outage(platform, "s3server", OUTAGE_S),
                     predict=1)
    assert not run.lost, run.lost[:10]
    assert not run.failures(tracking=True), f"uploads failed despite the client's retries: {run.failed}"
    assert any(s.op.startswith("log_artifact") for s in run.load.samples if s.start > 4.0)
    # Every artifact the store lists is whole: exactly the bytes a client started to upload under that name.
    client = MlflowClient()
    attempted = run.load.ledger.attempted_artifacts
    listed = 0
    with tempfile.TemporaryDirectory() as d:
        for run_id in set(run.load.ledger.runs):
            for info in client.list_artifacts(run_id, "soak"):
                listed += 1
                assert (run_id, info.path) in attempted, f"unexpected artifact {run_id}/{info.path}"
                local = client.download_artifacts(run_id, info.path, d)
                sha = hashlib.sha256(Path(local).read_bytes()).hexdigest()
                assert sha == attempted[(run_id, info.path)], f"half-written artifact {run_id}/{info.path}"
    assert listed >= len(run.load.ledger.artifacts)


def _serving_metric(health, name: str) -> float:  # noqa: ANN001
    url = next(s["probe"]["url"] for s in health.info["services"] if s["name"] == "serving")
    text = httpx.get(url.replace("/health", "/metrics"), timeout=10).text
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    assert match, f"{name} not in serving's /metrics"
    return float(match.group(1))


def test_postgresql_down_serving_answers_and_monitoring_rows_are_kept(health, platform, under_load) -> None:  # noqa: ANN001
    from mlops import monitoring
    from mlops.settings import get_settings

    since = dt.datetime.now(dt.UTC)
    dropped_before = _serving_metric(health, "mlops_serving_monitoring_rows_dropped_total")
    run = under_load(f"PostgreSQL stopped {DB_OUTAGE_S:.0f} s (serving keeps answering)",
                     _outage(platform, "postgresql", DB_OUTAGE_S), tracking=2)
    assert not run.lost, run.lost[:10]
    assert not run.failures(tracking=False), f"serving stopped answering without PostgreSQL: {run.failed}"
    assert not run.failures(tracking=True), f"tracking calls failed despite retries: {run.failed}"
    predicted = sum(1 for s in run.load.samples if s.op == "predict" and s.error is None)
    # The rows buffered during the outage are written once PostgreSQL is back (or counted as dropped).
    deadline = time.monotonic() + 60
    while True:
        dropped = _serving_metric(health, "mlops_serving_monitoring_rows_dropped_total") - dropped_before
        conn = monitoring.connect("test-resilience")
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM monitoring.predictions WHERE model_name = %s AND ts >= %s",
                            (get_settings().model_name, since))
                stored = cur.fetchone()[0]
        finally:
            conn.close()
        if stored + dropped >= predicted or time.monotonic() > deadline:
            break
        time.sleep(1)
    run.row["monitoring_rows"] = {"predictions": predicted, "stored": stored, "dropped": int(dropped)}
    assert stored + dropped == predicted, run.row["monitoring_rows"]
    assert dropped == 0, f"{dropped:.0f} rows dropped: the buffer bound is below a {DB_OUTAGE_S:.0f} s outage"
