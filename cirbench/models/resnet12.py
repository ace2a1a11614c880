"""ResNet-12: the few-shot residual backbone of TADAM and MetaOptNet.

Oreshkin et al., "TADAM", NeurIPS 2018 (arXiv:1805.10123), and Lee et al., "Meta-Learning with
Differentiable Convex Optimization" (MetaOptNet), CVPR 2019 (arXiv:1904.03758), Sec. 4.2: four
residual blocks with widths 64-160-320-640; each block is three [3x3 conv, batch norm,
LeakyReLU(0.1)] (no activation after the third before the sum), a 1x1 conv + batch norm
shortcut, LeakyReLU after the sum, then 2x2 max-pool. An 84x84 image leaves 640 x 5 x 5.

Our choices: the embedding is the global average of that map (640-d; MetaOptNet flattens it,
its DropBlock regulariser is left out), as in Tian et al. 2020 (RFS, arXiv:2003.11539). No
classifier head: the model provides features only.
"""

from __future__ import annotations

from torch import Tensor, nn

from cirbench.models import EmbeddingNet

WIDTHS = (64, 160, 320, 640)
SLOPE = 0.1


def conv_bn(cin: int, cout: int, kernel: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout)]


class ResidualBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *conv_bn(cin, cout, 3),
            nn.LeakyReLU(SLOPE),
            *conv_bn(cout, cout, 3),
            nn.LeakyReLU(SLOPE),
            *conv_bn(cout, cout, 3),
        )
        self.shortcut = nn.Sequential(*conv_bn(cin, cout, 1))
        self.out = nn.Sequential(nn.LeakyReLU(SLOPE), nn.MaxPool2d(2))

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.out(self.body(x) + self.shortcut(x))
        return out


class ResNet12(EmbeddingNet):
    def __init__(self, in_channels: int = 3, widths: tuple[int, ...] = WIDTHS) -> None:
        super().__init__()
        chans = (in_channels, *widths)
        blocks = [ResidualBlock(chans[i], chans[i + 1]) for i in range(len(widths))]
        self.body = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.embed_dim = widths[-1]
        self.head = None

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.body(x)
        return out
