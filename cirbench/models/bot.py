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
``weights`` are optional ImageNet weights for the backbone, already resolved (a catalogue entry
in the library's cache or a local file, :mod:`cirbench.models.weights`), loaded strictly: a
torchvision or timm ResNet state dict whose keys and shapes all match (``fc.*`` ignored).
The reference's own loader (``modeling/backbones/resnet.py`` lines 135-140, ``load_param``)
copies every non-``fc`` tensor of the file the same way.
"""

from __future__ import annotations

from typing import Any

import timm
from torch import Tensor, nn

from cirbench.models import EmbeddingNet
from cirbench.models.weights import ResolvedWeights, load_backbone_state


def set_last_stride_one(backbone: nn.Module) -> None:
    """Stride 2 -> 1 in every convolution of the first block of ``layer4``."""
    layer4 = getattr(backbone, "layer4", None)
    if not isinstance(layer4, nn.Sequential):
        raise ValueError(f"{type(backbone).__name__} has no layer4: not a ResNet")
    for module in layer4[0].modules():
        if isinstance(module, nn.Conv2d) and module.stride == (2, 2):
            module.stride = (1, 1)


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
        weights: ResolvedWeights | None = None,
        width: int = 64,
    ) -> None:
        super().__init__()
        kwargs: dict[str, Any] = {}
        if width != 64:  # a thinner ResNet for CPU smoke runs (ours): stages w, 2w, 4w, 8w
            kwargs = {"channels": tuple(width * 2**i for i in range(4)), "stem_width": width}
        self.backbone = timm.create_model(backbone, pretrained=False, num_classes=0, **kwargs)
        if last_stride == 1:
            set_last_stride_one(self.backbone)
        if weights is not None:
            load_backbone_state(self.backbone, weights.path)
        self.embed_dim = int(getattr(self.backbone, "num_features"))  # noqa: B009
        self.head: nn.Module | None = BNNeckHead(self.embed_dim, num_classes)
        self.pretrained_weights = None if weights is None else weights.provenance()

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.backbone(x)
        return out

    def embed(self, x: Tensor) -> Tensor:
        assert isinstance(self.head, BNNeckHead)
        out: Tensor = self.head.bn(self.backbone(x))
        return out
