"""The drift check of a window of serving traffic against a reference profile (no I/O).

A numeric feature drifts when its KS test rejects at ``ks_alpha`` divided by the number of
features (Bonferroni: with many features a per-test alpha flags something by chance every window)
*and* its PSI reaches ``psi_threshold`` (so that a huge window does not flag every negligible
shift). The reference side of KS is the profile's sorted, bounded, deterministic subsample.
Predictions (class balance: chi-square; confidence: KS + PSI) and embeddings (MMD) are compared
on the rows of the profile's model version. Thresholds come from the settings (``drift_*``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mlops.settings import get_settings
from pipelines.drift.data import WindowData
from pipelines.drift.stats import Chi2Result, KSResult, MMDResult, chi2_2sample, ks_sorted, mmd_permutation, psi
from training.profile import DriftDataError, sorted_bin_proportions

log = logging.getLogger(__name__)


class NoChampion(DriftDataError):
    """The model has no champion yet: there is nothing to compare traffic with."""


@dataclass
class FeatureDrift:
    name: str
    kind: str  # numeric | categorical
    statistic: float
    pvalue: float
    psi: float | None
    drifted: bool
    n_current: int


@dataclass
class Thresholds:
    """The verdict's thresholds (values from the settings, ``drift_*``; no defaults of their own)."""

    ks_alpha: float
    psi_threshold: float
    chi2_alpha: float
    mmd_alpha: float

    @classmethod
    def from_settings(cls) -> Thresholds:
        s = get_settings()
        return cls(s.drift_ks_alpha, s.drift_psi_threshold, s.drift_chi2_alpha, s.drift_mmd_alpha)


def compare_numeric(
    name: str, profile: Mapping[str, Any], current: np.ndarray, alpha: float, psi_threshold: float
) -> FeatureDrift:
    """KS against the stored sorted sample and PSI against the stored bins of one numeric feature."""
    cur = np.sort(np.asarray(current, dtype=np.float64))
    ks = ks_sorted(np.asarray(profile["sample"], dtype=np.float64), cur)
    value = psi(profile["proportions"], sorted_bin_proportions(cur, np.asarray(profile["edges"])))
    drifted = ks.pvalue < alpha and value >= psi_threshold
    return FeatureDrift(name, "numeric", ks.statistic, ks.pvalue, value, drifted, int(np.asarray(current).size))


def compare_frames(
    reference: Mapping[str, Mapping[str, Any]],
    current: Mapping[str, np.ndarray],
    thresholds: Thresholds,
) -> list[FeatureDrift]:
    """Compare every numeric column of ``current`` with its profile (Bonferroni over the columns)."""
    missing = sorted(set(reference) - set(current))
    if missing:
        raise DriftDataError(f"features in the reference profile but absent from the data: {missing}")
    alpha = thresholds.ks_alpha / max(1, len(reference))
    return [
        compare_numeric(name, reference[name], current[name], alpha, thresholds.psi_threshold) for name in reference
    ]


@dataclass
class DriftReport:
    """One window's verdict: ``drifted`` / ``no_drift`` / ``skipped`` (with the reason)."""

    verdict: str
    reason: str = ""
    n_rows: int = 0
    features: list[FeatureDrift] = field(default_factory=list)
    embedding: MMDResult | None = None
    embedding_drifted: bool = False
    class_balance: Chi2Result | None = None
    class_balance_drifted: bool = False
    confidence: KSResult | None = None
    confidence_drifted: bool = False
    skipped_features: dict[str, str] = field(default_factory=dict)
    dropped_rows: int = 0
    current: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    """The window's usable feature values (for the histograms; not serialised)."""

    @property
    def drifted_features(self) -> list[str]:
        return [f.name for f in self.features if f.drifted]

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("current")
        out["drifted_features"] = self.drifted_features
        return out


@dataclass
class CheckSettings:
    """Everything a check needs besides the data (values from the settings; no defaults of their own)."""

    thresholds: Thresholds
    confidence_alpha: float
    confidence_psi_threshold: float
    min_rows: int
    mmd_max_samples: int
    mmd_permutations: int

    @classmethod
    def from_settings(cls) -> CheckSettings:
        s = get_settings()
        return cls(Thresholds.from_settings(), s.drift_confidence_alpha, s.drift_confidence_psi_threshold,
                   s.drift_min_rows, s.drift_mmd_max_samples, s.drift_mmd_permutations)


def check_window(profile: Mapping[str, Any], data: WindowData, model_version: str, cfg: CheckSettings) -> DriftReport:
    """Compare one window with the profile. Bad data gives a ``skipped`` verdict with the reason, never no-drift."""
    n = len(data.features)
    if n == 0:
        return DriftReport("skipped", "no predictions in the window")
    ref_features: Mapping[str, Any] = profile["features"]
    seen = set().union(*(row.keys() for row in data.features))
    skipped = {name: "not in the reference profile (ignored)" for name in sorted(seen - set(ref_features))}
    for name in sorted(set(ref_features) - seen):
        skipped[name] = "absent from every monitoring row"
    usable = [name for name in ref_features if name in seen]
    for name, why in skipped.items():
        log.warning("Feature %s: %s", name, why)
    if not usable:
        return DriftReport("skipped", "no feature of the reference profile is in the monitoring data",
                           n_rows=n, skipped_features=skipped)
    matrix = np.full((n, len(usable)), np.nan)
    for i, row in enumerate(data.features):
        for j, name in enumerate(usable):
            value = row.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                matrix[i, j] = float(value)
    good = np.isfinite(matrix).all(axis=1)
    dropped = int((~good).sum())
    if dropped:
        log.warning("Dropped %d of %d rows with missing, NaN or non-numeric feature values", dropped, n)
    report = DriftReport("no_drift", n_rows=int(good.sum()), skipped_features=skipped, dropped_rows=dropped)
    if report.n_rows < cfg.min_rows:
        report.verdict = "skipped"
        report.reason = (f"too few usable rows: {report.n_rows} (of {n}; {dropped} with missing/NaN features) "
                         f"< drift_min_rows={cfg.min_rows}")
        return report
    current = {name: matrix[good, j] for j, name in enumerate(usable)}
    report.current = current
    report.features = compare_frames({k: ref_features[k] for k in usable}, current, cfg.thresholds)

    # Prediction and embedding drift only on rows of the profile's model version.
    same = np.array([v == str(model_version) for v in data.model_versions]) & good
    reasons = []
    if same.sum() >= cfg.min_rows:
        preds = profile["predictions"]
        counts = np.bincount(data.predicted_class[same], minlength=len(preds["class_counts"]))
        report.class_balance = chi2_2sample(preds["class_counts"], counts[: len(preds["class_counts"])])
        report.class_balance_drifted = report.class_balance.pvalue < cfg.thresholds.chi2_alpha
        conf = compare_numeric("confidence", preds["confidence"], data.confidence[same], cfg.confidence_alpha,
                               cfg.confidence_psi_threshold)
        report.confidence = KSResult(conf.statistic, conf.pvalue)
        report.confidence_drifted = conf.drifted
        emb = [e for e, ok in zip(data.embeddings, same, strict=True) if ok]
        ref_emb = np.asarray(profile["embedding"]["sample"], dtype=np.float64)
        if any(len(e) != profile["embedding"]["dim"] for e in emb):
            report.skipped_features["embedding"] = f"embedding size differs from the profile's {ref_emb.shape[1]}"
        else:
            report.embedding = mmd_permutation(ref_emb, np.asarray(emb), cfg.mmd_max_samples, cfg.mmd_permutations)
            report.embedding_drifted = report.embedding.pvalue < cfg.thresholds.mmd_alpha
    else:
        why = f"only {int(same.sum())} rows from version {model_version} (< {cfg.min_rows})"
        report.skipped_features["predictions"] = why
        report.skipped_features["embedding"] = why
    if report.drifted_features:
        reasons.append("features " + ", ".join(report.drifted_features))
    if report.embedding_drifted:
        reasons.append(f"embeddings (MMD p={report.embedding.pvalue:.3g})")  # type: ignore[union-attr]
    if report.class_balance_drifted:
        reasons.append(f"class balance (chi2 p={report.class_balance.pvalue:.3g})")  # type: ignore[union-attr]
    if report.confidence_drifted:
        reasons.append(f"confidence (KS p={report.confidence.pvalue:.3g})")  # type: ignore[union-attr]
    if reasons:
        report.verdict, report.reason = "drifted", "drift in " + "; ".join(reasons)
    else:
        report.reason = f"no drift in {len(report.features)} features, predictions or embeddings"
    return report
