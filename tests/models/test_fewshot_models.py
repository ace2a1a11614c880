from __future__ import annotations

import pytest
import torch

from cirbench.models.conv4 import Conv4
from cirbench.models.resnet12 import ResNet12


@pytest.mark.parametrize(("size", "dim"), [(28, 64), (84, 1600), (32, 256)])
def test_conv4_embedding_sizes(size: int, dim: int) -> None:
    model = Conv4(in_channels=1, image_size=size).eval()
    assert model.embed_dim == dim and model.head is None
    assert model.embed(torch.zeros(2, 1, size, size)).shape == (2, dim)


def test_conv4_rejects_tiny_images() -> None:
    with pytest.raises(ValueError, match="at least 16x16"):
        Conv4(image_size=8)


def test_resnet12_gives_640_d_from_84x84() -> None:
    model = ResNet12(in_channels=3).eval()
    with torch.inference_mode():
        out = model(torch.zeros(1, 3, 84, 84))
    assert out.shape == (1, 640) and model.embed_dim == 640 and model.head is None
    widths = [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert sorted(set(widths)) == [64, 160, 320, 640] and len(widths) == 16  # 4 x (3 + shortcut)
