"""CustomVGG: the reference kit's classifier with a size knob.

VGG16's feature trunk without its last max-pool, then max-pool, global average pool and a
linear layer to two classes (as in Intel's visual-quality-inspection kit). ``width`` scales
every conv layer's channels (1.0 is real VGG16 and accepts torchvision ``vgg16`` /
``vgg16_bn`` weights from a local file); ``batch_norm`` selects the ``vgg16_bn`` layout, which
trains from scratch far more reliably. Nothing is ever fetched from a hub.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

# VGG16 configuration "D"; the last "M" (pool) is left out as in the reference kit.
VGG16_TRUNK: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


@dataclass(frozen=True)
class ModelConfig:
    width: float = 1.0
    batch_norm: bool = True
    num_classes: int = 2
    image_size: int = 224

    def as_params(self) -> dict[str, object]:
        return {f"model_{k}": v for k, v in asdict(self).items()}


def _trunk(width: float, batch_norm: bool) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    channels = 3
    for item in VGG16_TRUNK:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        out = max(4, round(int(item) * width))
        layers.append(nn.Conv2d(channels, out, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out))
        layers.append(nn.ReLU(inplace=True))
        channels = out
    return nn.Sequential(*layers), channels


class CustomVGG(nn.Module):
    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        self.features, channels = _trunk(self.config.width, self.config.batch_norm)
        self.pool = nn.Sequential(nn.MaxPool2d(kernel_size=2, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(channels, self.config.num_classes)

    @property
    def embedding_dim(self) -> int:
        return self.classifier.in_features

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features ``(N, embedding_dim)`` (what serving summarises for drift)."""
        return self.pool(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


def build_model(config: ModelConfig, pretrained: Path | None = None, freeze_trunk: bool = False) -> CustomVGG:
    """A new model, optionally with trunk weights from a local torchvision VGG16 state dict."""
    model = CustomVGG(config)
    if pretrained is not None:
        load_trunk_weights(model, pretrained)
    if freeze_trunk:
        for p in model.features.parameters():
            p.requires_grad_(False)
    return model


def load_trunk_weights(model: CustomVGG, path: Path) -> None:
    """Load ``features.*`` tensors from a local file (torchvision ``vgg16``/``vgg16_bn`` layout)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    trunk = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    missing, unexpected = model.features.load_state_dict(trunk, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{path} does not match the trunk (width={model.config.width}, batch_norm={model.config.batch_norm}): "
            f"missing {missing[:3]}…, unexpected {unexpected[:3]}…"
        )
    log.info("Loaded %d trunk tensors from %s", len(trunk), path)


def plain_copy(model: nn.Module) -> CustomVGG:
    """A plain CustomVGG rebuilt from ``state_dict`` (drops IPEX/compile/DDP wrappers; portable)."""
    inner = getattr(model, "module", model)
    inner = getattr(inner, "_orig_mod", inner)
    config: ModelConfig = inner.config
    clean = CustomVGG(config)
    state = {k.removeprefix("module.").removeprefix("_orig_mod."): v.detach().float().contiguous()
             for k, v in inner.state_dict().items()}
    clean.load_state_dict(state)
    return clean.eval()


class EmbedAndClassify(nn.Module):
    """One pass that returns (embedding, logits): monitoring gets the embedding for free."""

    def __init__(self, model: CustomVGG) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.model.embed(x)
        return emb, self.model.classifier(emb)
