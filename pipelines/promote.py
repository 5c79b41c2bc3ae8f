"""The promotion gate: evaluate a candidate against the champion, move the aliases, record it all.

:func:`promote` evaluates the candidate version and the current champion on the same held-out
evaluation set (synthetic pills from a seed no training run uses), compares them with the
thresholds of :class:`Thresholds` (settings, logged with every decision) and, when the candidate
wins, moves alias ``champion`` to it and ``previous-champion`` to the old one (and, unless turned
off, the registry stages: candidate → Production, old → Archived). A losing candidate gets alias
``challenger``. Every evaluation is an MLflow run in the ``model-promotion`` experiment, tagged
with both versions; the version gets tags pointing back at the run.

Recent data: a candidate retrained on labelled served images (its run logs the label window,
:mod:`pipelines.retrain`) is also judged, against the champion, on the labelled served images of that
window that no retraining trains on (:func:`pipelines.feedback.held_out`), when there are at least
``promote_min_recent_images``. There it must not be worse (the tolerances); on the reference set it
may then be worse by at most ``promote_reference_tolerance`` (adapting to new traffic may cost a
little on the old, but not more).

Concurrency: the read-evaluate-write section runs under a PostgreSQL advisory lock (per model) in
the platform's application database, so two promotions at once are serialised: the second one
compares against whatever the first one left. Idempotency: a candidate that already is the
champion, or was already refused against the same champion, is not evaluated again; the
recorded decision is returned and nothing changes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from mlflow import MlflowClient

from mlops import monitoring
from mlops.registry import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS_CHAMPION,
    PromotionError,
    RegistryError,
    resolve_version,
    version_by_alias,
)
from mlops.settings import get_settings
from mlops.tags import (
    TAG_REQUESTED_BY,
    VERSION_TAG_CHAMPION,
    VERSION_TAG_PROMOTION_RUN,
    VERSION_TAG_REASON,
    VERSION_TAG_VERDICT,
)
from mlops.tracking import experiment_id, load_client_env, retry
from training.artifacts import LoadedVersion, load_version
from training.cpu import detect_capabilities
from training.data import synthetic_images
from training.metrics import score
from training.optimize import interleaved_latencies_ms, predict_logits
from training.variants import select

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Thresholds:
    """The gate, as data (settings ``MLOPS_PROMOTE_*``)."""

    min_accuracy: float
    min_f1: float
    accuracy_tolerance: float
    f1_tolerance: float
    max_latency_regression: float
    reference_tolerance: float
    min_recent_images: int

    @classmethod
    def from_settings(cls) -> Thresholds:
        s = get_settings()
        return cls(s.promote_min_accuracy, s.promote_min_f1, s.promote_accuracy_tolerance, s.promote_f1_tolerance,
                   s.promote_max_latency_regression, s.promote_reference_tolerance, s.promote_min_recent_images)


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    f1: float
    auroc: float
    latency_p50_ms: float
    latency_p90_ms: float
    n_images: int


@dataclass(frozen=True)
class Quality:
    """Accuracy, F1 and AUROC of one model on the recent labelled held-out images."""

    accuracy: float
    f1: float
    auroc: float
    n_images: int


@dataclass
class PromotionDecision:
    promoted: bool
    reason: str
    candidate_version: str
    champion_version: str | None
    evaluation_run_id: str
    model_name: str = ""
    changed: bool = True
    candidate: Evaluation | None = None
    champion: Evaluation | None = None
    thresholds: Thresholds | None = None
    candidate_recent: Quality | None = None
    champion_recent: Quality | None = None


@dataclass
class RollbackResult:
    model_name: str
    champion_version: str
    """The version that is champion now (the former previous-champion)."""
    previous_champion_version: str
    run_id: str
    reason: str = field(default="")


def decide(name: str, candidate_version: str, candidate: Evaluation, champion_version: str | None,
           champion: Evaluation | None, t: Thresholds,
           recent: tuple[Quality, Quality] | None = None) -> tuple[bool, str]:
    """The verdict and one sentence naming the first failed threshold (pure; unit-tested).

    ``recent``: (candidate, champion) on the recent labelled held-out images, when there are enough.
    """
    who = f"{name} version {candidate_version}"
    if candidate.accuracy < t.min_accuracy:
        return False, (f"{who} refused: accuracy {candidate.accuracy:.3f} is below the floor "
                       f"promote_min_accuracy={t.min_accuracy:.3f}.")
    if candidate.f1 < t.min_f1:
        return False, f"{who} refused: F1 {candidate.f1:.3f} is below the floor promote_min_f1={t.min_f1:.3f}."
    if champion is None:
        return True, (f"{who} promoted: no champion yet and it passes the floors "
                      f"(accuracy {candidate.accuracy:.3f}, F1 {candidate.f1:.3f}).")
    vs = f"champion version {champion_version}"
    ref_acc_tol, ref_f1_tol, on_ref = t.accuracy_tolerance, t.f1_tolerance, ""
    recent_note = ""
    if recent is not None:
        cand_r, champ_r = recent
        on_recent = f"on the {cand_r.n_images} recent labelled images"
        if cand_r.accuracy < champ_r.accuracy - t.accuracy_tolerance:
            return False, (f"{who} refused: accuracy {on_recent} {cand_r.accuracy:.3f} is lower than {vs}'s "
                           f"{champ_r.accuracy:.3f} (tolerance {t.accuracy_tolerance:.3f}).")
        if cand_r.f1 < champ_r.f1 - t.f1_tolerance:
            return False, (f"{who} refused: F1 {on_recent} {cand_r.f1:.3f} is lower than {vs}'s {champ_r.f1:.3f} "
                           f"(tolerance {t.f1_tolerance:.3f}).")
        ref_acc_tol = ref_f1_tol = t.reference_tolerance
        on_ref = " on the reference set"
        recent_note = (f" {on_recent}: accuracy {cand_r.accuracy:.3f} vs {champ_r.accuracy:.3f}, "
                       f"F1 {cand_r.f1:.3f} vs {champ_r.f1:.3f};")
    if candidate.accuracy < champion.accuracy - ref_acc_tol:
        return False, (f"{who} refused: accuracy{on_ref} {candidate.accuracy:.3f} is lower than {vs}'s "
                       f"{champion.accuracy:.3f} (tolerance {ref_acc_tol:.3f}).")
    if candidate.f1 < champion.f1 - ref_f1_tol:
        return False, (f"{who} refused: F1{on_ref} {candidate.f1:.3f} is lower than {vs}'s {champion.f1:.3f} "
                       f"(tolerance {ref_f1_tol:.3f}).")
    limit = champion.latency_p50_ms * (1.0 + t.max_latency_regression)
    if candidate.latency_p50_ms > limit:
        worse = 100.0 * (candidate.latency_p50_ms / champion.latency_p50_ms - 1.0)
        return False, (f"{who} refused: batch-1 latency {candidate.latency_p50_ms:.2f} ms is {worse:.0f}% worse than "
                       f"{vs}'s {champion.latency_p50_ms:.2f} ms (limit {100 * t.max_latency_regression:.0f}%).")
    return True, (f"{who} promoted over {vs}:{recent_note} accuracy{on_ref} {candidate.accuracy:.3f} vs "
                  f"{champion.accuracy:.3f}, F1 {candidate.f1:.3f} vs {champion.f1:.3f}, batch-1 latency "
                  f"{candidate.latency_p50_ms:.2f} vs {champion.latency_p50_ms:.2f} ms.")


# --- evaluation ----------------------------------------------------------------------------


def evaluation_set(image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out set: the same synthetic pills (settings seed) for every model, at its input size."""
    s = get_settings()
    images = synthetic_images(s.promote_eval_images, image_size, s.promote_eval_seed)
    return images.images, images.labels


@torch.no_grad()
def evaluate(models: list[LoadedVersion]) -> tuple[list[Evaluation], list[str]]:
    """Accuracy, F1, AUROC and batch-1 latency of each model, and the variant that latency is of.

    Latency is the variant serving would choose (:func:`training.variants.select`: the fastest that agrees
    with FP32, OpenVINO included), the models timed against each other interleaved (fair under load).
    torch.compile variants are left out here (compiling costs minutes per model on a small host); serving
    includes them when ``serve_compile`` is on.
    """
    s = get_settings()
    sets = {m.image_size: evaluation_set(m.image_size) for m in models}
    quality, runners, variants = [], [], []
    caps = detect_capabilities()
    with tempfile.TemporaryDirectory(prefix="mlops-promote-") as tmp:
        for i, m in enumerate(models):
            x, y = sets[m.image_size]
            quality.append(score(predict_logits(m.model, x, 64), y))
            chosen = select(m, Path(tmp) / str(i), caps, compile_torch=False, buckets=(),
                            memo_dir=s.variant_choices_dir)
            runners.append(lambda t, f=chosen.candidate.forward: f(t)[1])
            variants.append(chosen.variant)
        samples = interleaved_latencies_ms(runners, [sets[m.image_size][0] for m in models],
                                           s.promote_latency_iterations)
    return [
        Evaluation(q.accuracy, q.f1, q.auroc, float(np.percentile(lat, 50)), float(np.percentile(lat, 90)),
                   int(sets[m.image_size][1].shape[0]))
        for m, q, lat in zip(models, quality, samples, strict=True)
    ], variants


@dataclass
class RecentSet:
    """The recent labelled held-out images per input size (``images``, ``labels``), or why there are none."""

    by_size: dict[int, tuple[torch.Tensor, torch.Tensor]]
    note: str
    window: str = ""

    @property
    def n_images(self) -> int:
        return min((len(y) for _, y in self.by_size.values()), default=0)


def recent_set(client: MlflowClient, name: str, candidate: LoadedVersion, sizes: set[int],
               min_images: int) -> RecentSet:
    """The labelled served images of the candidate run's label window that retraining held out (maybe none)."""
    from pipelines.feedback import NoLabelledSamples, labelled_examples

    params = retry(client.get_run)(candidate.run_id).data.params if candidate.run_id else {}
    start, end = params.get("labelled_window_start"), params.get("labelled_window_end")
    if not (start and end):
        return RecentSet({}, "the candidate was not retrained on labelled served images")
    window = f"{start} .. {end}"
    share = get_settings().retrain_holdout_share
    conn = monitoring.connect(application_name="mlops-promote")
    try:
        by_size = {}
        for size in sorted(sizes):
            try:
                found = labelled_examples(conn, name, datetime.fromisoformat(start), datetime.fromisoformat(end), size)
            except NoLabelledSamples as exc:
                return RecentSet({}, str(exc), window)
            _, holdout = found.split(share)
            by_size[size] = (holdout.images, holdout.labels)
    finally:
        conn.close()
    found_n = min(len(y) for _, y in by_size.values())
    if found_n < min_images:
        return RecentSet({}, f"{found_n} held-out labelled images in {window} (< promote_min_recent_images="
                             f"{min_images}): judged on the reference set only", window)
    return RecentSet(by_size, f"{found_n} held-out labelled images in {window}", window)


@torch.no_grad()
def evaluate_recent(models: list[LoadedVersion], recent: RecentSet) -> list[Quality]:
    out = []
    for m in models:
        x, y = recent.by_size[m.image_size]
        q = score(predict_logits(m.model, x, 64), y)
        out.append(Quality(q.accuracy, q.f1, q.auroc, int(y.shape[0])))
    return out


# --- locking -------------------------------------------------------------------------------


@contextlib.contextmanager
def registry_lock(model_name: str) -> Iterator[None]:
    """Hold the per-model PostgreSQL advisory lock (application database) for the block."""
    try:
        conn = monitoring.connect(application_name="mlops-promote")
    except monitoring.MonitoringNotConfigured as exc:
        raise PromotionError(f"cannot take the promotion lock: {exc}") from exc
    try:
        log.debug("Waiting for the promotion lock of %s", model_name)
        with monitoring.advisory_lock(conn, f"mlops.registry:{model_name}", get_settings().promote_lock_timeout_s):
            yield
    finally:
        conn.close()


# --- MLflow writes (retried) ------------------------------------------------------------------


@retry
def _set_alias(client: MlflowClient, name: str, alias: str, version: str) -> None:
    client.set_registered_model_alias(name, alias, version)


@retry
def _delete_alias(client: MlflowClient, name: str, alias: str) -> None:
    client.delete_registered_model_alias(name, alias)


@retry
def _set_version_tag(client: MlflowClient, name: str, version: str, key: str, value: str) -> None:
    client.set_model_version_tag(name, version, key, value)


@retry
def _transition(client: MlflowClient, name: str, version: str, stage: str) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        client.transition_model_version_stage(name, version, stage, archive_existing_versions=stage == "Production")


@retry
def _log_run(client: MlflowClient, run_name: str, tags: dict[str, str], params: dict[str, object],
             metrics: dict[str, float], record: dict[str, object]) -> str:
    """One finished MLflow run in the promotion experiment; returns its id."""
    exp_id = experiment_id(get_settings().promote_experiment_name, client)

    @retry
    def _create() -> str:
        run = client.create_run(exp_id, run_name=run_name, tags=tags)
        return run.info.run_id

    run_id = _create()

    @retry
    def _fill() -> None:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
                         params=[Param(k, str(v)) for k, v in params.items()])
        client.log_dict(run_id, record, "promotion.json")
        client.set_terminated(run_id, "FINISHED")

    _fill()
    return run_id


def _client() -> MlflowClient:
    load_client_env()
    return MlflowClient()


# --- promote ---------------------------------------------------------------------------------


def promote(model_name: str, candidate: str = "latest", requested_by: str | None = None) -> PromotionDecision:
    """Evaluate ``candidate`` (``latest``, a version number or an alias) against the champion; promote if it wins.

    Runs with the caller's login, which must be allowed to move the promotion aliases (the gate's or an
    admin's); ``requested_by`` (the person or job that asked) is recorded in the evaluation run.
    """
    from pipelines.results import publish_promotion

    client = _client()
    with registry_lock(model_name):
        decision = _promote_locked(client, model_name, candidate, requested_by)
    publish_promotion(model_name, decision.candidate_version, decision.promoted)
    return decision


def recorded_decision(name: str, version: str, tags: dict[str, str]) -> PromotionDecision:
    """The gate's last decision on a version, from the tags it wrote on it."""
    champion = tags.get(VERSION_TAG_CHAMPION)
    return _recorded(name, version, None if champion in (None, "none") else champion, tags,
                     tags.get(VERSION_TAG_VERDICT) == "promoted",
                     tags.get(VERSION_TAG_REASON) or f"{name} version {version}: the gate recorded no reason")


def _recorded(name: str, version: str, champion: str | None, tags: dict[str, str],
              promoted: bool, reason: str) -> PromotionDecision:
    return PromotionDecision(promoted=promoted, reason=reason, candidate_version=version, champion_version=champion,
                             evaluation_run_id=tags.get(VERSION_TAG_PROMOTION_RUN, ""), model_name=name, changed=False)


def _promote_locked(client: MlflowClient, name: str, candidate: str, requested_by: str | None) -> PromotionDecision:
    s = get_settings()
    thresholds = Thresholds.from_settings()
    cand_mv = resolve_version(client, name, candidate)
    version = str(cand_mv.version)
    champ_mv = version_by_alias(client, name, CHAMPION)
    champ_version = str(champ_mv.version) if champ_mv else None
    tags = dict(cand_mv.tags or {})

    if champ_version == version:
        reason = f"{name} version {version} is already the champion; nothing changed."
        log.info(reason)
        return _recorded(name, version, champ_version, tags, True, reason)
    if tags.get(VERSION_TAG_VERDICT) == "refused" and tags.get(VERSION_TAG_CHAMPION) == (champ_version or "none"):
        reason = tags.get(VERSION_TAG_REASON) or f"{name} version {version} was already refused against this champion."
        log.info("Already decided (run %s): %s", tags.get(VERSION_TAG_PROMOTION_RUN), reason)
        return _recorded(name, version, champ_version, tags, False, reason)

    log.info("Evaluating %s version %s against %s", name, version,
             f"champion version {champ_version}" if champ_version else "the floors (no champion yet)")
    loaded = [load_version(client, cand_mv)] + ([load_version(client, champ_mv)] if champ_mv else [])
    evals, variants = evaluate(loaded)
    cand_eval, champ_eval = evals[0], (evals[1] if champ_mv else None)
    recent, recent_q = None, None
    if champ_mv:
        recent = recent_set(client, name, loaded[0], {m.image_size for m in loaded}, thresholds.min_recent_images)
        log.info("Recent data: %s", recent.note)
        if recent.by_size:
            cand_r, champ_r = evaluate_recent(loaded, recent)
            recent_q = (cand_r, champ_r)
    promoted, reason = decide(name, version, cand_eval, champ_version, champ_eval, thresholds, recent_q)

    metrics = {f"candidate_{k}": v for k, v in asdict(cand_eval).items()}
    if champ_eval:
        metrics.update({f"champion_{k}": v for k, v in asdict(champ_eval).items()})
    if recent_q:
        for who, q in zip(("candidate", "champion"), recent_q, strict=True):
            metrics.update({f"{who}_recent_{k}": v for k, v in asdict(q).items()})
    params = {**{f"threshold_{k}": v for k, v in asdict(thresholds).items()}, "eval_images": s.promote_eval_images,
              "eval_seed": s.promote_eval_seed, "latency_iterations": s.promote_latency_iterations,
              "transition_stages": s.promote_transition_stages,
              **({"recent_set": recent.note[:6000], "recent_window": recent.window} if recent else {})}
    run_tags = {
        "action": "promote", "model_name": name, "candidate_version": version,
        "candidate_run_id": cand_mv.run_id or "", "champion_version": champ_version or "none",
        "champion_run_id": (champ_mv.run_id or "") if champ_mv else "",
        "verdict": "promoted" if promoted else "refused",
        "candidate_variant": variants[0], "champion_variant": variants[1] if champ_mv else "none",
        "mlflow.note.content": reason,
        **({TAG_REQUESTED_BY: requested_by} if requested_by else {}),
    }
    record = {"model_name": name, "candidate_version": version, "champion_version": champ_version,
              "candidate": asdict(cand_eval), "champion": asdict(champ_eval) if champ_eval else None,
              "thresholds": asdict(thresholds), "promoted": promoted, "reason": reason, "requested_by": requested_by,
              "recent": {"note": recent.note, "candidate": asdict(recent_q[0]) if recent_q else None,
                         "champion": asdict(recent_q[1]) if recent_q else None} if recent else None}
    run_id = _log_run(client, f"promote-{name}-v{version}", run_tags, params, metrics, record)

    for key, value in {VERSION_TAG_PROMOTION_RUN: run_id, VERSION_TAG_VERDICT: "promoted" if promoted else "refused",
                       VERSION_TAG_CHAMPION: champ_version or "none", VERSION_TAG_REASON: reason[:4000]}.items():
        _set_version_tag(client, name, version, key, value)
    if promoted:
        _set_alias(client, name, CHAMPION, version)
        if champ_version:
            _set_alias(client, name, PREVIOUS_CHAMPION, champ_version)
        challenger = version_by_alias(client, name, CHALLENGER)
        if challenger is not None and str(challenger.version) == version:
            _delete_alias(client, name, CHALLENGER)
        if s.promote_transition_stages:
            _transition(client, name, version, "Production")  # archives the other Production versions
    else:
        _set_alias(client, name, CHALLENGER, version)
    log.info("%s (run %s)", reason, run_id)
    return PromotionDecision(promoted=promoted, reason=reason, candidate_version=version,
                             champion_version=champ_version, evaluation_run_id=run_id, model_name=name,
                             changed=True, candidate=cand_eval, champion=champ_eval, thresholds=thresholds,
                             candidate_recent=recent_q[0] if recent_q else None,
                             champion_recent=recent_q[1] if recent_q else None)


# --- rollback --------------------------------------------------------------------------------


def rollback(model_name: str) -> RollbackResult:
    """Make ``previous-champion`` the champion again (and the replaced champion ``previous-champion``)."""
    client = _client()
    with registry_lock(model_name):
        prev = version_by_alias(client, model_name, PREVIOUS_CHAMPION)
        cur = version_by_alias(client, model_name, CHAMPION)
        if prev is None:
            raise PromotionError(f"registered model {model_name!r} has no 'previous-champion' alias: nothing to "
                                 f"roll back to")
        if cur is None:
            raise PromotionError(f"registered model {model_name!r} has no 'champion' alias to roll back from")
        prev_v, cur_v = str(prev.version), str(cur.version)
        reason = f"{model_name}: rolled back from version {cur_v} to version {prev_v}."
        run_id = _log_run(
            client, f"rollback-{model_name}-v{cur_v}-to-v{prev_v}",
            {"action": "rollback", "model_name": model_name, "champion_version": prev_v,
             "replaced_version": cur_v, "mlflow.note.content": reason},
            {}, {}, {"model_name": model_name, "from_version": cur_v, "to_version": prev_v, "reason": reason},
        )
        _set_alias(client, model_name, CHAMPION, prev_v)
        _set_alias(client, model_name, PREVIOUS_CHAMPION, cur_v)
        _set_version_tag(client, model_name, prev_v, "rollback_run_id", run_id)
        if get_settings().promote_transition_stages:
            _transition(client, model_name, prev_v, "Production")
        log.info("%s (run %s)", reason, run_id)
        return RollbackResult(model_name, prev_v, cur_v, run_id, reason)


def decision_json(decision: PromotionDecision) -> str:
    return json.dumps(asdict(decision), indent=2, default=str)


__all__ = ["PromotionDecision", "PromotionError", "RegistryError", "RollbackResult", "Thresholds", "decide",
           "promote", "rollback"]
