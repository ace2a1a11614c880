"""CIFAR ResNets (32 x 32 inputs) as :class:`EmbeddingNet`: features = the globally pooled output
of the last stage, ``head`` = the linear classifier on it (where CIR perturbs the features).

- ``resnet56``: He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016,
  arXiv:1512.03385, Sec. 4.2: a 3x3 conv with 16 filters, then 3 stages of n = 9 basic blocks
  with 16, 32, 64 filters on 32, 16, 8 pixels (stride 2 at the first block of stages 2 and 3),
  global average pooling, a linear classifier; 6n + 2 = 56 layers, 0.85 M parameters.
  Shortcuts are identities, with zero-padded extra channels and subsampling where the shape
  changes ("option A", parameter-free, as the paper used on CIFAR). This is the network of the
  label-smoothing CIFAR-100 result (Muller, Kornblith, Hinton 2019, arXiv:1906.02629, Table 1).
- ``resnet18``: the ImageNet ResNet-18 (He et al. 2016, Table 1: 4 stages of 2 basic blocks,
  64-128-256-512 filters, 1x1 projection shortcuts) with the usual CIFAR stem: one 3x3 stride-1
  conv and no max-pool, so stage 1 runs at 32 x 32; 11.2 M parameters. The common CIFAR-10
  baseline in open re-implementations (e.g. github.com/kuangliu/pytorch-cifar).

Inputs are uint8 (or float in 0..255) images (N, 3, 32, 32); :class:`InputNorm` scales them to
0..1 and standardises each channel with the training set's mean and std, inside the model so that
the data pipeline moves uint8 tensors and train and test are normalised alike. Weights: Kaiming
normal (fan out) for convolutions (He et al. 2015), BN weight 1 and bias 0, PyTorch's default for
the linear classifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cirbench.models import EmbeddingNet

Arch = Literal["resnet18", "resnet56"]


class InputNorm(nn.Module):
    """uint8 (or 0..255 float) images -> (x / 255 - mean) / std per channel, as float32."""

    mean: Tensor
    std: Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x.float() / 255.0 - self.mean) / self.std


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class PadShortcut(nn.Module):
    """Option A shortcut: subsample by ``stride`` and zero-pad the new channels."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra = cout - cin

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        half = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, half, self.extra - half))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers and a shortcut; ReLU after the sum."""

    def __init__(self, cin: int, cout: int, stride: int, shortcut: Literal["pad", "conv"]) -> None:
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = (
                PadShortcut(cin, cout, stride)
                if shortcut == "pad"
                else nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
                )
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(EmbeddingNet):
    """Stem conv, stages of basic blocks, global average pooling; ``embed_dim`` = last width.

    ``in_channels``: 3 for CIFAR; 1 for grey-level images (the ``fashion-mnist`` task).
    ``stem_stride``: 1 for the CIFAR networks; 2 halves the resolution in the stem, a 4x cheaper
    network for CPU budgets (``fashion-mnist``'s ``cpu`` profile)."""

    def __init__(
        self,
        widths: Sequence[int],
        blocks: int | Sequence[int],
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        shortcut: Literal["pad", "conv"],
        in_channels: int = 3,
        stem_stride: int = 1,
    ) -> None:
        super().__init__()
        counts = [blocks] * len(widths) if isinstance(blocks, int) else list(blocks)
        layers: list[nn.Module] = [
            InputNorm(mean, std),
            conv3x3(in_channels, widths[0], stem_stride),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        ]
        cin = widths[0]
        for stage, (width, count) in enumerate(zip(widths, counts, strict=True)):
            for i in range(count):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(BasicBlock(cin, width, stride, shortcut))
                cin = width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.embed_dim = cin
        self.head: nn.Module | None = nn.Linear(cin, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.body(x)
        return out


def init_weights(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def cifar_resnet(
    arch: Arch, num_classes: int, mean: Sequence[float], std: Sequence[float]
) -> CifarResNet:
    """``resnet56`` (He et al. 2016, CIFAR, option A) or ``resnet18`` (CIFAR stem)."""
    if arch == "resnet56":
        return CifarResNet((16, 32, 64), 9, num_classes, mean, std, "pad")
    return CifarResNet((64, 128, 256, 512), 2, num_classes, mean, std, "conv")
