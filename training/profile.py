"""The reference profile: what drift checks compare serving traffic with, computed once at training time.

It is logged with each training run as the artifact :data:`PROFILE_ARTIFACT` (so it belongs to the
model version registered from that run) and never recomputed from raw data at check time.

Contents (JSON):

- ``features``: per named image statistic (:data:`training.features.FEATURE_NAMES`) of the training
  and validation images: quantile bin edges and the reference share per bin (PSI), a sorted sample
  (KS; the whole column here, or a seeded subsample of ``drift_profile_sample`` values), mean, std;
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
    from pipelines.drift import feature_profile

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
