"""The whole loop of `mlops demo`, in real time, with traffic sent through serving.

The platform's MLflow (through nginx), PostgreSQL and S3 store; a private `mlops serve` (gunicorn +
uvicorn) that records every prediction in the platform's monitoring database and keeps every image
(``MLOPS_SERVE_SAMPLE_RATE=1``); 10-second windows. :func:`mlops_cli.demo.run_demo` (what `make demo`
runs) trains and promotes a first model, sends in-distribution then darker traffic through serving
and labels it, and ticks the retrain loop until it retrains; the gate judges the retrained version on
the held-out labelled images as well; the test then asks serving which version answers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import httpx
import pytest
from mlflow import MlflowClient

from mlops.settings import get_settings

pytestmark = pytest.mark.integration

MODEL = f"demo-it-{uuid.uuid4().hex[:6]}"
DEMO_ENV = {
    "MLOPS_MODEL_NAME": MODEL,
    "MLOPS_EXPERIMENT_NAME": "it-demo-loop",
    "MLOPS_DRIFT_EXPERIMENT": "it-demo-drift",
    "MLOPS_RETRAIN_LOCK_KEY": str(8_000_000 + uuid.uuid4().int % 1_000_000),
    "MLOPS_TRAIN_EPOCHS": "3",
    "MLOPS_TRAIN_BATCH_SIZE": "16",
    "MLOPS_TRAIN_IMAGE_SIZE": "32",
    "MLOPS_TRAIN_WIDTH": "0.0625",
    "MLOPS_TRAIN_N_TRAIN": "256",
    "MLOPS_TRAIN_N_VAL": "64",
    "MLOPS_TRAIN_BACKEND": "none",
    "MLOPS_INT8_CALIBRATION_IMAGES": "32",
    "MLOPS_INT8_MAX_DROP_POINTS": "100",
    "MLOPS_PROMOTE_MIN_ACCURACY": "0.0",
    "MLOPS_PROMOTE_MIN_F1": "0.0",
    # A seconds-long model's reference-set accuracy moves by several points between trainings;
    # the recent (held-out labelled) images keep the default: not worse than the champion there.
    "MLOPS_PROMOTE_REFERENCE_TOLERANCE": "0.15",
    "MLOPS_PROMOTE_MAX_LATENCY_REGRESSION": "1000",  # timing noise on shared cores: see test_promote
    "MLOPS_PROMOTE_EVAL_IMAGES": "128",
    "MLOPS_PROMOTE_LATENCY_ITERATIONS": "5",
    "MLOPS_SERVE_SAMPLE_RATE": "1",
    "MLOPS_SERVE_COMPILE": "false",
    "MLOPS_SERVE_POLL_INTERVAL_S": "1",
    "MLOPS_SERVE_MONITORING_FLUSH_S": "0.5",
}


@pytest.fixture(scope="module")
def demo_server(platform, platform_env: dict[str, str], patched_environ, serve_process,  # noqa: ANN001
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("demo-serve") / "serve.log"
    # As `make demo` runs it: the platform admin (the loop promotes).
    env = {**platform.env_as("admin"), **DEMO_ENV, "MLOPS_STATE_DIR": str(platform.state_dir)}
    with patched_environ(env):
        server = serve_process({**os.environ}, MODEL, log)
        with patched_environ({"MLOPS_SERVE_URL": server.url}):
            yield server.url
        server.stop()


def test_the_demo_loop_ends_with_the_retrained_champion_served(demo_server: str) -> None:
    from mlops_cli.demo import DemoConfig, run_demo

    said: list[str] = []
    config = DemoConfig(model_name=MODEL, window="10s", clients=3, max_images_per_window=600, batch=16,
                        serve_timeout_s=300, send_margin=0.25, max_windows=4)
    result = run_demo(config, said.append)
    transcript = "\n".join(said)
    retrain = result.retrain

    # The loop closed: a retrained version won the gate and serving answers with it.
    assert retrain.promoted is True, transcript
    assert result.served_version == retrain.candidate_version != result.first_champion, transcript
    model = httpx.get(f"{demo_server}/model", timeout=30).json()
    assert model["version"] == retrain.candidate_version and model["alias"] == "champion", model
    # ... through its OpenVINO variant: the IRs logged by the retraining, measured fastest at load.
    assert model["variant"].startswith("openvino_"), (model["variant_reason"], model["variant_latency_ms"])
    assert "logged at registration" in model["variant_reason"], model["variant_reason"]
    assert f"variant {model['variant']}" in transcript, transcript

    # Nothing happened on in-distribution traffic; the shifted traffic triggered the retraining.
    assert result.in_distribution.action == "no-drift", transcript
    client = MlflowClient()
    training_run = client.get_run(retrain.training_run_id).data
    # (Labelled accuracy below the floor may trigger it at the first shifted window, before 2 of 5 drifted.)
    trigger = training_run.tags["mlops.trigger"]
    assert "windows drifted" in trigger or "labelled accuracy" in trigger, trigger
    params = training_run.params
    # The retraining trained on the labelled served images less the held-out share ...
    assert int(params["labelled_examples"]) > 0 and int(params["labelled_holdout"]) >= 20, params
    assert params["labelled_missing_images"] == "0", params  # every image was sampled
    assert params["reference_policy"] == "recent" and params["reference_source"].startswith("served:"), params
    # ... and the gate judged both versions on those held-out images.
    decision = client.get_run(retrain.details["evaluation_run_id"]).data
    assert decision.tags["verdict"] == "promoted"
    metrics = decision.metrics
    assert metrics["candidate_recent_n_images"] == int(params["labelled_holdout"]), metrics
    assert metrics["candidate_recent_accuracy"] >= metrics["champion_recent_accuracy"], metrics
    assert "recent labelled images" in decision.tags["mlflow.note.content"]

    # The darker lighting is the new champion's normal: its brightness does not drift any more.
    after = result.after
    assert after is not None and after.action in {"no-drift", "wait"}, transcript
    assert "brightness" not in after.reason.split("; ")[0], transcript
    assert get_settings().model_name == MODEL
