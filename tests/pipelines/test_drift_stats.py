"""Drift statistics against scipy and known values; PSI binning edge cases."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

from pipelines.drift.check import Thresholds, compare_frames
from pipelines.drift.stats import PSI_EPSILON, chi2_2sample, ks_2samp, mmd2_unbiased, mmd_permutation, psi
from training.profile import DriftDataError, bin_proportions, feature_profile, quantile_edges, sorted_bin_proportions


@pytest.mark.parametrize("m,n,shift", [(50, 80, 0.0), (500, 700, 0.3), (2000, 300, -0.1), (40, 40, 2.0)])
def test_ks_matches_scipy_asymp(m: int, n: int, shift: float) -> None:
    rng = np.random.default_rng(m + n)
    a, b = rng.normal(size=m), rng.normal(shift, 1.0, size=n)
    ours = ks_2samp(np.sort(a), b)
    ref = stats.ks_2samp(a, b, method="asymp")
    assert ours.statistic == pytest.approx(ref.statistic, abs=1e-12)
    assert ours.pvalue == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)


def test_ks_with_ties_matches_scipy() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 5, 300).astype(float), rng.integers(0, 6, 200).astype(float)
    assert ks_2samp(np.sort(a), b).statistic == pytest.approx(stats.ks_2samp(a, b).statistic)


def test_ks_known_values() -> None:
    # Disjoint samples: the empirical CDFs differ by 1 somewhere.
    assert ks_2samp(np.array([0.0, 1.0, 2.0]), np.array([5.0, 6.0])).statistic == 1.0
    assert ks_2samp(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])).statistic == 0.0
    with pytest.raises(DriftDataError, match="non-empty"):
        ks_2samp(np.array([]), np.array([1.0]))


def test_psi_known_value() -> None:
    r, c = np.array([0.5, 0.5]), np.array([0.25, 0.75])
    expected = (0.25 - 0.5) * np.log(0.25 / 0.5) + (0.75 - 0.5) * np.log(0.75 / 0.5)
    assert psi(r, c) == pytest.approx(expected)
    assert psi(r, r) == 0.0


def test_psi_empty_bin_is_floored_not_infinite() -> None:
    value = psi([0.5, 0.5, 0.0], [0.0, 0.5, 0.5])
    assert np.isfinite(value) and value > 1.0
    eps = PSI_EPSILON
    r = np.array([0.5, 0.5, eps]) / (1 + eps)
    c = np.array([eps, 0.5, 0.5]) / (1 + eps)
    assert value == pytest.approx(float(np.sum((c - r) * np.log(c / r))))


def test_psi_refuses_mismatched_bins() -> None:
    with pytest.raises(ValueError, match="same bins"):
        psi([0.5, 0.5], [0.3, 0.3, 0.4])


def test_constant_column_gives_one_edge_and_two_bins() -> None:
    edges = quantile_edges(np.full(100, 3.0), 10)
    assert edges.tolist() == [3.0]
    assert bin_proportions(np.full(10, 3.0), edges).tolist() == [1.0, 0.0]
    # The same constant: no drift; a different constant: everything moved to the other bin.
    assert psi(bin_proportions(np.full(10, 3.0), edges), [1.0, 0.0]) == 0.0
    assert psi([1.0, 0.0], bin_proportions(np.full(10, 4.0), edges)) > 5.0


def test_quantile_bins_hold_equal_shares_of_the_reference() -> None:
    x = np.random.default_rng(0).normal(size=10_000)
    props = bin_proportions(x, quantile_edges(x, 10))
    assert len(props) == 10
    np.testing.assert_allclose(props, 0.1, atol=1e-3)
    # Values beyond the reference range land in the open end bins.
    assert bin_proportions(np.array([-100.0, 100.0]), quantile_edges(x, 10)).tolist() == [0.5] + [0.0] * 8 + [0.5]


def test_chi2_matches_scipy_contingency() -> None:
    ref, cur = np.array([120, 80, 30]), np.array([50, 70, 40])
    ours = chi2_2sample(ref, cur)
    chi2, p, dof, _ = stats.chi2_contingency(np.vstack([ref, cur]), correction=False)
    assert (ours.statistic, ours.dof) == (pytest.approx(chi2), dof)
    assert ours.pvalue == pytest.approx(p)


def test_chi2_drops_empty_categories_and_handles_degenerate_tables() -> None:
    assert chi2_2sample([10, 0, 5], [3, 0, 9]).dof == 1
    assert chi2_2sample([10, 0], [5, 0]).pvalue == 1.0


def test_mmd_unbiased_matches_naive_formula() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 3)), rng.normal(0.5, 1, size=(5, 3))
    z = np.vstack([x, y])
    kernel = np.exp(-((z[:, None, :] - z[None, :, :]) ** 2).sum(-1) / 2.0)
    m, n = 7, 5
    kxx = sum(kernel[i, j] for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(kernel[m + i, m + j] for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kxy = sum(kernel[i, m + j] for i in range(m) for j in range(n)) / (m * n)
    assert mmd2_unbiased(kernel, m) == pytest.approx(kxx + kyy - 2 * kxy)


def test_mmd_detects_a_shift_and_not_the_same_distribution() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(300, 16))
    same = mmd_permutation(ref, rng.normal(size=(200, 16)), permutations=100)
    shifted = mmd_permutation(ref, rng.normal(0.5, 1.0, size=(200, 16)), permutations=100)
    assert same.pvalue > 0.05
    assert shifted.pvalue < 0.02 and shifted.mmd2 > same.mmd2


def test_mmd_subsamples_large_inputs() -> None:
    rng = np.random.default_rng(0)
    result = mmd_permutation(rng.normal(size=(2000, 4)), rng.normal(size=(1500, 4)), max_samples=100, permutations=10)
    assert (result.n_reference, result.n_current) == (100, 100)
    with pytest.raises(DriftDataError, match="same D"):
        mmd_permutation(rng.normal(size=(10, 4)), rng.normal(size=(10, 5)))


def test_profile_sample_is_bounded_sorted_and_deterministic() -> None:
    x = np.random.default_rng(0).normal(size=5000)
    p1, p2 = feature_profile(x, 10, 1000, seed=3), feature_profile(x, 10, 1000, seed=3)
    assert len(p1["sample"]) == 1000 and p1["sample"] == sorted(p1["sample"]) and p1 == p2
    assert p1["n"] == 5000
    with pytest.raises(DriftDataError, match="non-finite"):
        feature_profile(np.array([1.0, np.nan]), 10, 100)


def test_compare_flags_shift_and_scale_but_not_noise() -> None:
    rng = np.random.default_rng(0)
    n = 200_000
    ref = {"same": rng.normal(size=n), "shift": rng.normal(size=n), "scale": rng.normal(size=n)}
    cur = {"same": rng.normal(size=n), "shift": rng.normal(0.1, 1, size=n), "scale": rng.normal(0, 1.2, size=n)}
    profile = {k: feature_profile(v, 10, 50_000) for k, v in ref.items()}
    thresholds = replace(Thresholds.from_settings(), psi_threshold=0.005)
    flagged = {r.name: r.drifted for r in compare_frames(profile, cur, thresholds)}
    assert flagged == {"same": False, "shift": True, "scale": True}


def test_compare_names_missing_features() -> None:
    profile = {"a": feature_profile(np.arange(100.0), 10, 100), "b": feature_profile(np.arange(100.0), 10, 100)}
    with pytest.raises(DriftDataError, match=r"absent from the data: \['b'\]"):
        compare_frames(profile, {"a": np.arange(50.0)}, Thresholds.from_settings())


def test_profile_edges_are_numpy_quantiles_and_sorted_bins_agree() -> None:
    x = np.random.default_rng(5).gamma(2.0, size=3001)
    x[:200] = 1.0  # ties at an edge
    p = feature_profile(x, 10, 100_000)
    np.testing.assert_allclose(p["edges"], quantile_edges(x, 10))
    np.testing.assert_allclose(p["proportions"], bin_proportions(x, quantile_edges(x, 10)))
    y = np.random.default_rng(6).gamma(2.2, size=777)
    edges = np.asarray(p["edges"])
    np.testing.assert_allclose(sorted_bin_proportions(np.sort(y), edges), bin_proportions(y, edges))


@pytest.mark.parametrize("d", [0.002, 0.005, 0.01, 0.03])
def test_limiting_ks_pvalue_agrees_with_scipy_for_large_samples(d: float) -> None:
    from pipelines.drift.stats import KS_LIMITING_N, ks_pvalue

    en = 4 * KS_LIMITING_N
    assert ks_pvalue(d, en) == pytest.approx(stats.kstwo.sf(d, en), abs=2e-3)
