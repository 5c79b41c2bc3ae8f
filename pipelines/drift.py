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
from typing import Any

import numpy as np
from scipy import stats

log = logging.getLogger(__name__)

PSI_EPSILON = 1e-4
"""Floor for a bin proportion in PSI (an empty bin would otherwise give log(0))."""


class DriftDataError(ValueError):
    """Monitoring data that cannot be tested (empty, NaN, too few rows, unknown features)."""


# --- statistics ------------------------------------------------------------------------------


@dataclass(frozen=True)
class KSResult:
    statistic: float
    pvalue: float


def ks_2samp(reference_sorted: np.ndarray, current: np.ndarray) -> KSResult:
    """Two-sample KS of ``current`` against an already sorted ``reference_sorted`` (asymptotic p-value).

    Equivalent to ``scipy.stats.ks_2samp(reference, current, method="asymp")``: the statistic is the
    largest gap between the two empirical CDFs, evaluated at every observed value by ``searchsorted``.
    """
    ref = np.asarray(reference_sorted, dtype=np.float64)
    cur = np.sort(np.asarray(current, dtype=np.float64))
    m, n = ref.size, cur.size
    if m == 0 or n == 0:
        raise DriftDataError(f"KS needs two non-empty samples (reference {m}, current {n})")
    both = np.concatenate([ref, cur])
    cdf_ref = np.searchsorted(ref, both, side="right") / m
    cdf_cur = np.searchsorted(cur, both, side="right") / n
    d = float(np.max(np.abs(cdf_ref - cdf_cur)))
    en = m * n / (m + n)
    # scipy's asymptotic two-sided p-value: the one-sample Kolmogorov distribution at round(en).
    p = float(np.clip(stats.kstwo.sf(d, np.round(en)), 0.0, 1.0))
    return KSResult(d, p)


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
    deterministic (seeded) uniform subsample of ``max_sample`` values, stored sorted.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise DriftDataError("reference column is empty")
    if not np.isfinite(values).all():
        raise DriftDataError(f"reference column has {int((~np.isfinite(values)).sum())} non-finite values")
    edges = quantile_edges(values, bins)
    sample = values
    if values.size > max_sample:
        sample = values[np.random.default_rng(seed).choice(values.size, max_sample, replace=False)]
    return {
        "edges": edges.tolist(),
        "proportions": bin_proportions(values, edges).tolist(),
        "sample": np.sort(sample).tolist(),
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
    ks = ks_2samp(np.asarray(profile["sample"]), current)
    value = psi(profile["proportions"], bin_proportions(current, np.asarray(profile["edges"])))
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

    @property
    def drifted_features(self) -> list[str]:
        return [f.name for f in self.features if f.drifted]

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["drifted_features"] = self.drifted_features
        return out


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x
