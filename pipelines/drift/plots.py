"""Drift plots logged with each drift run: per-feature scores, reference vs current histograms."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipelines.drift.check import DriftReport, Thresholds


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
