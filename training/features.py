"""What drift monitoring looks at: named per-image statistics, computed the same way everywhere.

Training computes them on its data for the reference profile; serving computes them on every
predicted image for the monitoring store (``mlops.monitoring``). Inputs are model inputs as
:func:`training.data.preprocess` makes them (ImageNet-normalised ``float32 (N, 3, H, W)``), so
the statistics describe the pixels the model actually saw.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from training.data import IMAGENET_MEAN, IMAGENET_STD

FEATURE_NAMES: tuple[str, ...] = (
    "brightness",  # mean luminance, 0..1
    "contrast",  # standard deviation of luminance
    "mean_red",
    "mean_green",
    "mean_blue",
    "saturation",  # mean of (max - min) / max over the channels
    "sharpness",  # variance of the luminance Laplacian (blur lowers it)
    "dark_fraction",  # share of pixels with luminance below 0.2 (background)
)

_LUMA = (0.299, 0.587, 0.114)
_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)


def image_features(images: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-image statistics ``name -> float64 (N,)`` of normalised model inputs ``(N, 3, H, W)``."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(images.shape)}")
    with torch.no_grad():
        x = images.detach().float()
        x = x * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        x = x.clamp(0.0, 1.0)
        luma = (x * torch.tensor(_LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
        hi = x.amax(1)
        lo = x.amin(1)
        saturation = torch.where(hi > 0, (hi - lo) / hi.clamp_min(1e-6), torch.zeros_like(hi))
        laplacian = F.conv2d(luma, _LAPLACIAN)
        values = {
            "brightness": luma.mean((1, 2, 3)),
            "contrast": luma.std((1, 2, 3)),
            "mean_red": x[:, 0].mean((1, 2)),
            "mean_green": x[:, 1].mean((1, 2)),
            "mean_blue": x[:, 2].mean((1, 2)),
            "saturation": saturation.mean((1, 2)),
            "sharpness": laplacian.var((1, 2, 3)),
            "dark_fraction": (luma < 0.2).float().mean((1, 2, 3)),
        }
    return {name: values[name].double().numpy() for name in FEATURE_NAMES}


def feature_rows(images: torch.Tensor) -> list[dict[str, float]]:
    """The same statistics as one ``{name: value}`` dict per image (a monitoring record's ``features``)."""
    columns = image_features(images)
    return [{name: float(columns[name][i]) for name in FEATURE_NAMES} for i in range(images.shape[0])]
