"""Person search model: torchvision's Faster R-CNN with a re-ID head (OIM architecture).

Xiao et al. 2017 (arXiv:1604.01850), as also used by NAE (Chen et al. 2020) and SeqNet (Li &
Miao 2021): ResNet-50 split "C4" style, conv1..res4 (stride 16, 1,024 channels) as the shared
backbone and RPN input, res5 + global average pooling (2,048-d) as the RoI head on 14x14
RoIAlign crops; the head's output feeds the box classifier / regressor and a linear projection to
a 256-d L2-normalised identity feature. We use C4, not FPN, to match those papers.

Training (:meth:`PersonSearchNet.training_step`, called by the engine): the RPN and the RoI head
are torchvision's own (anchor and proposal sampling, losses); the re-ID features are those of
the sampled foreground proposals (IoU >= 0.5 with a ground-truth box, ground truth included), each
labelled with the identity of its matched box (unlabeled people keep their marker), as in OIM.
The method (``oim`` or ``cir+oim``) scores them; the total adds the four detector losses with
weight 1. At test time the final detections are pooled again to give their features (SeqNet),
and a query's feature is pooled from its given box.

Backbones: ``resnet50`` (torchvision's ``resnet50(weights=None)``; ``weights`` are ImageNet
weights already resolved by :mod:`cirbench.models.weights` and loaded strictly, a torchvision or
timm ResNet-50 state dict), and ``tiny``, a 4-layer CNN for CPU smoke runs. With weights, the
stem is fixed as in SeqNet (``models/resnet.py`` lines 46-49: ``conv1.weight``, ``bn1.weight``,
``bn1.bias`` get no gradient) and every batch norm stays an ordinary ``BatchNorm2d`` that
updates its statistics in training, as SeqNet's torchvision 0.4 ``resnet50(pretrained=True)``
does. (OIM's Caffe model instead fixes the statistics, ``frozen: true`` in
``models/psdb/resnet50/train.prototxt``; our ``paper`` profile follows SeqNet throughout.)
Nothing is ever downloaded.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import resnet50
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.roi_heads import fastrcnn_loss
from torchvision.ops import MultiScaleRoIAlign

from cirbench.methods.base import Method
from cirbench.models import EmbeddingNet
from cirbench.models.weights import ResolvedWeights, load_backbone_state

Target = dict[str, Tensor]
#: One image's output: boxes (n, 4) x1 y1 x2 y2 in image pixels, scores (n,), features (n, D).
Detection = tuple[Tensor, Tensor, Tensor]


def resnet50_c4(weights: ResolvedWeights | None) -> tuple[nn.Module, nn.Module]:
    """(conv1..res4, res5 + pool) of torchvision's ResNet-50; optional ImageNet weights."""
    net = resnet50(weights=None)
    if weights is not None:
        load_backbone_state(net, weights.path)
        for param in (net.conv1.weight, net.bn1.weight, net.bn1.bias):
            param.requires_grad_(False)
    body = nn.Sequential(
        net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3
    )
    head = nn.Sequential(net.layer4, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return body, head


def tiny_c4(width: int = 32) -> tuple[nn.Module, nn.Module]:
    """A stride-8 CNN and a conv + pool head: enough to learn coloured boxes on CPU."""

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    body = nn.Sequential(*block(3, width // 2), *block(width // 2, width), *block(width, width))
    head = nn.Sequential(*block(width, 2 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return body, head


class PersonSearchNet(EmbeddingNet):
    """Faster R-CNN + identity embedding. ``head`` is None: there is no classifier output."""

    def __init__(
        self,
        body: nn.Module,
        body_channels: int,
        head: nn.Module,
        head_channels: int,
        embed_dim: int = 256,
        detector_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        setattr(body, "out_channels", body_channels)  # noqa: B010  (torchvision's contract)
        kwargs = dict(detector_kwargs or {})
        kwargs.setdefault(
            "rpn_anchor_generator",
            AnchorGenerator(sizes=((32, 64, 128, 256, 512),), aspect_ratios=((0.5, 1.0, 2.0),)),
        )
        kwargs.setdefault("box_roi_pool", MultiScaleRoIAlign(["0"], 14, 2))
        self.detector = FasterRCNN(
            body,
            num_classes=None,
            box_head=head,
            box_predictor=FastRCNNPredictor(head_channels, 2),
            **kwargs,
        )
        self.reid = nn.Linear(head_channels, embed_dim)
        self.embed_dim = embed_dim
        self.head = None

    def forward(self, x: Tensor) -> Tensor:
        raise TypeError(
            "PersonSearchNet is trained through training_step and evaluated through "
            "detect / query_features"
        )

    def _features(
        self, images: list[Tensor], targets: list[Target] | None = None
    ) -> tuple[Any, list[Target] | None, OrderedDict[str, Tensor]]:
        image_list, targets = self.detector.transform(images, targets)
        feats = self.detector.backbone(image_list.tensors)
        return image_list, targets, OrderedDict([("0", feats)])

    def _embed(self, hidden: Tensor) -> Tensor:
        return F.normalize(self.reid(hidden).float(), dim=1)

    def _embed_boxes(
        self, feats: OrderedDict[str, Tensor], boxes: list[Tensor], sizes: list[tuple[int, int]]
    ) -> Tensor:
        roi = self.detector.roi_heads
        return self._embed(roi.box_head(roi.box_roi_pool(feats, boxes, sizes)))

    def training_step(
        self, images: list[Tensor], targets: list[Target], method: Method
    ) -> dict[str, Tensor]:
        """Detector losses + the method's loss on foreground-proposal features."""
        image_list, moved, feats = self._features(images, targets)
        assert moved is not None
        proposals, rpn_losses = self.detector.rpn(image_list, feats, moved)
        roi = self.detector.roi_heads
        proposals, matched, labels, regression = roi.select_training_samples(proposals, moved)
        hidden = roi.box_head(roi.box_roi_pool(feats, proposals, image_list.image_sizes))
        class_logits, box_regression = roi.box_predictor(hidden)
        loss_cls, loss_box = fastrcnn_loss(class_logits, box_regression, labels, regression)
        fg = torch.cat(labels) > 0
        pids = torch.cat([t["pids"][m] for t, m in zip(moved, matched, strict=True)])
        terms = method(self._embed(hidden[fg]), pids[fg], None)
        detector = {**rpn_losses, "loss_classifier": loss_cls, "loss_box_reg": loss_box}
        total = terms["total"] + sum(detector.values())
        return {**terms, **{k: v.detach() for k, v in detector.items()}, "total": total}

    def detect(self, images: list[Tensor]) -> list[Detection]:
        """Final detections with their L2-normalised features, in original image pixels."""
        sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        image_list, _, feats = self._features(images)
        proposals, _ = self.detector.rpn(image_list, feats)
        found, _ = self.detector.roi_heads(feats, proposals, image_list.image_sizes)
        boxes = [d["boxes"] for d in found]
        flat = self._embed_boxes(feats, boxes, image_list.image_sizes)
        ends = torch.tensor([len(b) for b in boxes]).cumsum(0).tolist()
        emb = [flat[end - len(b) : end] for b, end in zip(boxes, ends, strict=True)]
        found = self.detector.transform.postprocess(found, image_list.image_sizes, sizes)
        return [(d["boxes"], d["scores"], e) for d, e in zip(found, emb, strict=True)]

    def query_features(self, images: list[Tensor], boxes: list[Tensor]) -> Tensor:
        """Features (Q, D) of one given box (1, 4) per image, in original image pixels."""
        targets = [
            {"boxes": b.reshape(1, 4), "labels": torch.ones(1, dtype=torch.int64)} for b in boxes
        ]
        targets = [{k: v.to(images[0].device) for k, v in t.items()} for t in targets]
        image_list, moved, feats = self._features(images, targets)
        assert moved is not None
        return self._embed_boxes(feats, [t["boxes"] for t in moved], image_list.image_sizes)


def build_person_search(
    backbone: str,
    min_size: int,
    max_size: int,
    weights: ResolvedWeights | None = None,
    embed_dim: int = 256,
) -> PersonSearchNet:
    """``resnet50``: the papers' model with SeqNet's detector settings (``defaults.py`` lines
    73-108: score 0.5, NMS 0.4, 300 detections per image; RPN 12,000 / 2,000 proposals before /
    after NMS in training, 6,000 / 300 at test; 128 RoIs per image, half of them foreground;
    the other thresholds are torchvision's defaults, which equal SeqNet's). ``tiny``: a small
    CPU model for smoke runs (ours)."""
    common: dict[str, Any] = {
        "min_size": min_size,
        "max_size": max_size,
        "box_score_thresh": 0.5,
        "box_nms_thresh": 0.4,
        "box_detections_per_img": 300,
    }
    if backbone == "resnet50":
        body, head = resnet50_c4(weights)
        kwargs = {
            **common,
            "rpn_pre_nms_top_n_train": 12000,
            "rpn_post_nms_top_n_train": 2000,
            "rpn_pre_nms_top_n_test": 6000,
            "rpn_post_nms_top_n_test": 300,
            "box_batch_size_per_image": 128,
            "box_positive_fraction": 0.5,
        }
        net = PersonSearchNet(body, 1024, head, 2048, embed_dim, kwargs)
        net.pretrained_weights = None if weights is None else weights.provenance()
        return net
    body, head = tiny_c4()
    kwargs = {
        **common,
        "box_score_thresh": 0.05,
        "rpn_anchor_generator": AnchorGenerator(
            sizes=((24, 40, 64),), aspect_ratios=((1.0, 2.0, 3.0),)
        ),
        "box_roi_pool": MultiScaleRoIAlign(["0"], 8, 2),
        "rpn_pre_nms_top_n_train": 300,
        "rpn_post_nms_top_n_train": 100,
        "rpn_pre_nms_top_n_test": 200,
        "rpn_post_nms_top_n_test": 50,
        "rpn_batch_size_per_image": 64,
        "box_batch_size_per_image": 32,
    }
    return PersonSearchNet(body, 32, head, 64, embed_dim, kwargs)
