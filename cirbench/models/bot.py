"""The re-ID strong baseline model ("BoT"): a timm ResNet with last stride 1 and a BNNeck.

Paper: Luo, Gu, Liao, Lai, Jiang, "Bag of Tricks and A Strong Baseline for Deep Person
Re-identification", CVPR Workshops 2019, arXiv:1903.07071; reference code
reid-strong-baseline ``modeling/baseline.py`` (``neck='bnneck'``, ``neck_feat='after'``).

Structure: backbone (``timm.create_model(name, pretrained=False, num_classes=0)``, global
average pooling) -> f (N, C_out), the *pre-BN* feature; BNNeck = BatchNorm1d(C_out) with its
bias frozen at 0 ("no shift"), then a linear classifier without bias. Mapped onto
:class:`~cirbench.models.EmbeddingNet`:

- ``forward(x)`` -> f, the feature before BN: read by triplet / circle / center and moved by
  CIR (BoT: "triplet loss on f_t");
- ``head(f)`` = classifier(BN(f)) -> logits (N, num_classes): the ID loss after BN;
- ``embed(x)`` = BN(f) in eval mode: the evaluation feature (BoT ``TEST.NECK_FEAT='after'``).

Last stride 1: the stride-2 convolutions of the first block of ``layer4`` (the 3x3 conv and the
downsample 1x1 conv) get stride 1, doubling the final feature map (BoT ``LAST_STRIDE=1``).
Initialisation as in the reference: BN weight 1, bias 0; classifier weights N(0, 0.001).
``width`` (ours, for CPU smoke runs) scales every stage: 64 is the standard ResNet.
``pretrained`` is an optional path to ImageNet weights for the backbone (a torchvision or timm
ResNet state dict; ``fc.*`` keys are ignored): nothing is ever downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
import torch
from torch import Tensor, nn

from cirbench.errors import CirbenchError
from cirbench.models import EmbeddingNet


def set_last_stride_one(backbone: nn.Module) -> None:
    """Stride 2 -> 1 in every convolution of the first block of ``layer4``."""
    layer4 = getattr(backbone, "layer4", None)
    if not isinstance(layer4, nn.Sequential):
        raise ValueError(f"{type(backbone).__name__} has no layer4: not a ResNet")
    for module in layer4[0].modules():
        if isinstance(module, nn.Conv2d) and module.stride == (2, 2):
            module.stride = (1, 1)


def load_backbone_weights(backbone: nn.Module, path: str) -> None:
    """Load ImageNet weights from a local file; a missing or mismatching file is a user error."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise CirbenchError(
            f"pretrained backbone weights not found at {file}. Give a local ResNet state dict "
            "(e.g. torchvision's resnet50-0676ba61.pth) with --set train.pretrained=PATH, or "
            "--set train.pretrained=none to train from scratch (nothing is downloaded)."
        )
    state = torch.load(file, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CirbenchError(
            f"{file} does not fit the backbone: {len(missing)} missing keys (e.g. "
            f"{missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]}). Use weights "
            "of the same architecture as train.backbone."
        )


class BNNeckHead(nn.Module):
    """BatchNorm1d (bias frozen at 0) then a bias-free linear classifier."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)
        self.bn.bias.requires_grad_(False)
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, features: Tensor) -> Tensor:
        out: Tensor = self.classifier(self.bn(features))
        return out


class BoTNet(EmbeddingNet):
    def __init__(
        self,
        num_classes: int,
        backbone: str = "resnet50",
        last_stride: int = 1,
        pretrained: str | None = None,
        width: int = 64,
    ) -> None:
        super().__init__()
        kwargs: dict[str, Any] = {}
        if width != 64:  # a thinner ResNet for CPU smoke runs (ours): stages w, 2w, 4w, 8w
            kwargs = {"channels": tuple(width * 2**i for i in range(4)), "stem_width": width}
        self.backbone = timm.create_model(backbone, pretrained=False, num_classes=0, **kwargs)
        if last_stride == 1:
            set_last_stride_one(self.backbone)
        if pretrained:
            load_backbone_weights(self.backbone, pretrained)
        self.embed_dim = int(getattr(self.backbone, "num_features"))  # noqa: B009
        self.head: nn.Module | None = BNNeckHead(self.embed_dim, num_classes)
        self.pretrained = pretrained

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.backbone(x)
        return out

    def embed(self, x: Tensor) -> Tensor:
        assert isinstance(self.head, BNNeckHead)
        out: Tensor = self.head.bn(self.backbone(x))
        return out
