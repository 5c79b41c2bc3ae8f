"""Two-sample drift statistics, pure numpy/scipy (no Evidently).

- :func:`ks_2samp` two-sample Kolmogorov-Smirnov by a sorted merge (``searchsorted``) with the
  asymptotic p-value scipy uses for ``method="asymp"``;
- :func:`psi` population stability index from the reference's stored quantile bin edges and bin
  proportions (empty bins floored at :data:`PSI_EPSILON`; a constant column gives one edge);
- :func:`chi2_2sample` chi-square test of homogeneity of two categorical count vectors;
- :func:`mmd_permutation` squared maximum mean discrepancy (RBF kernel, median-heuristic bandwidth,
  unbiased estimator) on bounded subsamples with a permutation p-value, for the model embeddings.

The binning of a column (quantile edges, shares per bin) is the reference profile's format and
lives with it in :mod:`training.profile`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from training.profile import DriftDataError

PSI_EPSILON = 1e-4
"""Floor for a bin proportion in PSI (an empty bin would otherwise give log(0))."""


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
