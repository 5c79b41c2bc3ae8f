from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.model import CustomVGG, ModelConfig, build_model, plain_copy


@pytest.mark.parametrize(("width", "size"), [(0.0625, 32), (0.125, 64)])
def test_shapes(width: float, size: int) -> None:
    model = CustomVGG(ModelConfig(width=width, image_size=size)).eval()
    x = torch.randn(3, 3, size, size)
    with torch.no_grad():
        assert model(x).shape == (3, 2)
        assert model.embed(x).shape == (3, model.embedding_dim)


def test_full_width_matches_vgg16_trunk() -> None:
    model = CustomVGG(ModelConfig(width=1.0, batch_norm=False))
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 13 and convs[-1].out_channels == 512
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in model.features) == 4  # last pool left out


def test_pretrained_trunk_from_local_file(tmp_path: Path) -> None:
    cfg = ModelConfig(width=0.0625, image_size=32)
    source = CustomVGG(cfg)
    path = tmp_path / "vgg.pt"
    torch.save({f"features.{k}": v for k, v in source.features.state_dict().items()}, path)
    model = build_model(cfg, pretrained=path, freeze_trunk=True)
    assert torch.equal(model.features[0].weight, source.features[0].weight)
    assert not any(p.requires_grad for p in model.features.parameters())


def test_plain_copy_unwraps_compile() -> None:
    model = CustomVGG(ModelConfig(width=0.0625, image_size=32))
    clean = plain_copy(torch.compile(model))
    assert type(clean) is CustomVGG
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(clean(x), model.eval()(x))
