from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.data import (
    Shift,
    mvtec_splits,
    preprocess,
    scan_mvtec,
    stratified_split,
    synthetic_arrays,
    synthetic_splits,
)


def test_synthetic_is_deterministic() -> None:
    a, la, ka = synthetic_arrays(12, 32, seed=7)
    b, lb, kb = synthetic_arrays(12, 32, seed=7)
    c, _, _ = synthetic_arrays(12, 32, seed=8)
    assert np.array_equal(a, b) and np.array_equal(la, lb) and ka == kb
    assert not np.array_equal(a, c)


def test_synthetic_classes_differ() -> None:
    images, labels, kinds = synthetic_arrays(200, 48, seed=0)
    assert 0.3 < labels.mean() < 0.7
    assert {"crack", "spot", "colour"} <= set(kinds)
    good = images[labels == 0].astype(np.float32)
    bad = images[labels == 1].astype(np.float32)
    # Defects darken or tint part of the pill: defective images differ from the mean good one.
    mean_good = good.mean(0)
    assert np.abs(bad - mean_good).mean() > np.abs(good - mean_good).mean()


def test_shift_changes_images_and_keeps_labels() -> None:
    base, labels, _ = synthetic_arrays(8, 32, seed=3)
    shifted, labels2, _ = synthetic_arrays(8, 32, seed=3, shift=Shift(brightness=0.7, colour=(1.0, 0.9, 0.8), blur=1.0))
    assert np.array_equal(labels, labels2)
    assert shifted.mean() < base.mean()


def test_splits_are_tensors() -> None:
    s = synthetic_splits(16, 8, 32, seed=0)
    assert s.train.images.shape == (16, 3, 32, 32) and s.train.images.dtype == torch.float32
    assert s.val.labels.shape == (8,)
    assert not torch.equal(s.train.images[:8], s.val.images)


def test_preprocess_matches_batch_conversion() -> None:
    images, _, _ = synthetic_arrays(1, 32, seed=1)
    assert preprocess(images[0], 32).shape == (1, 3, 32, 32)


def test_scan_mvtec_layout(mvtec_tree: Path) -> None:
    samples = scan_mvtec(mvtec_tree)
    assert len(samples) == 14
    assert sum(s.label for s in samples) == 5
    assert {s.defect for s in samples} == {"good", "crack", "color"}
    assert all(s.mask is not None for s in samples if s.label == 1)
    # The category folder itself works too.
    assert len(scan_mvtec(mvtec_tree / "pill")) == 14


def test_mvtec_splits_stratified(mvtec_tree: Path) -> None:
    splits = mvtec_splits(mvtec_tree, 32, val_fraction=0.3, seed=0)
    assert len(splits.train) + len(splits.val) == 14
    assert splits.train.images.shape[1:] == (3, 32, 32)
    assert set(splits.val.labels.tolist()) == {0, 1}


def test_mvtec_rejects_other_layouts(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not an MVTec AD category"):
        scan_mvtec(tmp_path)


def test_stratified_split_disjoint() -> None:
    labels = np.array([0] * 10 + [1] * 4)
    tr, va = stratified_split(labels, 0.25, seed=1)
    assert not set(tr) & set(va) and len(tr) + len(va) == 14
