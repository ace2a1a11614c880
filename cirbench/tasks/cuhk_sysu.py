"""``cuhk-sysu``: person search on CUHK-SYSU (Xiao et al. 2017, arXiv:1604.01850).

Data: the release under ``<data root>/cuhk_sysu`` (see cirbench/data/cuhk_sysu.py): 11,206
training scenes with 5,532 identities (other people unlabeled), 6,978 test scenes, 2,900
queries. Model: Faster R-CNN with a ResNet-50 C4 backbone and a 256-d re-ID head
(cirbench/models/person_search.py). Methods: ``oim`` and ``cir+oim``; the detector losses are
added by the model's ``training_step``. Evaluation: cirbench/eval/person_search.py, gallery 100
by default (``mAP``, ``top1``, ``top5``, ``top10``), other sizes with ``--set
train.gallery_sizes=50,100,...`` (-1: full pool) as ``mAP_g50`` ..., ``mAP_gall``; detection
``det_recall`` and ``det_ap`` at IoU 0.5.

Profiles. ``paper`` (CUDA): SeqNet's schedule (serend1p1ty/SeqNet ``defaults.py``): SGD lr
0.003, momentum 0.9, weight decay 5e-4, batch 5 images, 20 epochs, lr x0.1 at epoch 16, images
resized to shorter side 900 (longer <= 1500), horizontal flip 0.5; AMP through the engine.
SeqNet warms up over the first iterations; our engine's warm-up is per epoch, so we use none
(ours). Backbone: torchvision's ImageNet ResNet-50, the file SeqNet starts from
(``models/resnet.py`` line 44, torchvision 0.4.0): ``train.pretrained`` is the weights.yaml
entry ``resnet50-tv`` read from torch.hub's cache (``cirbench weights fetch resnet50-tv``; runs
never download), a local file, or ``none`` (from scratch; not comparable). Stem and batch-norm
handling: :mod:`cirbench.models.person_search`. Memory for batch 5 at 900x1500 was not measured
here (no GPU for this task). ``smoke``
(CPU, ours): the tiny backbone, images at their own size (fixture scenes are 128x96), Adam.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchvision.transforms.functional import pil_to_tensor

from cirbench.data.catalog import require_dataset
from cirbench.data.cuhk_sysu import (
    FULL_GALLERY,
    IMAGE_DIR,
    CuhkSysu,
    Scene,
    SearchQuery,
    load_cuhk_sysu,
    load_protocol,
    test_mat,
)
from cirbench.data.fingerprint import data_fingerprint
from cirbench.engine import Evaluation, TrainConfig
from cirbench.errors import CirbenchError
from cirbench.eval.person_search import Detections, detection_metrics, search_metrics
from cirbench.methods.base import FEATURES
from cirbench.models import EmbeddingNet
from cirbench.models.person_search import Detection, PersonSearchNet, build_person_search
from cirbench.models.weights import resolve_weights
from cirbench.tasks.base import TASKS, EvalContext, Task, TaskData

DEFAULT_GALLERY = 100
EVAL_BATCH = 4  # images per detector call at test time (ours)
Target = dict[str, Tensor]


@dataclass(frozen=True)
class PersonSearchConfig(TrainConfig):
    """Training schedule plus the model and evaluation settings of person search."""

    backbone: Literal["resnet50", "tiny"] = "resnet50"
    pretrained: str | None = None  # a weights.yaml name or a local ResNet-50 state dict
    min_size: int = 900
    max_size: int = 1500
    flip: bool = True
    gallery_sizes: tuple[int, ...] = (DEFAULT_GALLERY,)


def load_image(path: Path) -> Tensor:
    with Image.open(path) as img:
        pixels: Tensor = pil_to_tensor(img.convert("RGB"))
    return pixels.float() / 255.0


def scene_target(scene: Scene, flip: bool, width: int) -> Target:
    boxes = torch.from_numpy(scene.boxes.copy())
    if flip:
        boxes = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1)
    return {
        "boxes": boxes,
        "labels": torch.ones(len(boxes), dtype=torch.int64),
        "pids": torch.from_numpy(scene.pids.copy()),
    }


@dataclass(frozen=True)
class CuhkSysuData(TaskData):
    """The loaded release; the test protocols (TestG*.mat) are read where used."""

    dataset: CuhkSysu


def eval_gallery_sizes(cfg: PersonSearchConfig) -> list[int]:
    """The gallery sizes evaluated: the default one always (the unsuffixed metrics), then the
    config's, each once, ascending, the full gallery (-1) first among them."""
    return sorted({DEFAULT_GALLERY, *cfg.gallery_sizes}, key=lambda s: (s != DEFAULT_GALLERY, s))


def gallery_key(gallery_size: int) -> str:
    if gallery_size == DEFAULT_GALLERY:
        return ""
    return "_gall" if gallery_size == FULL_GALLERY else f"_g{gallery_size}"


@TASKS.register
class CuhkSysuTask(Task[PersonSearchConfig, CuhkSysuData]):
    name = "cuhk-sysu"
    dataset = "cuhk-sysu"
    config_type = PersonSearchConfig
    provides = frozenset({FEATURES})
    default_methods = ("oim", "cir+oim")
    metrics: ClassVar[tuple[str, ...]] = ("mAP", "top1", "top5", "top10", "det_recall", "det_ap")
    profiles: ClassVar[Mapping[str, TrainConfig]] = {
        "paper": PersonSearchConfig(
            epochs=20,
            batch_size=5,
            lr=0.003,
            optimizer="sgd",
            weight_decay=5e-4,
            momentum=0.9,
            schedule="step",
            milestones=(16,),
            gamma=0.1,
            pretrained="resnet50-tv",
        ),
        "smoke": PersonSearchConfig(
            epochs=2,
            batch_size=4,
            lr=3e-3,
            weight_decay=5e-4,
            backbone="tiny",
            min_size=96,
            max_size=128,
            amp=False,
        ),
    }
    default_profile = "paper"

    def load(self, data_root: Path) -> CuhkSysuData:
        folder = require_dataset(self.dataset, data_root, checksums=False)
        ds = load_cuhk_sysu(folder)
        names = (*(s.name for s in ds.train), *(s.name for s in ds.gallery))
        labels = (scene.boxes.tobytes() + scene.pids.tobytes() for scene in ds.train)
        return CuhkSysuData(
            dataset=ds,
            num_classes=ds.num_identities,
            fingerprint=data_fingerprint("cuhk-sysu", [*(n.encode() for n in names), *labels]),
        )

    def validation(self, data: CuhkSysuData, cfg: PersonSearchConfig) -> CuhkSysuData:
        """Not available: a person-search validation split needs query boxes and per-query
        gallery scene lists (the TestG*.mat protocol files, with distractor scenes) for
        held-out training identities, which the release provides only for the test split;
        building such a protocol from the training scenes is not done here."""
        raise CirbenchError(
            "cuhk-sysu has no validation split (n/a): the release gives query/gallery protocol "
            "files (TestG*.mat) only for test identities, and cirbench does not build one from "
            "the training scenes; tune on another task or run on the test split"
        )

    def check(self, data: CuhkSysuData, cfg: PersonSearchConfig) -> None:
        """Every requested gallery size has its readable TestG file (before training)."""
        for size in eval_gallery_sizes(cfg):
            load_protocol(data.dataset.root, size)

    def backbone(self, cfg: PersonSearchConfig) -> str:
        return cfg.backbone

    def build_model(self, data: CuhkSysuData, cfg: PersonSearchConfig) -> EmbeddingNet:
        weights = resolve_weights(cfg.pretrained) if cfg.pretrained else None
        return build_person_search(cfg.backbone, cfg.min_size, cfg.max_size, weights)

    def train_batches(
        self, data: CuhkSysuData, cfg: PersonSearchConfig, generator: torch.Generator
    ) -> Iterator[tuple[list[Tensor], list[Target]]]:
        ds = data.dataset
        order = torch.randperm(len(ds.train), generator=generator).tolist()
        flips = (torch.rand(len(order), generator=generator) < 0.5).tolist()
        for start in range(0, len(order), cfg.batch_size):
            images, targets = [], []
            for i in order[start : start + cfg.batch_size]:
                scene = ds.train[i]
                img = load_image(ds.root / IMAGE_DIR / scene.name)
                flip = cfg.flip and bool(flips[i])
                images.append(img.flip(-1) if flip else img)
                targets.append(scene_target(scene, flip, img.shape[-1]))
            yield images, targets

    def evaluate(self, ctx: EvalContext[PersonSearchConfig, CuhkSysuData]) -> Evaluation:
        model, device = ctx.model, ctx.device
        ds = ctx.data.dataset
        batch = EVAL_BATCH
        detections = detect_gallery(model, ds, device, batch)
        metrics: dict[str, float] = {}
        details: dict[str, Any] = {}
        for size in eval_gallery_sizes(ctx.cfg):
            queries = load_protocol(ds.root, size)
            feats = query_features(model, ds.root, queries, device, batch)
            pool = [s.name for s in ds.gallery] if size == FULL_GALLERY else []
            result = search_metrics(queries, feats, detections, full_gallery=pool)
            suffix = gallery_key(size)
            metrics.update({f"{k}{suffix}": v for k, v in result.metrics.items()})
            details[f"ap{suffix or f'_g{DEFAULT_GALLERY}'}"] = np.round(result.aps, 6).tolist()
        gt = {s.name: s.boxes for s in ds.gallery}
        metrics.update(detection_metrics(gt, detections))
        return Evaluation(metrics, details)


@runtime_checkable
class SearchModel(Protocol):
    """What person-search evaluation calls (:class:`PersonSearchNet` has both)."""

    def detect(self, images: list[Tensor]) -> list[Detection]: ...

    def query_features(self, images: list[Tensor], boxes: list[Tensor]) -> Tensor: ...


def _person_search(model: EmbeddingNet) -> SearchModel:
    if not isinstance(model, SearchModel):
        raise TypeError("cuhk-sysu evaluates a model with detect() and query_features()")
    return model


def detect_gallery(
    model: EmbeddingNet | PersonSearchNet, ds: CuhkSysu, device: torch.device, batch: int
) -> dict[str, Detections]:
    net = _person_search(model)
    out: dict[str, Detections] = {}
    names = [s.name for s in ds.gallery]
    for start in range(0, len(names), batch):
        chunk = names[start : start + batch]
        images = [load_image(ds.root / IMAGE_DIR / n).to(device) for n in chunk]
        for name, (boxes, scores, feats) in zip(chunk, net.detect(images), strict=True):
            out[name] = Detections(
                boxes.float().cpu().numpy(), scores.float().cpu().numpy(), feats.cpu().numpy()
            )
    return out


def query_features(
    model: EmbeddingNet,
    root: Path,
    queries: Sequence[SearchQuery],
    device: torch.device,
    batch: int,
) -> np.ndarray:
    net = _person_search(model)
    rows = []
    for start in range(0, len(queries), batch):
        chunk = queries[start : start + batch]
        images = [load_image(root / IMAGE_DIR / q.image).to(device) for q in chunk]
        boxes = [torch.from_numpy(q.box.copy()).to(device) for q in chunk]
        rows.append(net.query_features(images, boxes).float().cpu().numpy())
    if not rows:
        raise CirbenchError("CUHK-SYSU: the protocol has no query")
    return np.concatenate(rows)


__all__ = ["CuhkSysuTask", "PersonSearchConfig", "test_mat"]
