"""Against the real platform (nginx + TLS + basic auth, PostgreSQL, S3): a short run lands in MLflow."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from training.train import TrainConfig, train

pytestmark = pytest.mark.integration


@pytest.fixture
def platform_tracking(platform_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key, value in platform_env.items():
        monkeypatch.setenv(key, value)
    return platform_env


def test_training_run_is_in_mlflow_and_registered_model_predicts(
    platform_tracking: dict[str, str], tiny_config: TrainConfig
) -> None:
    tiny_config.model_name = "pill-quality-it"
    tiny_config.experiment_name = "it-training"
    result = train(tiny_config, show_progress=False)
    run = mlflow.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["backend"] in {"native", "ipex", "none"}
    assert {"val_accuracy", "val_f1", "val_auroc", "train_images_per_s", "int8_val_accuracy"} <= set(run.data.metrics)
    version = result.registered_version
    assert version is not None
    model = mlflow.pyfunc.load_model(f"models:/{tiny_config.model_name}/{version}")
    out = np.asarray(model.predict(np.zeros((2, 3, tiny_config.image_size, tiny_config.image_size), np.float32)))
    assert out.shape == (2, 2)
