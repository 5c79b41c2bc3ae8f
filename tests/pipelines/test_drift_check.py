"""The drift check of one window against a profile: verdicts, windows and every bad-data case (offline)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.drift.check import CheckSettings, check_window
from pipelines.drift.data import WindowData
from pipelines.drift.plots import histograms_figure, scores_figure
from pipelines.drift.windows import latest_complete_window, parse_duration
from training.data import Shift, synthetic_splits
from training.features import FEATURE_NAMES, feature_rows
from training.model import ModelConfig, build_model
from training.profile import build_profile, model_outputs

# The production thresholds (settings), with a smaller MMD budget and an explicit row floor.
CFG = replace(CheckSettings.from_settings(), min_rows=30, mmd_max_samples=100, mmd_permutations=100)


@pytest.fixture(scope="module")
def setup() -> tuple[dict, torch.nn.Module]:
    torch.manual_seed(0)
    model = build_model(ModelConfig(width=0.0625, image_size=32))
    profile = build_profile(model, synthetic_splits(160, 160, 32, seed=0), bins=10, max_sample=10_000,
                            max_embeddings=160)
    return profile, model


def traffic(model: torch.nn.Module, n: int, seed: int, shift: Shift | None = None, version: str = "1") -> WindowData:
    images = synthetic_splits(n, 1, 32, seed=seed, shift=shift).train.images
    out = model_outputs(model, images)
    return WindowData(feature_rows(images), [version] * n, out["predicted_class"], out["confidence"],
                      out["embedding"].tolist())


def test_in_distribution_traffic_does_not_drift(setup) -> None:  # noqa: ANN001
    profile, model = setup
    report = check_window(profile, traffic(model, 120, seed=11), "1", CFG)
    assert report.verdict == "no_drift", report.reason
    assert len(report.features) == len(FEATURE_NAMES) and report.embedding is not None


def test_lighting_shift_is_detected_with_the_features_named(setup) -> None:  # noqa: ANN001
    profile, model = setup
    report = check_window(profile, traffic(model, 120, seed=12, shift=Shift(brightness=0.6)), "1", CFG)
    assert report.verdict == "drifted"
    assert "brightness" in report.drifted_features and "brightness" in report.reason
    fig = scores_figure(report, CFG.thresholds)
    assert len(fig.axes) == 2
    assert len(histograms_figure(profile, report.current, report.drifted_features[:3]).axes) == min(
        3, len(report.drifted_features))


def test_empty_window_is_skipped_with_the_reason(setup) -> None:  # noqa: ANN001
    profile, _ = setup
    empty = WindowData([], [], np.array([], int), np.array([]), [])
    report = check_window(profile, empty, "1", CFG)
    assert (report.verdict, report.reason) == ("skipped", "no predictions in the window")


def test_too_few_rows_is_skipped_not_no_drift(setup) -> None:  # noqa: ANN001
    profile, model = setup
    report = check_window(profile, traffic(model, 10, seed=13), "1", CFG)
    assert report.verdict == "skipped" and "too few usable rows: 10" in report.reason


def test_nan_rows_are_dropped_and_counted(setup) -> None:  # noqa: ANN001
    profile, model = setup
    data = traffic(model, 60, seed=14)
    for row in data.features[:40]:
        row["contrast"] = float("nan")
    report = check_window(profile, data, "1", CFG)
    assert report.dropped_rows == 40 and report.verdict == "skipped"
    assert "40 with missing/NaN features" in report.reason


def test_unknown_and_absent_features_are_named(setup) -> None:  # noqa: ANN001
    profile, model = setup
    data = traffic(model, 60, seed=15)
    for row in data.features:
        row["hue"] = 0.5
        del row["sharpness"]
    report = check_window(profile, data, "1", CFG)
    assert report.skipped_features["hue"] == "not in the reference profile (ignored)"
    assert report.skipped_features["sharpness"] == "absent from every monitoring row"
    assert {f.name for f in report.features} == set(FEATURE_NAMES) - {"sharpness"}


def test_no_known_feature_at_all_is_skipped(setup) -> None:  # noqa: ANN001
    profile, model = setup
    data = traffic(model, 60, seed=16)
    data.features = [{"other": 1.0} for _ in data.features]
    report = check_window(profile, data, "1", CFG)
    assert report.verdict == "skipped" and "no feature of the reference profile" in report.reason


def test_other_versions_rows_skip_prediction_drift_with_reason(setup) -> None:  # noqa: ANN001
    profile, model = setup
    report = check_window(profile, traffic(model, 60, seed=17, version="7"), "1", CFG)
    assert report.embedding is None and "only 0 rows from version 1" in report.skipped_features["embedding"]
    assert report.verdict == "no_drift"


@pytest.mark.parametrize("text,seconds", [("30s", 30), ("15m", 900), ("1h", 3600), ("2d", 172800)])
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("bad", ["", "h", "0s", "-1h", "1w", "1.5h", "abc", "\u00b2h"])
def test_parse_duration_refuses_bad_input(bad: str) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(bad)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=30), st.from_regex(r"\A[0-9]{1,40}[smhd]\Z")))
def test_any_window_text_is_a_duration_or_a_value_error(text: str) -> None:
    try:
        length = parse_duration(text)
    except ValueError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert timedelta(0) < length <= timedelta(days=366)
        latest_complete_window(length)  # a window that long can be placed in time


def test_windows_are_aligned_complete_and_stable() -> None:
    now = datetime(2026, 1, 1, 10, 17, 5, tzinfo=UTC)
    w = latest_complete_window(timedelta(minutes=15), now)
    assert (w.start, w.end) == (datetime(2026, 1, 1, 10, 0, tzinfo=UTC), datetime(2026, 1, 1, 10, 15, tzinfo=UTC))
    assert latest_complete_window(timedelta(minutes=15), now + timedelta(minutes=12)) == w
    assert w.id == "20260101T100000Z/900s"
    assert w.previous(2).end == datetime(2026, 1, 1, 9, 45, tzinfo=UTC)
