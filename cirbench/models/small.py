"""A small CNN embedding network with a linear classifier head, for small real images on CPU.

Our own design (no paper): three 3x3 conv-BN-ReLU blocks (widths w, 2w, 4w; a 2x2 max-pool after
the second), global average pooling, then a linear embedding of ``embed_dim``. ``head`` is a
linear classifier on the embedding, used by classification losses (``ce``, ``ls``); embedding
losses (``triplet``, ``circle``) read the embedding directly.
"""

from __future__ import annotations

from torch import Tensor, nn

from cirbench.models import EmbeddingNet


def conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class SmallCNN(EmbeddingNet):
    def __init__(
        self, in_channels: int, num_classes: int | None, embed_dim: int = 64, width: int = 32
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.body = nn.Sequential(
            conv_block(in_channels, width),
            conv_block(width, 2 * width),
            nn.MaxPool2d(2),
            conv_block(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4 * width, embed_dim),
        )
        self.head: nn.Module | None = nn.Linear(embed_dim, num_classes) if num_classes else None

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.body(x)
        return out
