"""One tick of the drift-triggered retraining loop (`mlops retrain-loop`): what the scheduler runs.

A tick:

1. takes a PostgreSQL advisory lock (session level, in the monitoring database) without waiting: a
   tick that finds it held logs that and exits 0; a crashed tick's lock dies with its connection;
2. checks the latest complete window against the champion's reference profile (one drift run per
   model and window: rerunning a window reuses the recorded verdict);
3. decides with hysteresis: retrain when at least N of the last M windows drifted, the latest one
   included (only windows checked against the current champion count), or when labelled feedback
   over those windows shows accuracy below the floor;
4. retrains at most once per window: the training run is created first, tagged with the window and
   the drift run, and training logs into it (``train(run_id=...)``); the model version registered from it
   then goes through the promotion gate (:func:`pipelines.gate.ask`: the retrain job's own login may
   not promote, so it asks the gate job and waits up to ``promote_wait_s`` for its verdict). Only a
   winner becomes champion, and only after a complete evaluation; a tick that crashed anywhere is
   recovered by the next one (a failed/unfinished training run is retrained, a registered but
   unjudged version is sent to the gate again). Training uses the reference data plus the labelled
   served images of the last M windows (``monitoring.feedback`` joined with ``monitoring.samples``,
   :func:`pipelines.feedback.labelled_examples`), appended to the training split, less a held-out
   share the promotion gate judges candidate and champion on (the run records ``labelled_examples``,
   ``labelled_holdout`` and the label window). With ``retrain_reference=recent`` the new model's
   reference profile describes the served images sampled in the drifted windows: once it is
   champion, the traffic it was retrained for is its normal.

Lineage in MLflow: drift run --(tags)--> training run --> model version --> promotion run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mlops.tags import (
    TAG_DRIFT_RUN,
    TAG_PROMOTION,
    TAG_PROMOTION_RUN,
    TAG_RETRAIN_MODEL,
    TAG_RETRAIN_RUN,
    TAG_RETRAIN_WINDOW,
    TAG_TRIGGER,
)
from pipelines.drift.champion import no_champion_reason, surely_no_champion
from pipelines.drift.windows import Window, latest_complete_window, parse_duration

log = logging.getLogger(__name__)



@dataclass
class Trigger:
    retrain: bool
    reason: str


def hysteresis(verdicts: Sequence[str], min_drifted: int) -> Trigger:
    """``verdicts``: the last M windows, newest first. Retrain iff the newest drifted and >= N drifted."""
    if not verdicts:
        return Trigger(False, "no windows checked yet")
    drifted = sum(v == "drifted" for v in verdicts)
    summary = f"{drifted} of the last {len(verdicts)} windows drifted (need {min_drifted}, the latest included)"
    if verdicts[0] != "drifted":
        return Trigger(False, f"latest window {verdicts[0]}; {summary}")
    return Trigger(drifted >= min_drifted, summary)


def accuracy_trigger(n: int, accuracy: float | None, floor: float, min_labels: int) -> Trigger:
    if n < min_labels or accuracy is None:
        return Trigger(False, f"{n} labelled predictions (need {min_labels} to judge accuracy)")
    if accuracy < floor:
        return Trigger(True, f"labelled accuracy {accuracy:.3f} over {n} predictions < floor {floor}")
    return Trigger(False, f"labelled accuracy {accuracy:.3f} over {n} predictions >= floor {floor}")


@dataclass
class TickResult:
    action: str  # locked | no-drift | skipped | retrained | already-retrained | recovered
    # (promoted None after retrained/recovered: the gate has not decided yet; the next tick asks again)
    reason: str
    window: str = ""
    drift_run_id: str = ""
    training_run_id: str = ""
    candidate_version: str = ""
    promoted: bool | None = None
    details: dict[str, Any] = field(default_factory=dict)


def tick(model_name: str | None = None, window: str | None = None, now: datetime | None = None) -> TickResult:
    """One scheduled tick (see the module docstring). Safe to run concurrently and repeatedly."""
    from mlops import monitoring
    from mlops.settings import get_settings

    s = get_settings()
    model_name = model_name or s.model_name
    length = parse_duration(window or s.drift_window)
    conn = monitoring.connect("mlops-retrain-loop")
    try:
        monitoring.ensure_schema(conn)
        with monitoring.advisory_lock(conn, s.retrain_lock_key, wait_s=None) as held:
            if not held:
                log.info("Another retrain tick holds the lock (key %d): nothing to do, exiting", s.retrain_lock_key)
                return TickResult("locked", "another tick holds the lock")
            latest = latest_complete_window(length, now)
            # Without a champion there is nothing to check: known, where MLflow's REST API can tell,
            # before importing MLflow, torch and scipy (the check imports them: seconds of CPU a tick).
            if surely_no_champion(model_name):
                log.info("Nothing to check: %s", no_champion_reason(model_name))
                return TickResult("skipped", no_champion_reason(model_name), latest.id)
            return _tick_locked(conn, model_name, latest)
    finally:
        conn.close()


def _tick_locked(conn: Any, model_name: str, window: Window) -> TickResult:  # noqa: ANN401
    from mlflow import MlflowClient

    from mlops.settings import get_settings
    from mlops.tracking import experiment_id
    from pipelines.drift.check import NoChampion
    from pipelines.drift.runs import recent_verdicts, run_drift_check
    from pipelines.feedback import feedback_accuracy

    s = get_settings()
    log.info("Tick for %s, window %s", model_name, window.id)
    try:
        check = run_drift_check(model_name, window, conn=conn)
    except NoChampion as exc:
        log.info("Nothing to check: %s", exc)
        return TickResult("skipped", str(exc), window.id)
    client = MlflowClient()
    drift_exp = experiment_id(s.drift_experiment, client)
    windows = [window.previous(k) for k in range(s.retrain_windows)]
    verdicts = recent_verdicts(client, drift_exp, model_name, windows, model_version=check.model_version)
    by_drift = hysteresis(verdicts, s.retrain_min_drifted)
    _publish(client, model_name, check, windows, verdicts)
    labels = feedback_accuracy(conn, model_name, check.model_version or None, windows[-1].start, window.end)
    by_labels = accuracy_trigger(labels.n, labels.accuracy, s.retrain_accuracy_floor, s.retrain_min_feedback)
    log.info("Drift trigger: %s -> %s", by_drift.reason, "retrain" if by_drift.retrain else "no")
    log.info("Feedback trigger: %s -> %s", by_labels.reason, "retrain" if by_labels.retrain else "no")
    base = {"verdicts": verdicts, "feedback_n": labels.n, "feedback_accuracy": labels.accuracy}
    if not (by_drift.retrain or by_labels.retrain):
        action = "skipped" if check.verdict == "skipped" else "no-drift" if check.verdict == "no_drift" else "wait"
        return TickResult(action, f"{check.verdict}: {check.reason}; {by_drift.reason}; {by_labels.reason}",
                          window.id, check.run_id, details=base)
    reason = "; ".join(t.reason for t in (by_drift, by_labels) if t.retrain)
    drifted = [w for w, v in zip(windows, verdicts, strict=True) if v == "drifted"]
    return retrain_for_window(client, model_name, window, check.run_id, reason, base, conn=conn,
                              labels_since=windows[-1].start, drifted=drifted)


def _publish(client: Any, model_name: str, check: Any, windows: list[Window], verdicts: list[str]) -> None:  # noqa: ANN401
    """The tick's drift outcome for Prometheus (pipelines.results), where the platform collects it."""
    from mlops.settings import get_settings
    from mlops.tracking import experiment_id
    from pipelines.results import publish_tick

    if get_settings().metrics_textfile_dir is None:
        return
    train_exp = experiment_id(retrain_config(model_name).experiment_name, client)
    retrained = sum(bool(_find_retrain_runs(client, train_exp, model_name, w)) for w in windows)
    publish_tick(model_name, check.model_version, verdicts, retrained, check.report)


def _find_retrain_runs(client: Any, experiment_id: str, model_name: str, window: Window) -> list[Any]:  # noqa: ANN401
    from mlops.tracking import retry

    return retry(client.search_runs)(
        [experiment_id],
        filter_string=f"tags.`{TAG_RETRAIN_MODEL}` = '{model_name}' AND tags.`{TAG_RETRAIN_WINDOW}` = '{window.id}'",
        order_by=["attributes.start_time DESC"],
    )


def _version_of_run(client: Any, model_name: str, run_id: str) -> str | None:  # noqa: ANN401
    from mlops.tracking import retry

    versions = retry(client.search_model_versions)(f"name = '{model_name}' AND run_id = '{run_id}'")
    return str(versions[0].version) if versions else None


def retrain_config(model_name: str) -> Any:  # noqa: ANN401 - training.train.TrainConfig
    """The retraining configuration: the training settings (MLOPS_TRAIN_*) for this model.

    A refused INT8 program does not fail an unattended retraining: the FP32 model goes to the gate.
    """
    from training.train import TrainConfig

    return TrainConfig.from_settings(model_name=model_name, register=True, int8_required=False)


def retrain_examples(conn: Any, model_name: str, start: datetime, end: datetime,  # noqa: ANN401
                     image_size: int) -> tuple[Any, dict[str, Any]]:
    """The labelled served images of ``[start, end)`` to train on, as an ImageSet (None if none), and params to log.

    Labels whose images serving did not sample are left out and counted (``labelled_missing_images``);
    the held-out share (``retrain_holdout_share``, :func:`pipelines.feedback.held_out`) is left out for the
    promotion gate, which finds it again from the logged label window (``labelled_holdout``). If no
    labelled prediction has an image, retraining goes on with the reference data alone, logged.
    """
    from mlops.settings import get_settings
    from pipelines.feedback import NoLabelledSamples, labelled_examples
    from training.data import ImageSet

    params: dict[str, Any] = {"labelled_window_start": start.isoformat(), "labelled_window_end": end.isoformat()}
    try:
        found = labelled_examples(conn, model_name, start, end, image_size)
    except NoLabelledSamples as exc:
        log.warning("Retraining on the reference data only: %s", exc)
        params["labelled_missing_images"] = exc.labelled
        return None, params
    params["labelled_missing_images"] = found.missing
    trained, holdout = found.split(get_settings().retrain_holdout_share)
    params["labelled_holdout"] = len(holdout)
    if not len(trained):
        log.info("No labelled examples to train on in [%s, %s) (%d held out for the gate): retraining on the "
                 "reference data", start, end, len(holdout))
        return None, params
    log.info("%d labelled served images to train on, %d held out for the promotion gate", len(trained), len(holdout))
    return ImageSet(trained.images, trained.labels, [f"served:{k}" for k in trained.keys]), params


def recent_reference(conn: Any, model_name: str, drifted: Sequence[Window], image_size: int,  # noqa: ANN401
                     trained: Any = None) -> tuple[Any, dict[str, Any]]:  # noqa: ANN401
    """The reference profile's images for a drift-triggered retraining (``retrain_reference``), and params to log.

    ``recent``: the images serving sampled in the drifted windows, which is the traffic the new model has to
    serve, so that this traffic stops counting as drift once a model trained for it is champion. Predictions
    and embeddings come from the ones it was not trained on (``trained``: the labelled ImageSet), or from all of
    them when fewer than ``drift_min_rows`` are left. Too few images, no drifted window, or ``training``:
    None (the training data, as for a first model).
    """
    from mlops.settings import get_settings
    from pipelines.feedback import sampled_images
    from training.profile import ReferenceImages

    s = get_settings()
    if s.retrain_reference == "training" or not drifted:
        why = "retrain_reference=training" if s.retrain_reference == "training" else "no drifted window"
        return None, {"reference_policy": s.retrain_reference, "reference_note": why}
    found = sampled_images(conn, model_name, [(w.start, w.end) for w in drifted], image_size,
                           s.retrain_reference_max_images)
    params: dict[str, Any] = {"reference_policy": "recent", "reference_windows": ",".join(w.id for w in drifted)}
    if len(found) < s.drift_min_rows:
        note = (f"{len(found)} sampled images in the drifted windows (< drift_min_rows={s.drift_min_rows}): "
                "the reference profile describes the training data")
        log.warning("Reference: %s", note)
        return None, {**params, "reference_note": note}
    seen = {src.removeprefix("served:") for src in (trained.sources if trained is not None else [])}
    unseen = [i for i, k in enumerate(found.keys) if k not in seen]
    outputs = found.images[unseen] if len(unseen) >= s.drift_min_rows else found.images
    note = (f"{len(found)} sampled images of windows {params['reference_windows']}; predictions and embeddings "
            f"on {len(outputs)} ({len(unseen)} not trained on)")
    log.info("Reference: %s", note)
    return ReferenceImages(found.images, outputs, f"served:{len(found)} images"), {**params, "reference_note": note}


def retrain_for_window(client: Any, model_name: str, window: Window, drift_run_id: str,  # noqa: ANN401
                       reason: str, details: dict[str, Any], *, conn: Any = None,  # noqa: ANN401
                       labels_since: datetime | None = None, drifted: Sequence[Window] = ()) -> TickResult:
    """Retrain (once per window) and send the new version through the promotion gate.

    With ``conn`` (the monitoring database), the labelled served images since ``labels_since``
    (default: the window's start) up to the window's end are added to the training data (less the
    gate's held-out share), and the reference profile follows ``retrain_reference`` over the
    ``drifted`` windows (:func:`recent_reference`).
    """
    from mlflow.entities import Param

    from mlops.tracking import experiment_id, retry
    from training.train import train

    config = retrain_config(model_name)
    train_exp = experiment_id(config.experiment_name, client)
    runs = _find_retrain_runs(client, train_exp, model_name, window)
    for run in runs:
        tags = run.data.tags
        if TAG_PROMOTION in tags:
            log.info("Window %s was already retrained (run %s, promotion: %s): not again", window.id,
                     run.info.run_id, tags[TAG_PROMOTION])
            return TickResult("already-retrained", f"window already retrained; {tags[TAG_PROMOTION]}", window.id,
                              drift_run_id, run.info.run_id, _version_of_run(client, model_name, run.info.run_id) or "",
                              tags[TAG_PROMOTION] == "promoted", details)
        if run.info.status == "FINISHED":
            version = _version_of_run(client, model_name, run.info.run_id)
            if version:
                log.info("Recovering: run %s registered version %s but its promotion was not recorded",
                         run.info.run_id, version)
                return _promote(client, model_name, window, drift_run_id, run.info.run_id, version, "recovered",
                                details)
        log.warning("Retrain run %s of window %s did not finish (%s): retraining", run.info.run_id, window.id,
                    run.info.status)
        if run.info.status == "RUNNING":
            retry(client.set_terminated)(run.info.run_id, "FAILED")
        retry(client.set_tag)(run.info.run_id, "mlops.superseded", "true")

    tags = {TAG_RETRAIN_MODEL: model_name, TAG_RETRAIN_WINDOW: window.id, TAG_DRIFT_RUN: drift_run_id,
            TAG_TRIGGER: reason[:4000], "stage": "retraining"}
    run = retry(client.create_run)(train_exp, tags=tags, run_name=f"retrain {model_name} {window.id}")
    run_id = run.info.run_id
    retry(client.set_tag)(drift_run_id, TAG_RETRAIN_RUN, run_id)
    extra, reference, params = None, None, {}
    if conn is not None:
        extra, params = retrain_examples(conn, model_name, labels_since or window.start, window.end,
                                         config.image_size)
        reference, ref_params = recent_reference(conn, model_name, drifted, config.image_size, extra)
        params.update(ref_params)
    if params:
        retry(client.log_batch)(run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
    log.info("Retraining %s (%s) in run %s with %d labelled examples", model_name, reason, run_id,
             len(extra) if extra is not None else 0)
    result = train(config, extra=extra, reference=reference, run_id=run_id)  # in the run created and tagged above
    version = result.registered_version or _version_of_run(client, model_name, run_id)
    if not version:
        raise RuntimeError(f"retraining run {run_id} registered no version of {model_name}")
    return _promote(client, model_name, window, drift_run_id, run_id, version, "retrained", details)


def _promote(client: Any, model_name: str, window: Window, drift_run_id: str, run_id: str, version: str,  # noqa: ANN401
             action: str, details: dict[str, Any]) -> TickResult:
    from mlops.tracking import retry
    from pipelines.gate import ask

    decision = ask(model_name, candidate=str(version))
    if decision is None:  # the gate has not decided yet: the next tick asks again (the "recovered" path)
        log.info("Version %s: the gate has not decided yet; the next tick asks again", version)
        return TickResult(action, f"asked the gate to judge version {version}; it has not decided yet", window.id,
                          drift_run_id, run_id, str(version), None, details)
    verdict = "promoted" if decision.promoted else "refused"
    retry(client.set_tag)(run_id, TAG_PROMOTION_RUN, decision.evaluation_run_id or "")
    # Written last: its presence means this window's retraining is complete.
    retry(client.set_tag)(run_id, TAG_PROMOTION, verdict)
    log.info("Version %s %s: %s", version, verdict, decision.reason)
    return TickResult(action, f"{verdict}: {decision.reason}", window.id, drift_run_id, run_id, str(version),
                      decision.promoted, {**details, "evaluation_run_id": decision.evaluation_run_id})
