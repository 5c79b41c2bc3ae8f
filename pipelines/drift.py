"""Drift statistics and the drift check of a window of serving traffic against a reference profile.

Statistics (pure numpy/scipy, no Evidently):

- :func:`ks_2samp` two-sample Kolmogorov-Smirnov by a sorted merge (``searchsorted``) with the
  asymptotic p-value scipy uses for ``method="asymp"``;
- :func:`psi` population stability index from the reference's stored quantile bin edges and bin
  proportions (empty bins floored at :data:`PSI_EPSILON`; a constant column gives one edge);
- :func:`chi2_2sample` chi-square test of homogeneity of two categorical count vectors;
- :func:`mmd_permutation` squared maximum mean discrepancy (RBF kernel, median-heuristic bandwidth,
  unbiased estimator) on bounded subsamples with a permutation p-value, for the model embeddings.

A numeric feature drifts when its KS test rejects at ``ks_alpha`` divided by the number of
features (Bonferroni: with many features a per-test alpha flags something by chance every window)
*and* its PSI reaches ``psi_threshold`` (so that a huge window does not flag every negligible
shift). The reference side of KS is the profile's sorted, bounded, deterministic subsample.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

log = logging.getLogger(__name__)

PSI_EPSILON = 1e-4
"""Floor for a bin proportion in PSI (an empty bin would otherwise give log(0))."""


class DriftDataError(ValueError):
    """Monitoring data that cannot be tested (empty, NaN, too few rows, unknown features)."""


class NoChampion(DriftDataError):
    """The model has no champion yet: there is nothing to compare traffic with."""


# --- statistics ------------------------------------------------------------------------------


@dataclass(frozen=True)
class KSResult:
    statistic: float
    pvalue: float


def _right_ranks(sorted_values: np.ndarray) -> np.ndarray:
    """For a sorted array, the number of elements <= each element (``searchsorted(x, x, "right")``) in O(n)."""
    n = sorted_values.size
    last = np.empty(n, dtype=bool)
    last[-1] = True
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=last[:-1])
    ends = np.flatnonzero(last) + 1
    return np.repeat(ends, np.diff(ends, prepend=0))


def ks_sorted(ref: np.ndarray, cur: np.ndarray) -> KSResult:
    """Two-sample KS of two sorted samples (the largest ECDF gap is reached at one of their points)."""
    m, n = ref.size, cur.size
    if m == 0 or n == 0:
        raise DriftDataError(f"KS needs two non-empty samples (reference {m}, current {n})")
    gap_at_cur = np.abs(_right_ranks(cur) / n - np.searchsorted(ref, cur, side="right") / m).max()
    gap_at_ref = np.abs(np.searchsorted(cur, ref, side="right") / n - _right_ranks(ref) / m).max()
    d = float(max(gap_at_cur, gap_at_ref))
    return KSResult(d, ks_pvalue(d, m * n / (m + n)))


KS_LIMITING_N = 10_000
"""Above this effective size the limiting distribution replaces the finite-n one (agreeing to ~1e-3)."""


def ks_pvalue(d: float, en: float) -> float:
    """Two-sided asymptotic p-value as scipy's ``method="asymp"``: Kolmogorov's distribution at round(en).

    For an effective size above :data:`KS_LIMITING_N` the limiting (Kolmogorov-Smirnov) distribution
    ``kstwobign.sf(d * sqrt(en))`` is used: scipy's finite-n evaluation costs ~0.1 s per call there.
    """
    if en > KS_LIMITING_N:
        return float(np.clip(stats.kstwobign.sf(d * np.sqrt(en)), 0.0, 1.0))
    return float(np.clip(stats.kstwo.sf(d, np.round(en)), 0.0, 1.0))


def ks_2samp(reference_sorted: np.ndarray, current: np.ndarray) -> KSResult:
    """Two-sample KS of ``current`` against an already sorted ``reference_sorted`` (asymptotic p-value).

    Equivalent to ``scipy.stats.ks_2samp(reference, current, method="asymp")``: the statistic is the
    largest gap between the two empirical CDFs, evaluated at every observed value by ``searchsorted``
    (a sorted merge; O((m + n) log m) after sorting ``current``).
    """
    return ks_sorted(np.asarray(reference_sorted, dtype=np.float64), np.sort(np.asarray(current, dtype=np.float64)))


def quantile_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Interior bin edges at the reference's quantiles (duplicates removed; a constant column gives one)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise DriftDataError("cannot bin an empty reference sample")
    if bins < 2:
        raise ValueError(f"PSI needs at least 2 bins, got {bins}")
    edges = np.quantile(values, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    return np.unique(edges)


def bin_proportions(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of ``values`` in each right-closed bin ``(-inf, e0], (e0, e1], ..., (ek, inf)``."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise DriftDataError("cannot compute bin proportions of an empty sample")
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1)
    return counts / values.size


def sorted_bin_proportions(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """:func:`bin_proportions` of an already sorted sample, in O(bins log n)."""
    n = sorted_values.size
    if n == 0:
        raise DriftDataError("cannot compute bin proportions of an empty sample")
    cum = np.searchsorted(sorted_values, np.asarray(edges, dtype=np.float64), side="right")
    return np.diff(np.concatenate([[0], cum, [n]])) / n


def psi(reference_props: Sequence[float] | np.ndarray, current_props: Sequence[float] | np.ndarray) -> float:
    """Population stability index ``sum((c - r) * ln(c / r))`` with proportions floored at PSI_EPSILON."""
    r = np.asarray(reference_props, dtype=np.float64)
    c = np.asarray(current_props, dtype=np.float64)
    if r.shape != c.shape:
        raise ValueError(f"PSI needs the same bins on both sides, got {r.shape} and {c.shape}")
    r = np.clip(r, PSI_EPSILON, None)
    c = np.clip(c, PSI_EPSILON, None)
    r, c = r / r.sum(), c / c.sum()
    return float(np.sum((c - r) * np.log(c / r)))


@dataclass(frozen=True)
class Chi2Result:
    statistic: float
    pvalue: float
    dof: int


def chi2_2sample(
    reference_counts: Sequence[int] | np.ndarray, current_counts: Sequence[int] | np.ndarray
) -> Chi2Result:
    """Chi-square test of homogeneity on a 2 x k table (categories empty on both sides are dropped)."""
    table = np.vstack([np.asarray(reference_counts, np.float64), np.asarray(current_counts, np.float64)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        # One category in all, or one side empty: nothing to compare; report no evidence.
        return Chi2Result(0.0, 1.0, 0)
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    dof = table.shape[1] - 1
    return Chi2Result(statistic, float(stats.chi2.sf(statistic, dof)), dof)


@dataclass(frozen=True)
class MMDResult:
    mmd2: float
    pvalue: float
    bandwidth: float
    n_reference: int
    n_current: int


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def mmd2_unbiased(kernel: np.ndarray, m: int) -> float:
    """Unbiased MMD^2 from the joint kernel matrix of ``[x (m rows); y (n rows)]``."""
    kxx, kyy, kxy = kernel[:m, :m], kernel[m:, m:], kernel[:m, m:]
    n = kernel.shape[0] - m
    return float(
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2.0 * kxy.mean()
    )


def mmd_permutation(
    reference: np.ndarray,
    current: np.ndarray,
    max_samples: int = 500,
    permutations: int = 200,
    seed: int = 0,
) -> MMDResult:
    """RBF-kernel MMD^2 between two samples of vectors, each subsampled to at most ``max_samples``.

    The kernel matrix is computed once (O(max_samples^2)); each permutation only re-indexes it, so
    the cost is bounded whatever the window size. Bandwidth: median pairwise distance (pooled).
    """
    x = np.asarray(reference, dtype=np.float64)
    y = np.asarray(current, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise DriftDataError(f"embeddings must be two (N, D) arrays of the same D, got {x.shape} and {y.shape}")
    if len(x) < 2 or len(y) < 2:
        raise DriftDataError(f"MMD needs at least 2 embeddings per side (reference {len(x)}, current {len(y)})")
    rng = np.random.default_rng(seed)
    if len(x) > max_samples:
        x = x[rng.choice(len(x), max_samples, replace=False)]
    if len(y) > max_samples:
        y = y[rng.choice(len(y), max_samples, replace=False)]
    z = np.vstack([x, y])
    d2 = _sq_dists(z, z)
    off = d2[~np.eye(len(z), dtype=bool)]
    bandwidth = float(np.sqrt(np.median(off) / 2.0)) if off.size and np.median(off) > 0 else 1.0
    kernel = np.exp(-d2 / (2.0 * bandwidth**2))
    m = len(x)
    observed = mmd2_unbiased(kernel, m)
    exceed = 0
    for _ in range(permutations):
        p = rng.permutation(len(z))
        if mmd2_unbiased(kernel[np.ix_(p, p)], m) >= observed:
            exceed += 1
    pvalue = (exceed + 1) / (permutations + 1)
    return MMDResult(observed, pvalue, bandwidth, len(x), len(y))


# --- reference profile (the stored form of the reference data) ---------------------------------


def feature_profile(values: np.ndarray, bins: int, max_sample: int, seed: int = 0) -> dict[str, Any]:
    """What a drift check needs of one numeric reference column: bin edges + proportions, a sorted sample.

    The KS sample is the whole column when it has at most ``max_sample`` values, otherwise a
    deterministic (seeded) uniform subsample of ``max_sample`` values, stored sorted. One sort of the
    column gives the quantile edges, the bin shares and the sample.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise DriftDataError("reference column is empty")
    if not np.isfinite(values).all():
        raise DriftDataError(f"reference column has {int((~np.isfinite(values)).sum())} non-finite values")
    if bins < 2:
        raise ValueError(f"PSI needs at least 2 bins, got {bins}")
    ordered = np.sort(values)
    # np.quantile's default (linear interpolation), on the sorted column.
    pos = (ordered.size - 1) * np.linspace(0.0, 1.0, bins + 1)[1:-1]
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, ordered.size - 1)
    edges = np.unique(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))
    sample = ordered
    if values.size > max_sample:
        sample = ordered[np.sort(np.random.default_rng(seed).choice(values.size, max_sample, replace=False))]
    return {
        "edges": edges.tolist(),
        "proportions": sorted_bin_proportions(ordered, edges).tolist(),
        "sample": sample.tolist(),
        "n": int(values.size),
        "mean": float(values.mean()),
        "std": float(values.std()),
    }


# --- per-feature comparison ----------------------------------------------------------------------


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
    ks_alpha: float = 0.01
    psi_threshold: float = 0.01
    chi2_alpha: float = 0.01
    mmd_alpha: float = 0.01

    @classmethod
    def from_settings(cls) -> Thresholds:
        from mlops.settings import get_settings

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


# --- the result of a drift check ------------------------------------------------------------------


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


# --- windows ---------------------------------------------------------------------------------------

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``30s``, ``15m``, ``1h``, ``2d`` (a positive whole number and one unit) -> timedelta."""
    value = text.strip().lower()
    if len(value) < 2 or value[-1] not in _UNITS or not value[:-1].isdigit() or int(value[:-1]) <= 0:
        raise ValueError(f"expected a duration like 30s, 15m, 1h or 1d, got {text!r}")
    return timedelta(seconds=int(value[:-1]) * _UNITS[value[-1]])


@dataclass(frozen=True)
class Window:
    """A half-open interval ``[start, end)`` aligned to multiples of its length since the epoch."""

    start: datetime
    end: datetime

    @property
    def id(self) -> str:
        return f"{self.start.strftime('%Y%m%dT%H%M%SZ')}/{int((self.end - self.start).total_seconds())}s"

    def previous(self, k: int = 1) -> Window:
        length = self.end - self.start
        return Window(self.start - k * length, self.end - k * length)


def latest_complete_window(length: timedelta, now: datetime | None = None) -> Window:
    """The most recent window that has ended by ``now`` (so its data no longer changes)."""
    now = now or datetime.now(UTC)
    seconds = int(length.total_seconds())
    end_epoch = int(now.timestamp()) // seconds * seconds
    end = datetime.fromtimestamp(end_epoch, UTC)
    return Window(end - length, end)


# --- reading a window of the monitoring store ------------------------------------------------------


@dataclass
class WindowData:
    features: list[dict[str, Any]]
    model_versions: list[str]
    predicted_class: np.ndarray
    confidence: np.ndarray
    embeddings: list[list[float]]


def load_window(conn: Any, model_name: str, window: Window) -> WindowData:  # noqa: ANN401 - psycopg2 connection
    """Every prediction of ``model_name`` recorded in the window (oldest first)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT features, model_version, predicted_class, confidence, embedding FROM monitoring.predictions "
            "WHERE model_name = %s AND ts >= %s AND ts < %s ORDER BY ts, id",
            (model_name, window.start, window.end),
        )
        rows = cur.fetchall()
    return WindowData(
        features=[r[0] if isinstance(r[0], dict) else {} for r in rows],
        model_versions=[str(r[1]) for r in rows],
        predicted_class=np.array([r[2] for r in rows], dtype=np.int64),
        confidence=np.array([r[3] for r in rows], dtype=np.float64),
        embeddings=[list(r[4] or []) for r in rows],
    )


# --- the check --------------------------------------------------------------------------------------


@dataclass
class CheckSettings:
    thresholds: Thresholds
    confidence_alpha: float = 0.01
    confidence_psi_threshold: float = 0.05
    min_rows: int = 30
    mmd_max_samples: int = 300
    mmd_permutations: int = 200

    @classmethod
    def from_settings(cls) -> CheckSettings:
        from mlops.settings import get_settings

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


# --- plots ------------------------------------------------------------------------------------------


def scores_figure(report: DriftReport, thresholds: Thresholds):  # noqa: ANN201 - matplotlib Figure
    """Per-feature PSI and KS p-value against their thresholds (drifted features in red)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f.name for f in report.features]
    colours = ["tab:red" if f.drifted else "tab:blue" for f in report.features]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.barh(names, [f.psi or 0.0 for f in report.features], color=colours)
    ax1.axvline(thresholds.psi_threshold, color="k", linestyle="--", label=f"PSI threshold {thresholds.psi_threshold}")
    ax1.set_xlabel("PSI")
    ax1.legend(loc="lower right")
    alpha = thresholds.ks_alpha / max(1, len(names))
    ax2.barh(names, [-math.log10(max(f.pvalue, 1e-300)) for f in report.features], color=colours)
    ax2.axvline(-math.log10(alpha), color="k", linestyle="--", label=f"KS alpha {alpha:.2g} (Bonferroni)")
    ax2.set_xlabel("-log10 KS p-value")
    ax2.legend(loc="lower right")
    fig.suptitle(f"Drift per feature: {report.verdict} ({report.n_rows} rows)")
    fig.tight_layout()
    return fig


def histograms_figure(profile: Mapping[str, Any], current: Mapping[str, np.ndarray], names: Sequence[str]):  # noqa: ANN201
    """Reference (profile sample) vs current histograms of the given features."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        ref = np.asarray(profile["features"][name]["sample"])
        cur = np.asarray(current[name])
        bins = np.histogram_bin_edges(np.concatenate([ref, cur]), bins=30)
        ax.hist(ref, bins=bins, density=True, alpha=0.5, label="reference")
        ax.hist(cur, bins=bins, density=True, alpha=0.5, label="current")
        ax.set_title(name)
        ax.legend()
    fig.tight_layout()
    return fig


# --- the drift run in MLflow ------------------------------------------------------------------------

TAG_KIND = "mlops.kind"
TAG_MODEL = "mlops.model"
TAG_VERSION = "mlops.model_version"
TAG_WINDOW = "mlops.window"
TAG_WINDOW_START = "mlops.window_start"
TAG_VERDICT = "mlops.verdict"
TAG_REASON = "mlops.reason"


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
    import tempfile

    from mlflow.exceptions import MlflowException

    from mlops.registry import CHAMPION, version_by_alias
    from mlops.tracking import retry
    from training.profile import PROFILE_ARTIFACT

    if version is None:
        mv = retry(version_by_alias)(client, model_name, CHAMPION)
        if mv is None:
            raise NoChampion(f"model {model_name!r} has no @{CHAMPION} version: promote one (mlops promote)")
    else:
        mv = retry(client.get_model_version)(model_name, version)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = retry(client.download_artifacts)(mv.run_id, PROFILE_ARTIFACT, tmp)
        except (MlflowException, OSError) as exc:
            raise DriftDataError(
                f"{model_name} version {mv.version} has no reference profile ({PROFILE_ARTIFACT} in run {mv.run_id}):"
                " it was trained before profiles existed; retrain it with `mlops train`") from exc
        import json

        return str(mv.version), json.loads(Path(path).read_text())


def _experiment_id(client: Any, name: str) -> str:  # noqa: ANN401
    from mlops.tracking import retry

    exp = retry(client.get_experiment_by_name)(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return retry(client.create_experiment)(name)
    except Exception:  # noqa: BLE001 - a concurrent tick created it first
        return client.get_experiment_by_name(name).experiment_id


def find_drift_run(client: Any, experiment_id: str, model_name: str, window: Window) -> Any | None:  # noqa: ANN401
    """The finished drift run of this model and window, if a tick already made one."""
    from mlops.tracking import retry

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
    from mlops.tracking import retry

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


def _log_drift_run(client: Any, experiment_id: str, model_name: str, version: str, window: Window,  # noqa: ANN401
                   report: DriftReport, profile: Mapping[str, Any], cfg: CheckSettings) -> str:
    from mlflow.entities import Metric, Param, RunTag

    from mlops.tracking import retry

    tags = {TAG_KIND: "drift", TAG_MODEL: model_name, TAG_VERSION: version, TAG_WINDOW: window.id,
            TAG_WINDOW_START: str(int(window.start.timestamp())), TAG_VERDICT: report.verdict,
            TAG_REASON: report.reason[:4000]}
    run = retry(client.create_run)(experiment_id, tags=tags, run_name=f"drift {model_name} v{version} {window.id}")
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
            import matplotlib.pyplot as plt

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
    from mlflow import MlflowClient

    from mlops import monitoring
    from mlops.settings import get_settings
    from mlops.tracking import load_client_env

    load_client_env()
    client = MlflowClient()
    experiment_id = _experiment_id(client, get_settings().drift_experiment)
    if not force:
        existing = find_drift_run(client, experiment_id, model_name, window)
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
    run_id = _log_drift_run(client, experiment_id, model_name, version, window, report, profile, cfg)
    return DriftCheck(model_name, version, window, run_id, report.verdict, report.reason, report=report)
