"""Job results for Prometheus (mlops.textfile, pipelines.results): valid exposition text, atomic files."""

from __future__ import annotations

import math
import os
import stat
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlops.textfile import Gauge, publish, render
from pipelines.results import promotion_gauges, tick_gauges


def _parsed(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge"
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_render_is_valid_exposition_text_with_escaped_labels():
    text = render([
        Gauge("mlops_x", "help with \\ and\nnewline", 1.5, {"model": 'a"b\\c\nd'}),
        Gauge("mlops_x", "ignored second help", 2, {"model": "plain"}),
        Gauge("mlops_y", "no labels", float("nan")),
    ])
    parsed = _parsed(text)
    assert parsed["mlops_x"][(("model", 'a"b\\c\nd'),)] == 1.5
    assert parsed["mlops_x"][(("model", "plain"),)] == 2
    assert math.isnan(parsed["mlops_y"][()])
    assert text.count("# TYPE mlops_x gauge") == 1


@pytest.mark.parametrize("name, labels", [("bad-name", {}), ("ok", {"bad-label": "x"}), ("ok", {"__reserved": "x"})])
def test_invalid_names_are_refused(name, labels):
    with pytest.raises(ValueError):
        Gauge(name, "h", 1, labels)


def test_publish_replaces_the_file_atomically_and_readably(tmp_path):
    first = publish("retrain-m", [Gauge("mlops_a", "h", 1)], tmp_path)
    second = publish("retrain-m", [Gauge("mlops_a", "h", 2)], tmp_path)
    assert first == second == tmp_path / "retrain-m.prom"
    assert _parsed(second.read_text())["mlops_a"][()] == 2
    # node exporter runs as another account: world-readable; no temporary file is left behind.
    assert stat.S_IMODE(second.stat().st_mode) == 0o644
    assert sorted(os.listdir(tmp_path)) == ["retrain-m.prom"]
    with pytest.raises(ValueError):
        publish("../escape", [], tmp_path)


def test_publish_without_a_directory_writes_nothing(monkeypatch):
    from mlops.settings import get_settings

    monkeypatch.delenv("MLOPS_METRICS_TEXTFILE_DIR", raising=False)
    get_settings.cache_clear()
    try:
        assert publish("x", [Gauge("mlops_a", "h", 1)]) is None
    finally:
        get_settings.cache_clear()


def test_publish_failure_is_logged_not_raised(tmp_path, caplog):
    missing = tmp_path / "gone"
    assert publish("x", [Gauge("mlops_a", "h", 1)], missing) is None
    assert "Could not publish metrics" in caplog.text


def test_tick_gauges_describe_the_windows_and_the_features():
    report = SimpleNamespace(
        features=[SimpleNamespace(name="brightness", statistic=0.4), SimpleNamespace(name="contrast", statistic=0.1)],
        embedding=SimpleNamespace(mmd2=0.02), class_balance=None, confidence=SimpleNamespace(statistic=0.3),
    )
    parsed = _parsed(render(tick_gauges("pill", "7", ["drifted", "no_drift", "drifted", "missing", "skipped"], 1,
                                        report, now=100.0)))
    model = (("model", "pill"),)
    assert parsed["mlops_drift_detected"][model] == 1
    assert parsed["mlops_drift_windows_drifted"][model] == 2
    assert parsed["mlops_drift_windows_checked"][model] == 3
    assert parsed["mlops_drift_windows_retrained"][model] == 1
    assert parsed["mlops_champion_version"][model] == 7
    assert parsed["mlops_drift_last_check_timestamp_seconds"][model] == 100
    scores = {dict(k)["feature"]: v for k, v in parsed["mlops_drift_feature_score"].items()}
    assert scores == {"brightness": 0.4, "contrast": 0.1, "embedding_mmd2": 0.02, "confidence_ks": 0.3}


def test_promotion_gauges_mark_a_refusal():
    refused = _parsed(render(promotion_gauges("pill", "8", promoted=False, now=5.0)))
    assert refused["mlops_promotion_refused"][(("model", "pill"),)] == 1
    assert refused["mlops_promotion_last_version"][(("model", "pill"),)] == 8
    promoted = _parsed(render(promotion_gauges("pill", "9", promoted=True)))
    assert promoted["mlops_promotion_refused"][(("model", "pill"),)] == 0
