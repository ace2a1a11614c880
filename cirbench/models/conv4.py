"""Conv-4: the four-block embedding network of few-shot learning.

Vinyals et al., "Matching Networks for One Shot Learning", NeurIPS 2016 (arXiv:1606.04080), used
by Snell et al. 2017 (arXiv:1703.05175, Sec. 3): four blocks of [3x3 conv with 64 filters,
batch norm, ReLU, 2x2 max-pool], flattened. A 28x28 Omniglot image gives a 64-d embedding,
an 84x84 image a 1,600-d one (64 x 5 x 5). No classifier head: the model provides features only.
"""

from __future__ import annotations

from torch import Tensor, nn

from cirbench.models import EmbeddingNet


def conv4_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


def conv4_output_side(image_size: int, blocks: int = 4) -> int:
    side = image_size
    for _ in range(blocks):
        side //= 2  # 2x2 max-pool, floor (PyTorch's default)
    return side


class Conv4(EmbeddingNet):
    def __init__(self, in_channels: int = 1, image_size: int = 28, width: int = 64) -> None:
        super().__init__()
        side = conv4_output_side(image_size)
        if side < 1:
            raise ValueError(f"Conv-4 needs images of at least 16x16, got {image_size}")
        self.embed_dim = width * side * side
        self.head = None
        self.body = nn.Sequential(
            conv4_block(in_channels, width),
            conv4_block(width, width),
            conv4_block(width, width),
            conv4_block(width, width),
            nn.Flatten(),
        )

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.body(x)
        return out
