"""The reference profile: built from the training data at training time, logged with the run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from training.data import synthetic_splits
from training.features import FEATURE_NAMES, image_features
from training.model import ModelConfig, build_model
from training.optimize import Backend
from training.profile import PROFILE_ARTIFACT, build_profile
from training.train import TrainConfig, train


def test_profile_holds_the_training_statistics() -> None:
    splits = synthetic_splits(48, 24, 32, seed=0)
    model = build_model(ModelConfig(width=0.0625, image_size=32))
    profile = build_profile(model, splits, bins=10, max_sample=1000, max_embeddings=16)
    columns = image_features(torch.cat([splits.train.images, splits.val.images]))
    assert set(profile["features"]) == set(FEATURE_NAMES)
    for name in FEATURE_NAMES:
        np.testing.assert_allclose(profile["features"][name]["sample"], np.sort(columns[name]))
        assert abs(sum(profile["features"][name]["proportions"]) - 1.0) < 1e-9
    assert sum(profile["predictions"]["class_counts"]) == len(splits.val)
    assert len(profile["embedding"]["sample"]) == 16
    assert profile["embedding"]["dim"] == model.embedding_dim
    json.dumps(profile)  # serialisable as the artifact


def test_training_logs_the_profile_with_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    config = TrainConfig.from_settings(
        epochs=1, batch_size=16, image_size=32, width=0.0625, n_train=48, n_val=24, int8=False,
        experiment_name="test-profile", model_name="pill-profile-test", backend=Backend.none)
    start = time.perf_counter()
    result = train(config, show_progress=False)
    elapsed = time.perf_counter() - start
    assert result.registered_version == "1"
    version = mlflow.MlflowClient().get_model_version("pill-profile-test", "1")
    path = mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path=PROFILE_ARTIFACT,
                                               dst_path=str(tmp_path))
    profile = json.loads(Path(path).read_text())
    assert profile["n_images"] == 72 and set(profile["features"]) == set(FEATURE_NAMES)
    assert elapsed < 120, f"a tiny training run with its profile took {elapsed:.0f} s"
