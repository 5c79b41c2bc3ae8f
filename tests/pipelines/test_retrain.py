"""The retrain trigger: hysteresis over windows and the labelled-accuracy floor (offline)."""

from __future__ import annotations

import pytest

from pipelines.retrain import accuracy_trigger, hysteresis

D, N, S, M = "drifted", "no_drift", "skipped", "missing"


@pytest.mark.parametrize(
    "verdicts,expected",
    [
        ([D, N, N, N, N], False),  # one drifted window is not enough
        ([D, D, N, N, N], True),
        ([D, N, N, N, D], True),  # 2 of the last 5, the latest included
        ([N, D, D, D, D], False),  # the latest must have drifted
        ([S, D, D, N, N], False),  # a skipped latest window is not drift
        ([D, S, M, N, N], False),  # skipped and missing windows do not count as drift
        ([D, M, D, M, M], True),
        ([], False),
    ],
)
def test_hysteresis_two_of_five(verdicts: list[str], expected: bool) -> None:
    assert hysteresis(verdicts, min_drifted=2).retrain is expected


def test_hysteresis_reason_says_how_many() -> None:
    assert "2 of the last 5 windows drifted (need 3" in hysteresis([D, D, N, N, N], 3).reason
    assert hysteresis([D, D, N, N, N], 3).retrain is False


def test_accuracy_trigger() -> None:
    assert accuracy_trigger(50, 0.7, 0.8, 20).retrain is True
    assert accuracy_trigger(50, 0.85, 0.8, 20).retrain is False
    low = accuracy_trigger(5, 0.0, 0.8, 20)
    assert low.retrain is False and "5 labelled predictions (need 20" in low.reason


def test_a_tick_without_a_monitoring_database_is_one_line_and_exit_1(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    """The CLI names the missing database (exit 1, no traceback) though the tick imported no torch."""
    from typer.testing import CliRunner

    from mlops.settings import get_settings
    from mlops_cli.cli import app

    monkeypatch.setenv("MLOPS_MONITORING_DSN", "")
    monkeypatch.setenv("MLOPS_STATE_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["retrain-loop"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    assert "Retrain tick failed: no monitoring database" in result.output
