"""A small CNN for 32 x 32 colour images that trains in seconds per epoch on a CPU.

Our own design (no paper), for the ``cifar10-subset`` task and CPU smoke runs: :class:`InputNorm`,
then three blocks of 3x3 conv-BN-ReLU and a 2x2 max-pool (widths w, 2w, 4w on 32, 16, 8 pixels),
global average pooling to a ``4w``-d feature, and a linear classifier ``head``. With w = 32 it has
0.1 M parameters and costs about 10 M multiply-adds per image, a 55th of the CIFAR ResNet-18.
:class:`~cirbench.models.small.SmallCNN` keeps full resolution through two convs, which is 3x the
cost on 32 x 32 inputs, hence this separate model.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from cirbench.models import EmbeddingNet
from cirbench.models.cifar_resnet import InputNorm, init_weights


def conv_pool(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class CifarCNN(EmbeddingNet):
    def __init__(
        self, num_classes: int, mean: Sequence[float], std: Sequence[float], width: int = 32
    ) -> None:
        super().__init__()
        self.body = nn.Sequential(
            InputNorm(mean, std),
            conv_pool(3, width),
            conv_pool(width, 2 * width),
            conv_pool(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.embed_dim = 4 * width
        self.head: nn.Module | None = nn.Linear(self.embed_dim, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.body(x)
        return out
