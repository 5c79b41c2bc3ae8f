"""Fixtures for the training tests: tiny configurations so every test stays in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.train import TrainConfig


@pytest.fixture
def tiny_config(tmp_path: Path) -> TrainConfig:
    """A run that trains in a few seconds on 2 cores (32 px, narrowest trunk)."""
    return TrainConfig.from_settings(
        epochs=2, batch_size=16, image_size=32, width=0.0625, n_train=64, n_val=32,
        calibration_images=32, int8_max_drop_points=100.0, experiment_name="test-training",
        model_name="pill-quality-test",
    )


@pytest.fixture
def local_tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An offline MLflow store in a temporary SQLite file (no server)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    return uri


@pytest.fixture
def mvtec_tree(tmp_path: Path) -> Path:
    """A small MVTec AD ``pill`` layout with real PNG files and masks."""
    root = tmp_path / "mvtec"
    rng = np.random.default_rng(0)
    layout = {"train/good": 6, "test/good": 3, "test/crack": 3, "test/color": 2}
    for folder, count in layout.items():
        d = root / "pill" / folder
        d.mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(d / f"{i:03d}.png")
            defect = folder.split("/")[1]
            if folder.startswith("test/") and defect != "good":
                m = root / "pill" / "ground_truth" / defect
                m.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.zeros((40, 48), np.uint8)).save(m / f"{i:03d}_mask.png")
    return root
