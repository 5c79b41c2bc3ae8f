"""Drift checks as MLflow runs: the champion's profile in, one run per model and window out.

:func:`run_drift_check` loads the profile logged with the champion's training run, reads the
window from the monitoring store, checks it and records a run in the ``drift_experiment`` (tags
``mlops.*``, scores, ``drift/report.json``, plots). A window already checked is not checked again.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException

from mlops import monitoring
from mlops.registry import CHAMPION, version_by_alias
from mlops.settings import get_settings
from mlops.tags import (
    TAG_KIND,
    TAG_MODEL,
    TAG_REASON,
    TAG_VERDICT,
    TAG_VERSION,
    TAG_WINDOW,
    TAG_WINDOW_START,
)
from mlops.tracking import experiment_id, load_client_env, retry
from pipelines.drift.champion import no_champion_reason
from pipelines.drift.check import CheckSettings, DriftReport, NoChampion, check_window
from pipelines.drift.data import load_window
from pipelines.drift.plots import histograms_figure, scores_figure
from pipelines.drift.windows import Window
from training.profile import PROFILE_ARTIFACT, DriftDataError

log = logging.getLogger(__name__)


@dataclass
class DriftCheck:
    model_name: str
    model_version: str
    window: Window
    run_id: str
    verdict: str
    reason: str
    reused: bool = False
    report: DriftReport | None = None


def load_profile(client: Any, model_name: str, version: str | None = None) -> tuple[str, dict[str, Any]]:  # noqa: ANN401
    """(version, profile) of the champion (or the given version), from its training run's artifact."""
    if version is None:
        mv = version_by_alias(client, model_name, CHAMPION)  # retried inside
        if mv is None:
            raise NoChampion(no_champion_reason(model_name))
    else:
        mv = retry(client.get_model_version)(model_name, version)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = retry(client.download_artifacts)(mv.run_id, PROFILE_ARTIFACT, tmp)
        except (MlflowException, OSError) as exc:
            raise DriftDataError(
                f"{model_name} version {mv.version} has no reference profile ({PROFILE_ARTIFACT} in run {mv.run_id}):"
                " it was trained before profiles existed; retrain it with `mlops train`") from exc
        return str(mv.version), json.loads(Path(path).read_text())


def find_drift_run(client: Any, experiment_id: str, model_name: str, window: Window) -> Any | None:  # noqa: ANN401
    """The finished drift run of this model and window, if a tick already made one."""
    runs = retry(client.search_runs)(
        [experiment_id],
        filter_string=(f"tags.`{TAG_KIND}` = 'drift' AND tags.`{TAG_MODEL}` = '{model_name}' "
                       f"AND tags.`{TAG_WINDOW}` = '{window.id}' AND attributes.status = 'FINISHED'"),
        max_results=1,
    )
    return runs[0] if runs else None


def recent_verdicts(client: Any, experiment_id: str, model_name: str, windows: Sequence[Window],  # noqa: ANN401
                    model_version: str | None = None) -> list[str]:
    """The recorded verdict of each window (as ordered); ``missing`` where no tick checked it.

    With ``model_version``, only checks against that version count (a new champion starts afresh).
    """
    filter_string = (f"tags.`{TAG_KIND}` = 'drift' AND tags.`{TAG_MODEL}` = '{model_name}' "
                     "AND attributes.status = 'FINISHED'")
    if model_version:
        filter_string += f" AND tags.`{TAG_VERSION}` = '{model_version}'"
    # The newest runs cover the newest windows (a tick checks the latest window only).
    runs = retry(client.search_runs)([experiment_id], filter_string=filter_string, max_results=500,
                                     order_by=["attributes.start_time DESC"])
    wanted = {w.id for w in windows}
    runs = [r for r in runs if r.data.tags.get(TAG_WINDOW) in wanted]
    by_window = {r.data.tags[TAG_WINDOW]: r.data.tags.get(TAG_VERDICT, "missing") for r in runs}
    return [by_window.get(w.id, "missing") for w in windows]


def _log_drift_run(client: Any, exp_id: str, model_name: str, version: str, window: Window,  # noqa: ANN401
                   report: DriftReport, profile: Mapping[str, Any], cfg: CheckSettings) -> str:
    tags = {TAG_KIND: "drift", TAG_MODEL: model_name, TAG_VERSION: version, TAG_WINDOW: window.id,
            TAG_WINDOW_START: str(int(window.start.timestamp())), TAG_VERDICT: report.verdict,
            TAG_REASON: report.reason[:4000]}
    run = retry(client.create_run)(exp_id, tags=tags, run_name=f"drift {model_name} v{version} {window.id}")
    run_id = run.info.run_id
    try:
        t = cfg.thresholds
        params = {"ks_alpha": t.ks_alpha, "psi_threshold": t.psi_threshold, "chi2_alpha": t.chi2_alpha,
                  "mmd_alpha": t.mmd_alpha, "min_rows": cfg.min_rows, "window_start": window.start.isoformat(),
                  "window_end": window.end.isoformat()}
        now = int(datetime.now(UTC).timestamp() * 1000)
        metrics = {"n_rows": report.n_rows, "dropped_rows": report.dropped_rows,
                   "drifted": float(report.verdict == "drifted"), "n_drifted_features": len(report.drifted_features)}
        for f in report.features:
            metrics.update({f"psi_{f.name}": f.psi or 0.0, f"ks_{f.name}": f.statistic,
                            f"ks_pvalue_{f.name}": f.pvalue})
        if report.embedding:
            metrics.update(embedding_mmd2=report.embedding.mmd2, embedding_pvalue=report.embedding.pvalue)
        if report.class_balance:
            metrics["class_balance_pvalue"] = report.class_balance.pvalue
        if report.confidence:
            metrics.update(confidence_ks=report.confidence.statistic, confidence_pvalue=report.confidence.pvalue)
        retry(client.log_batch)(
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if math.isfinite(float(v))],
            params=[Param(k, str(v)) for k, v in params.items()],
            tags=[RunTag(k, v) for k, v in {**{f"skipped.{k}": v for k, v in report.skipped_features.items()}}.items()],
        )
        retry(client.log_dict)(run_id, report.as_dict(), "drift/report.json")
        if report.features:
            import matplotlib.pyplot as plt  # after plots chose the Agg backend

            fig = scores_figure(report, cfg.thresholds)
            retry(client.log_figure)(run_id, fig, "plots/drift_scores.png")
            plt.close(fig)
            by_psi = sorted(report.features, key=lambda f: -(f.psi or 0.0))
            shown = report.drifted_features or [f.name for f in by_psi[:3]]
            fig = histograms_figure(profile, report.current, shown[:6])
            retry(client.log_figure)(run_id, fig, "plots/drift_histograms.png")
            plt.close(fig)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    retry(client.set_terminated)(run_id, "FINISHED")
    return run_id


def run_drift_check(model_name: str, window: Window, version: str | None = None, conn: Any = None,  # noqa: ANN401
                    force: bool = False) -> DriftCheck:
    """Check one window against the champion's profile and log the drift run (once per model and window)."""
    load_client_env()
    client = MlflowClient()
    exp_id = experiment_id(get_settings().drift_experiment, client)
    if not force:
        existing = find_drift_run(client, exp_id, model_name, window)
        if existing is not None:
            tags = existing.data.tags
            log.info("Window %s of %s already checked in run %s: %s", window.id, model_name,
                     existing.info.run_id, tags.get(TAG_VERDICT))
            return DriftCheck(model_name, tags.get(TAG_VERSION, ""), window, existing.info.run_id,
                              tags.get(TAG_VERDICT, ""), tags.get(TAG_REASON, ""), reused=True)
    version, profile = load_profile(client, model_name, version)
    own = conn is None
    conn = conn or monitoring.connect("mlops-drift")
    try:
        monitoring.ensure_schema(conn)
        data = load_window(conn, model_name, window)
        conn.rollback()
    finally:
        if own:
            conn.close()
    log.info("Window %s: %d predictions of %s (checking against version %s)", window.id, len(data.features),
             model_name, version)
    cfg = CheckSettings.from_settings()
    report = check_window(profile, data, version, cfg)
    log_fn = log.warning if report.verdict == "skipped" else log.info
    log_fn("Window %s: %s (%s)", window.id, report.verdict, report.reason)
    run_id = _log_drift_run(client, exp_id, model_name, version, window, report, profile, cfg)
    return DriftCheck(model_name, version, window, run_id, report.verdict, report.reason, report=report)
