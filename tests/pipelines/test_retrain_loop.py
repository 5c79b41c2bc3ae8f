"""The retrain loop against the real platform (PostgreSQL monitoring store, MLflow through nginx).

Traffic is recorded into ``monitoring.predictions`` the way serving records it (the champion's
outputs, ``feature_rows`` and embeddings of synthetic pills, lit normally or 40% darker), with
timestamps inside past windows, and each tick is given the time at which it runs: the loop walks
through several windows in seconds instead of hours. Everything else is real: the advisory lock,
the drift runs, training, registration and the promotion gate.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from mlops import monitoring
from mlops.settings import get_settings
from mlops.tags import TAG_KIND, TAG_MODEL
from pipelines.drift.windows import Window, latest_complete_window
from training.data import Shift, synthetic_images
from training.features import feature_rows
from training.profile import model_outputs

pytestmark = pytest.mark.integration

MODEL = f"retrain-it-{uuid.uuid4().hex[:6]}"
LOOP_ENV = {
    "MLOPS_MODEL_NAME": MODEL,
    "MLOPS_EXPERIMENT_NAME": "it-retrain",
    "MLOPS_DRIFT_EXPERIMENT": "it-drift",
    "MLOPS_DRIFT_WINDOW": "1h",
    "MLOPS_RETRAIN_LOCK_KEY": str(7_000_000 + uuid.uuid4().int % 1_000_000),
    "MLOPS_TRAIN_EPOCHS": "2",
    "MLOPS_TRAIN_BATCH_SIZE": "16",
    "MLOPS_TRAIN_IMAGE_SIZE": "32",
    "MLOPS_TRAIN_WIDTH": "0.0625",
    "MLOPS_TRAIN_N_TRAIN": "128",
    "MLOPS_TRAIN_N_VAL": "64",
    "MLOPS_TRAIN_BACKEND": "none",
    "MLOPS_INT8_CALIBRATION_IMAGES": "32",
    "MLOPS_INT8_MAX_DROP_POINTS": "100",
    # The gate's absolute floors are the promotion tests' subject; here a seconds-long model must pass them.
    "MLOPS_PROMOTE_MIN_ACCURACY": "0.0",
    "MLOPS_PROMOTE_MIN_F1": "0.0",
    # The retrained candidate sees the same reference data: equal quality must pass the gate. A model
    # trained for seconds on 128 images moves by several points between trainings on the 64 evaluation
    # images (0.516 -> 0.422 seen; test_demo_loop.py allows 0.15 for the same reason); the tolerances
    # themselves are decide()'s unit test's subject.
    "MLOPS_PROMOTE_ACCURACY_TOLERANCE": "0.15",
    "MLOPS_PROMOTE_F1_TOLERANCE": "0.15",
    "MLOPS_PROMOTE_MAX_LATENCY_REGRESSION": "1000",  # timing noise on shared cores: see test_promote
    "MLOPS_PROMOTE_EVAL_IMAGES": "64",
    "MLOPS_PROMOTE_LATENCY_ITERATIONS": "5",
    # About 14 of the 48 labelled images are held out here: too few to judge two seconds-long models on
    # (one image is 7 points). The gate's recent set is exercised where traffic is plentiful
    # (test_demo_loop.py) and in decide()'s unit test.
    "MLOPS_PROMOTE_MIN_RECENT_IMAGES": "1000",
}


@pytest.fixture(scope="module")
def loop_env(platform, patched_environ) -> Iterator[dict[str, str]]:  # noqa: ANN001
    """The loop's environment on the platform, as the scheduled job runs it: the gate's login (which may
    promote: the gate runs in-process) and the platform's monitoring database. (A SQLite MLflow with a
    private PostgreSQL ran the same tests again, about 170 s of a CI run: the loop runs on the platform.)"""
    backend = {**platform.env_as("svc-gate"), "MLOPS_STATE_DIR": str(platform.state_dir)}
    env = {**backend, **LOOP_ENV}
    with patched_environ(env):
        yield env


def record_traffic(model_name: str, window: Window, n: int, seed: int, shift: Shift | None = None,
                   labelled: int = 0, unsampled_labels: int = 0) -> None:
    """Record ``n`` predictions of the champion inside ``window`` as serving does.

    The first ``labelled`` also get their image kept (``monitoring.samples``, as the serving writer
    stores it) and their true label (``monitoring.feedback``); the next ``unsampled_labels`` get a
    label but no image (serving did not sample them).
    """
    from pipelines.feedback import Label, record_feedback
    from serving.monitor import png_bytes, to_uint8
    from training.artifacts import load_version

    client = MlflowClient()
    mv = client.get_model_version_by_alias(model_name, "champion")
    model = load_version(client, mv).model  # the plain module (the logged pt2 graph has no embed())
    data = synthetic_images(n, get_settings().train_image_size, seed, shift=shift)
    images = data.images
    out = model_outputs(model, images)
    rows = feature_rows(images)
    step = (window.end - window.start) / (n + 1)
    conn = monitoring.connect("test-traffic")
    try:
        monitoring.ensure_schema(conn)
        with conn, conn.cursor() as cur:
            request = uuid.uuid4().hex
            for i in range(n):
                cur.execute(
                    "INSERT INTO monitoring.predictions (request_id, item_index, ts, model_name, model_version, "
                    "variant, predicted_class, confidence, features, embedding) "
                    "VALUES (%s, %s, %s, %s, %s, 'fp32', %s, %s, %s::jsonb, %s)",
                    (request, i, window.start + step * (i + 1), model_name, str(mv.version),
                     int(out["predicted_class"][i]), float(out["confidence"][i]), _json(rows[i]),
                     [float(x) for x in out["embedding"][i]]),
                )
            pictures = to_uint8(images[:labelled])
            for i in range(labelled):
                cur.execute("INSERT INTO monitoring.samples (request_id, item_index, ts, image) VALUES "
                            "(%s, %s, %s, %s)", (request, i, window.start + step * (i + 1), png_bytes(pictures[i])))
        record_feedback(conn, [Label(request, i, int(data.labels[i])) for i in range(labelled + unsampled_labels)])
    finally:
        conn.close()


def _json(row: dict[str, float]) -> str:
    import json

    return json.dumps(row)


def _drift_runs(window: Window) -> list:
    exp = mlflow.get_experiment_by_name(LOOP_ENV["MLOPS_DRIFT_EXPERIMENT"])
    return mlflow.search_runs(
        [exp.experiment_id], output_format="list",
        filter_string=f"tags.`{TAG_KIND}` = 'drift' AND tags.`{TAG_MODEL}` = '{get_settings().model_name}' "
                      f"AND tags.`mlops.window` = '{window.id}'")


def _run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlops_cli", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300, check=False)


def test_a_tick_finding_the_lock_held_exits_0(loop_env: dict[str, str]) -> None:
    conn = monitoring.connect("test-lock")
    try:
        with monitoring.advisory_lock(conn, int(LOOP_ENV["MLOPS_RETRAIN_LOCK_KEY"]), wait_s=None) as held:
            assert held
            busy = _run_cli(loop_env, "retrain-loop")
        free = _run_cli(loop_env, "retrain-loop")
    finally:
        conn.close()
    assert busy.returncode == 0, busy.stderr[-2000:]
    assert "[locked]" in busy.stdout and "Another retrain tick holds the lock" in busy.stderr
    # Once released, a tick runs (here: no champion yet, a logged skip that also exits 0).
    assert free.returncode == 0, free.stderr[-2000:]
    assert "[skipped]" in free.stdout and "has no @champion version" in free.stdout
    # That skip is known from MLflow's REST API, before the tick imports MLflow, torch and scipy (the
    # fast path answers for this login and model: "" is "surely none", None would be "ask MLflow").
    from mlops.rest import alias_version

    assert alias_version(LOOP_ENV["MLOPS_MODEL_NAME"], "champion") == ""


def test_drift_check_refuses_without_a_champion(loop_env: dict[str, str]) -> None:
    result = _run_cli(loop_env, "drift", "check", "--window", "1h")
    assert result.returncode == 1 and "has no @champion version" in result.stderr


def test_the_loop_walks_from_no_drift_to_a_new_champion(loop_env: dict[str, str]) -> None:
    from pipelines import promote as promote_module
    from pipelines.retrain import TAG_DRIFT_RUN, TAG_PROMOTION, tick
    from training.train import TrainConfig, train

    model_name = get_settings().model_name
    first = train(TrainConfig.from_settings(register=True), show_progress=False)
    assert promote_module.promote(model_name, first.registered_version).promoted
    client = MlflowClient()
    length = timedelta(hours=1)
    w = [latest_complete_window(length).previous(k) for k in (8, 7, 6, 5, 4)]

    def at_end(window: Window):  # noqa: ANN202 - the time a tick right after the window runs
        return window.end + timedelta(minutes=3)

    # In-distribution traffic: nothing happens.
    record_traffic(model_name, w[0], 80, seed=101)
    r0 = tick(now=at_end(w[0]))
    assert r0.action == "no-drift", r0.reason
    # A window without traffic is a logged skip with the reason, never "no drift".
    r_empty = tick(now=at_end(w[1]))
    assert r_empty.action == "skipped" and "no predictions in the window" in r_empty.reason

    # Shifted lighting, first window: drift, but 1 of 5 is not enough (hysteresis).
    record_traffic(model_name, w[2], 80, seed=102, shift=Shift(brightness=0.6))
    r2 = tick(now=at_end(w[2]))
    assert r2.action == "wait" and "1 of the last 5 windows drifted" in r2.reason
    assert tick(now=at_end(w[2])).drift_run_id == r2.drift_run_id  # rerun: the recorded verdict
    assert len(_drift_runs(w[2])) == 1

    # Second drifted window: retrain, register, gate. A crash inside the gate's evaluation
    # leaves the champion alone; the next tick recovers without training again. Part of this
    # window's traffic is labelled (48 with a sampled image, 4 whose image serving did not keep):
    # the retraining adds those 48 shifted examples to the reference data.
    record_traffic(model_name, w[3], 80, seed=103, shift=Shift(brightness=0.6), labelled=48, unsampled_labels=4)
    champion_before = str(client.get_model_version_by_alias(model_name, "champion").version)
    original = promote_module.evaluate

    def crash(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("simulated crash during the promotion evaluation")

    promote_module.evaluate = crash
    try:
        with pytest.raises(RuntimeError, match="simulated crash"):
            tick(now=at_end(w[3]))
    finally:
        promote_module.evaluate = original
    assert str(client.get_model_version_by_alias(model_name, "champion").version) == champion_before
    recovered = tick(now=at_end(w[3]))
    assert recovered.action == "recovered", recovered.reason
    assert recovered.promoted is True, recovered.reason
    new_champion = str(client.get_model_version_by_alias(model_name, "champion").version)
    assert new_champion == recovered.candidate_version != champion_before

    # Lineage: drift run -> training run -> model version -> promotion decision.
    training_run = client.get_run(recovered.training_run_id)
    assert training_run.data.tags[TAG_DRIFT_RUN] == recovered.drift_run_id
    assert training_run.data.tags[TAG_PROMOTION] == "promoted"
    assert client.get_run(recovered.drift_run_id).data.tags["mlops.retrain_run_id"] == recovered.training_run_id
    assert client.get_model_version(model_name, new_champion).run_id == recovered.training_run_id
    drift_artifacts = {a.path for a in client.list_artifacts(recovered.drift_run_id, "plots")}
    assert {"plots/drift_scores.png", "plots/drift_histograms.png"} <= drift_artifacts

    # The retraining used the labelled shifted examples less the gate's held-out share, and its reference
    # profile describes the images sampled in the drifted windows (here: the 48 of w[3]).
    params = training_run.data.params
    assert params["labelled_missing_images"] == "4", params
    holdout = int(params["labelled_holdout"])
    assert 0 < holdout < 48 and int(params["labelled_examples"]) == 48 - holdout, params
    assert params["reference_policy"] == "recent" and params["reference_source"] == "served:48 images", params
    assert params["reference_windows"] == ",".join(w.id for w in (w[3], w[2])), params
    assert params["labelled_window_start"] == w[3].previous(4).start.isoformat()
    assert params["labelled_window_end"] == w[3].end.isoformat()
    from pipelines.drift.runs import load_profile

    _, old_profile = load_profile(client, model_name, champion_before)
    _, new_profile = load_profile(client, model_name, new_champion)
    old_b, new_b = old_profile["features"]["brightness"], new_profile["features"]["brightness"]
    assert old_b["n"] == 192 and new_b["n"] == 48 and new_profile["source"] == "served:48 images"
    assert new_b["mean"] < 0.75 * old_b["mean"], (old_b["mean"], new_b["mean"])  # 0.6x lighting

    # The same window again: never a second retraining.
    again = tick(now=at_end(w[3]))
    assert again.action == "already-retrained" and again.training_run_id == recovered.training_run_id
    runs = mlflow.search_runs([client.get_experiment_by_name(LOOP_ENV["MLOPS_EXPERIMENT_NAME"]).experiment_id],
                              filter_string=f"tags.`mlops.retrain_window` = '{w[3].id}'", output_format="list")
    assert len(runs) == 1

    # A recent reference is capped at retrain_reference_max_images: a fixed subset, the same every time.
    from pipelines.feedback import sampled_images

    conn = monitoring.connect("test-samples")
    try:
        capped = [sampled_images(conn, model_name, [(w[3].start, w[3].end)], 32, 10).keys for _ in range(2)]
        every = sampled_images(conn, model_name, [(w[2].start, w[2].end), (w[3].start, w[3].end)], 32, 1000)
    finally:
        conn.close()
    assert len(capped[0]) == 10 and capped[0] == capped[1] and set(capped[0]) < set(every.keys)
    assert len(every) == 48 and every.images.shape == (48, 3, 32, 32)

    # The shifted lighting is now the champion's normal: its brightness no longer drifts.
    record_traffic(model_name, w[4], 80, seed=105, shift=Shift(brightness=0.6))
    after = tick(now=at_end(w[4]))
    assert after.action in {"no-drift", "wait"}, after.reason
    assert "brightness" not in after.reason.split("; ")[0], after.reason


def test_feedback_below_the_floor_is_reported(loop_env: dict[str, str], tmp_path: Path) -> None:
    from pipelines.feedback import feedback_accuracy

    window = latest_complete_window(timedelta(hours=1)).previous(2)
    record_traffic(get_settings().model_name, window, 30, seed=104)
    conn = monitoring.connect("test-feedback")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT request_id, item_index, predicted_class FROM monitoring.predictions "
                        "WHERE model_name = %s AND ts >= %s AND ts < %s",
                        (get_settings().model_name, window.start, window.end))
            rows = cur.fetchall()
        conn.rollback()
        # Label every prediction wrong: accuracy 0.
        labels = tmp_path / "labels.csv"
        labels.write_text("request_id,item_index,label\n" + "".join(
            f"{r},{i},{1 - int(c)}\n" for r, i, c in rows))
        result = _run_cli(loop_env, "feedback", "--file", str(labels))
        assert result.returncode == 0 and f"Recorded {len(rows)} label(s)" in result.stdout, result.stderr[-2000:]
        acc = feedback_accuracy(conn, get_settings().model_name, None, window.start, window.end)
        assert acc.n == len(rows) and acc.accuracy == 0.0
    finally:
        conn.close()


def test_the_scheduled_job_runs_one_tick(platform) -> None:  # noqa: ANN001 - conftest Platform
    """The job the retrain role scheduled does one tick, as cron runs it: its cron line's account
    (mlops-retrain, its own), no client variables of this session; the job logs in with its own
    ~/.mlflow/credentials (the retrain identity) from the HOME its script sets, and appends to its log."""
    from mlops_cli import jobs

    info = jobs.load_platform(platform.state_dir / "platform.json")
    assert jobs.cron_entry(platform.instance, "retrain")[1] == "mlops-retrain"
    log = platform.path("log") / "job-retrain.log"
    before = log.stat().st_size
    result = jobs.run_job(info, "retrain", timeout=300)
    with log.open() as f:
        f.seek(before)
        out = f.read()
    assert result.returncode == 0, result.output + out[-3000:]
    assert "retrain: finished (exit status 0)" in out
    # The platform's model has no champion here: a logged skip, never a silent success.
    assert "[skipped]" in out or "[no-drift]" in out or "[locked]" in out, out[-3000:]
    # Its outcome for Prometheus, written as its own account (the metrics group).
    prom = (platform.path("data") / "metrics" / "job-retrain.prom").read_text()
    assert 'mlops_job_last_exit_code{timer="retrain"} 0' in prom
