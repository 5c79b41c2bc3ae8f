"""The reference profile: what drift checks compare serving traffic with, computed once at training time.

It is logged with each training run as the artifact :data:`PROFILE_ARTIFACT` (so it belongs to the
model version registered from that run) and never recomputed from raw data at check time.

Contents (JSON):

- ``features``: per named image statistic (:data:`training.features.FEATURE_NAMES`) of the training
  and validation images (:func:`feature_profile`): quantile bin edges and the reference share per bin
  (PSI), a sorted sample (KS; the whole column, or a seeded subsample of ``drift_profile_sample``), mean, std;
- ``predictions``: the model's predicted-class counts and a sorted sample of its confidences
  (softmax maximum) on the held-out validation images: what it outputs on unseen in-distribution data;
- ``embedding``: a seeded subsample (at most ``drift_mmd_max_samples``) of the pooled embeddings
  (:meth:`training.model.CustomVGG.embed`) of the validation images, for the MMD test.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from training.data import CLASS_NAMES, Splits
from training.features import FEATURE_NAMES, image_features

log = logging.getLogger(__name__)

PROFILE_ARTIFACT = "drift/reference_profile.json"
PROFILE_FORMAT = 1


class DriftDataError(ValueError):
    """Data that cannot be profiled or tested for drift (empty, NaN, too few rows, unknown features)."""


# --- binning: how a numeric column is stored (quantile edges + shares per bin) and compared --------


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



@dataclass
class ReferenceImages:
    """What a profile describes instead of the training data: the traffic a retrained model is expected to see.

    ``features``: the images whose statistics make the feature profile; ``outputs``: images the model did
    not train on, for its predicted classes, confidences and embeddings; ``source``: where they came from.
    """

    features: torch.Tensor
    outputs: torch.Tensor
    source: str


def model_outputs(model: nn.Module, images: torch.Tensor, batch_size: int = 128) -> dict[str, np.ndarray]:
    """Predicted class, confidence and pooled embedding per image (eval mode, no gradients)."""
    model.eval()
    preds, confs, embs = [], [], []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size]
            emb = model.embed(x)
            probs = torch.softmax(model.classifier(emb), dim=1)
            conf, pred = probs.max(dim=1)
            preds.append(pred.numpy())
            confs.append(conf.double().numpy())
            embs.append(emb.double().numpy())
    return {"predicted_class": np.concatenate(preds), "confidence": np.concatenate(confs),
            "embedding": np.concatenate(embs)}


def build_profile(
    model: nn.Module, splits: Splits, bins: int, max_sample: int, max_embeddings: int, seed: int = 0,
    reference: ReferenceImages | None = None,
) -> dict[str, Any]:
    """The reference profile of a trained model and its data (a few seconds for the demo's data).

    By default it describes the training and validation images (outputs on the validation images);
    with ``reference``, those images instead.
    """
    if reference is None:
        images, unseen, source = torch.cat([splits.train.images, splits.val.images]), splits.val.images, splits.source
    else:
        images, unseen, source = reference.features, reference.outputs, reference.source
    columns = image_features(images)
    features = {name: feature_profile(columns[name], bins, max_sample, seed=seed) for name in FEATURE_NAMES}
    out = model_outputs(model, unseen)
    counts = np.bincount(out["predicted_class"], minlength=len(CLASS_NAMES))
    emb = out["embedding"]
    if len(emb) > max_embeddings:
        emb = emb[np.random.default_rng(seed).choice(len(emb), max_embeddings, replace=False)]
    profile = {
        "format": PROFILE_FORMAT,
        "source": source,
        "n_images": int(len(images)),
        "features": features,
        "predictions": {
            "classes": list(CLASS_NAMES),
            "class_counts": counts.tolist(),
            "confidence": feature_profile(out["confidence"], bins, max_sample, seed=seed),
        },
        "embedding": {"dim": int(emb.shape[1]), "sample": emb.astype(np.float32).tolist()},  # serving stores real[]
        "settings": {"bins": bins, "max_sample": max_sample, "max_embeddings": max_embeddings, "seed": seed},
    }
    log.info("Reference profile (%s): %d features over %d images, %d embeddings of dim %d",
             source, len(features), len(images), len(emb), emb.shape[1])
    return profile


def log_profile(model: nn.Module, splits: Splits, reference: ReferenceImages | None = None) -> dict[str, Any]:
    """Build the profile with the drift settings and log it to the active MLflow run."""
    from mlops.settings import get_settings
    from training import tracking

    s = get_settings()
    profile = build_profile(model, splits, s.drift_psi_bins, s.drift_profile_sample, s.drift_mmd_max_samples,
                            reference=reference)
    tracking.log_dict(profile, PROFILE_ARTIFACT)
    return profile
