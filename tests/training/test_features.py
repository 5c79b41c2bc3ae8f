"""The monitoring statistics: known values on constructed images, and sensitivity to each shift."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.data import Shift, synthetic_arrays, to_tensor
from training.features import FEATURE_NAMES, feature_rows, image_features


def _solid(rgb: tuple[int, int, int], size: int = 16) -> torch.Tensor:
    return to_tensor(np.full((1, size, size, 3), rgb, np.uint8))


def test_solid_colour_has_exact_statistics() -> None:
    f = image_features(_solid((255, 0, 0)))
    assert f["mean_red"][0] == pytest.approx(1.0, abs=1e-5)
    assert f["mean_green"][0] == pytest.approx(0.0, abs=1e-5)
    assert f["brightness"][0] == pytest.approx(0.299, abs=1e-4)
    assert f["contrast"][0] == pytest.approx(0.0, abs=1e-5)
    assert f["saturation"][0] == pytest.approx(1.0, abs=1e-5)
    assert f["sharpness"][0] == pytest.approx(0.0, abs=1e-6)
    assert f["dark_fraction"][0] == pytest.approx(0.0)
    assert image_features(_solid((0, 0, 0)))["dark_fraction"][0] == pytest.approx(1.0)


def test_each_shift_moves_its_statistic() -> None:
    def mean_features(shift: Shift | None) -> dict[str, float]:
        x, _, _ = synthetic_arrays(64, 32, seed=1, shift=shift)
        return {k: float(v.mean()) for k, v in image_features(to_tensor(x)).items()}

    base = mean_features(None)
    assert mean_features(Shift(brightness=1.4))["brightness"] > base["brightness"] * 1.2
    assert mean_features(Shift(blur=1.5))["sharpness"] < base["sharpness"] * 0.5
    blue_cast = mean_features(Shift(colour=(0.8, 0.9, 1.3)))
    assert blue_cast["mean_blue"] > base["mean_blue"] and blue_cast["mean_red"] < base["mean_red"]


def test_rows_match_columns_and_bad_shape_is_refused() -> None:
    x = torch.randn(3, 3, 16, 16)
    rows = feature_rows(x)
    assert len(rows) == 3 and set(rows[0]) == set(FEATURE_NAMES)
    assert rows[2]["contrast"] == pytest.approx(image_features(x)["contrast"][2])
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        image_features(torch.zeros(3, 16, 16))
