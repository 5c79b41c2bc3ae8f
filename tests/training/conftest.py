"""Fixtures for the training tests: tiny configurations so every test stays in seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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


# Variables that decide which CPU class a process sees: a child started by run_in_cpu_class sees only the given ones.
_CPU_VARIABLES = ("MLOPS_CPU", "ONEDNN_", "ATEN_CPU", "TORCHINDUCTOR_CACHE")


@pytest.fixture(scope="session")
def run_in_cpu_class():  # noqa: ANN201 - the function itself
    """``run_in_cpu_class(code, env)``: run Python ``code`` in a fresh interpreter whose CPU-class variables are
    exactly ``env`` (e.g. ``training.cpu.emulation_environment(...)``); returns the JSON of its last output line."""

    def run(code: str, env: dict[str, str]) -> dict[str, Any]:
        child = {k: v for k, v in os.environ.items() if not k.startswith(_CPU_VARIABLES)}
        out = subprocess.run([sys.executable, "-c", code], env={**child, **env}, capture_output=True, text=True,
                             timeout=600, check=False)
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    return run
