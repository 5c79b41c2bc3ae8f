"""The loop's latest outcomes for Prometheus: drift per window, the champion, the gate's decision.

Written as node exporter textfiles (:mod:`mlops.textfile`) by the scheduled retrain tick and by the
promotion gate, on hosts where ``MLOPS_METRICS_TEXTFILE_DIR`` is set (the platform's jobs). The
names are the alert rules' interface (prometheus/rules/platform.rules.yml):

- ``retrain-<model>.prom``: ``mlops_drift_last_check_timestamp_seconds``, ``mlops_drift_detected``,
  ``mlops_drift_feature_score{feature}``, ``mlops_drift_windows_checked``, ``mlops_drift_windows_drifted``,
  ``mlops_drift_windows_retrained``, ``mlops_champion_version``;
- ``promotion-<model>.prom``: ``mlops_promotion_last_timestamp_seconds``, ``mlops_promotion_refused``,
  ``mlops_promotion_last_version``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

from mlops.textfile import Gauge, publish


def _file(kind: str, model_name: str) -> str:
    return f"{kind}-{re.sub(r'[^a-zA-Z0-9_.-]', '_', model_name)}"


def _version(value: str | None) -> float:
    try:
        return float(int(str(value)))
    except (TypeError, ValueError):
        return float("nan")


def feature_scores(report: Any) -> dict[str, float]:  # noqa: ANN401 - pipelines.drift.check.DriftReport
    """Each checked feature's drift statistic (KS or chi-square), the embedding's MMD² and the confidence KS."""
    scores = {f.name: float(f.statistic) for f in report.features}
    if report.embedding is not None:
        scores["embedding_mmd2"] = float(report.embedding.mmd2)
    if report.class_balance is not None:
        scores["class_balance_chi2"] = float(report.class_balance.statistic)
    if report.confidence is not None:
        scores["confidence_ks"] = float(report.confidence.statistic)
    return scores


def tick_gauges(model_name: str, champion_version: str, verdicts: Sequence[str], retrained: int,
                report: Any = None, now: float | None = None) -> list[Gauge]:  # noqa: ANN401
    """The gauges of one tick: ``verdicts`` newest first (the last M windows), ``retrained`` of them retrained."""
    labels = {"model": model_name}
    checked = [v for v in verdicts if v in ("drifted", "no_drift")]
    gauges = [
        Gauge("mlops_drift_last_check_timestamp_seconds", "When the retrain tick last checked a window (Unix time).",
              now if now is not None else time.time(), labels),
        Gauge("mlops_drift_detected", "1 if the latest checked window drifted, else 0.",
              1.0 if verdicts and verdicts[0] == "drifted" else 0.0, labels),
        Gauge("mlops_drift_windows_checked", "Windows of the last M checked against the current champion.",
              len(checked), labels),
        Gauge("mlops_drift_windows_drifted", "Windows of the last M that drifted (against the current champion).",
              sum(v == "drifted" for v in verdicts), labels),
        Gauge("mlops_drift_windows_retrained", "Windows of the last M with a retraining run.", retrained, labels),
        Gauge("mlops_champion_version", "The registered model version that is @champion.",
              _version(champion_version), labels),
    ]
    if report is not None:
        gauges += [Gauge("mlops_drift_feature_score", "Drift statistic of each feature in the latest checked window.",
                         score, {**labels, "feature": name}) for name, score in feature_scores(report).items()]
    return gauges


def publish_tick(model_name: str, champion_version: str, verdicts: Sequence[str], retrained: int,
                 report: Any = None) -> None:  # noqa: ANN401
    publish(_file("retrain", model_name), tick_gauges(model_name, champion_version, verdicts, retrained, report))


def promotion_gauges(model_name: str, version: str, promoted: bool, now: float | None = None) -> list[Gauge]:
    labels = {"model": model_name}
    return [
        Gauge("mlops_promotion_last_timestamp_seconds", "When the promotion gate last decided (Unix time).",
              now if now is not None else time.time(), labels),
        Gauge("mlops_promotion_refused", "1 if the gate's latest decision refused the candidate, else 0.",
              0.0 if promoted else 1.0, labels),
        Gauge("mlops_promotion_last_version", "The candidate version of the gate's latest decision.",
              _version(version), labels),
    ]


def publish_promotion(model_name: str, version: str, promoted: bool) -> None:
    publish(_file("promotion", model_name), promotion_gauges(model_name, version, promoted))
