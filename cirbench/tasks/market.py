"""``market1501``: person re-identification on Market-1501 with the strong triplet baseline.

Data: ``Market-1501-v15.09.15/`` under the data root (:mod:`cirbench.data.market`; file counts
from datasets.yaml, and for the official release also 751 training ids and 15,913 gallery
images). Model: :class:`~cirbench.models.bot.BoTNet` (timm ResNet, last stride 1, BNNeck).

Profile ``paper`` = the recipe of Luo et al., "Bag of Tricks and A Strong Baseline for Deep
Person Re-identification", CVPRW 2019, arXiv:1903.07071, as configured in reid-strong-baseline
``configs/softmax_triplet.yml``: ResNet-50, 256x128, P x K = 16 x 4, Adam 3.5e-4, weight decay
5e-4 on every parameter, 120 epochs, x0.1 at epochs 40 and 70, linear warm-up over 10 epochs from
1% (``WARMUP_FACTOR 0.01``, ``WARMUP_ITERS 10``), with the reference's epoch indexing (see the
profile). Every field against its source: ``docs/PROTOCOL_AUDIT.md``. Training transforms
(reid-strong-baseline ``data/transforms/build.py``): resize to 256x128, horizontal flip p=0.5,
pad 10, random crop back to 256x128, ToTensor, ImageNet normalisation, random erasing p=0.5
(Zhong et al. 2017: area 0.02-0.4, aspect 0.3-3.33, filled with the ImageNet mean values as in
the reference).
Evaluation: the post-BN feature (``TEST.NECK_FEAT 'after'``), L2-normalised (``TEST.FEAT_NORM
'yes'``), Euclidean distance, no re-ranking (``TEST.RE_RANKING 'no'``), batches of 128; metrics
``recall@1``, ``recall@5``, ``recall@10``, ``mAP``, ``mINP`` (:mod:`cirbench.eval.reid`).
The reference backbone starts from torchvision's ImageNet ResNet-50 (``PRETRAIN_PATH
.../resnet50-19c8e357.pth``, ``configs/softmax_triplet.yml`` line 3), and so does ``paper``:
``train.pretrained`` is the weights.yaml entry ``resnet50-tv``, read from torch.hub's cache
(``cirbench weights fetch resnet50-tv`` puts it there; a run never downloads), or a local file,
or ``none`` to train from scratch (far below the paper's numbers; the report marks such rows not
comparable). Records store the weights' name and SHA-256 (``weights``; see
:mod:`cirbench.models.weights`).

Methods whose losses do not read logits (``triplet``, ``circle``, ``circle-cls``, with or without
``cir``) leave the BNNeck head untrained (the engine freezes an unused head); its batch norm then
keeps its initial statistics and the evaluation feature equals the pre-BN feature.

Profile ``smoke``: the same pipeline at toy scale for CI on CPU: timm ``resnet18`` with a
quarter of the channels (``backbone_width=16``: stages 16/32/64/128, 0.7M parameters, random init)
at 64x32, P x K = 4 x 4, 2 epochs, no warm-up, in-process loading.

Validation (``--split val``, :meth:`Market1501.validation`): a slice of training identities
as query (one image per camera) and gallery (the rest), never the test folders.

Determinism: the P x K sampler (:class:`~cirbench.data.samplers.PKSampler`) draws from the
engine's generator, which is also the DataLoader's generator, so worker seeds (and with them
every flip, crop and erasing) follow from the run's seed.

Loading (``--set train.FIELD=...``): ``num_workers`` (default None: one per CPU this process may
use, at most 8; the number of workers changes which worker draws a batch's augmentation, so
results depend on it: set it explicitly to compare runs across machines), ``pin_memory``
(default None: on when CUDA is available), ``prefetch_factor`` batches per worker (default 4,
ours). Workers are not persistent across epochs on purpose: each epoch builds its loader from the
engine's generator, which is what makes ``--resume`` bit-identical; a persistent worker would
carry its RNG state from one epoch into the next, and a resumed run could not restore it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from cirbench.data.catalog import existing_folder, require_dataset
from cirbench.data.holdout import reid_holdout, relabel
from cirbench.data.imagenet import IMAGENET_MEAN, IMAGENET_STD
from cirbench.data.market import (
    MarketCounts,
    MarketData,
    ReidSplit,
    check_official_counts,
    read_market,
)
from cirbench.data.samplers import sharded_pk_sampler
from cirbench.engine import Evaluation, TrainConfig
from cirbench.errors import CirbenchError
from cirbench.eval.reid import RerankConfig, evaluate_reid
from cirbench.methods.base import FEATURES, LOGITS
from cirbench.models import EmbeddingNet
from cirbench.models.bot import BoTNet
from cirbench.models.weights import resolve_weights
from cirbench.tasks.base import TASKS, EvalContext, Task, TaskData, val_fingerprint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MarketConfig(TrainConfig):
    """The optimisation schedule plus the re-ID recipe's data, model and evaluation fields."""

    backbone: str = "resnet50"
    backbone_width: int = 64
    pretrained: str | None = None
    last_stride: int = 1
    height: int = 256
    width: int = 128
    p: int = 16
    k: int = 4
    flip: float = 0.5
    pad: int = 10
    erasing: float = 0.5
    num_workers: int | None = None
    pin_memory: bool | None = None
    prefetch_factor: int = 4
    eval_batch_size: int = 128
    eval_distance: Literal["euclidean", "cosine"] = "euclidean"
    eval_normalize: bool = True
    rerank: bool = False
    eval_chunk: int = 256

    def validate(self) -> None:
        super().validate()
        if self.batch_size != self.p * self.k:
            raise ValueError(
                f"batch_size ({self.batch_size}) must equal p * k ({self.p} x {self.k}); "
                "set train.batch_size together with train.p / train.k"
            )
        sizes = (self.height, self.width, self.eval_batch_size, self.eval_chunk)
        if min(sizes) < 1 or self.backbone_width < 1:
            raise ValueError(
                "height, width, backbone_width, eval_batch_size and eval_chunk must be >= 1"
            )
        for name in ("flip", "erasing"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        workers = 0 if self.num_workers is None else self.num_workers
        if self.pad < 0 or workers < 0 or self.last_stride not in (1, 2):
            raise ValueError("pad and num_workers must be >= 0, last_stride 1 or 2")
        if self.prefetch_factor < 1:
            raise ValueError(f"prefetch_factor must be >= 1, got {self.prefetch_factor}")


class RandomErasing:
    """Random erasing (Zhong et al., "Random Erasing Data Augmentation", AAAI 2020,
    arXiv:1708.04896) with reid-strong-baseline's parameters and fill: with probability ``p``,
    up to 100 tries of a rectangle of area U(0.02, 0.4) x image and aspect U(0.3, 1/0.3) that
    fits, filled per channel with ``value``. Randomness from torch's generator (seeded per
    DataLoader worker)."""

    def __init__(self, p: float, value: tuple[float, ...] = IMAGENET_MEAN) -> None:
        self.p, self.value = p, value
        self.sl, self.sh, self.r1 = 0.02, 0.4, 0.3

    def uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand(()))

    def __call__(self, img: Tensor) -> Tensor:
        if float(torch.rand(())) >= self.p:
            return img
        _, height, width = img.shape
        for _ in range(100):
            area = self.uniform(self.sl, self.sh) * height * width
            aspect = self.uniform(self.r1, 1.0 / self.r1)
            h = round(math.sqrt(area * aspect))
            w = round(math.sqrt(area / aspect))
            if w < width and h < height:
                top = int(torch.randint(0, height - h + 1, ()))
                left = int(torch.randint(0, width - w + 1, ()))
                fill = torch.tensor(self.value[: img.shape[0]], dtype=img.dtype)
                img[:, top : top + h, left : left + w] = fill[:, None, None]
                return img
        return img


def train_transform(cfg: MarketConfig) -> T.Compose:
    size = (cfg.height, cfg.width)
    return T.Compose(
        [
            T.Resize(size),
            T.RandomHorizontalFlip(p=cfg.flip),
            T.Pad(cfg.pad),
            T.RandomCrop(size),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            RandomErasing(cfg.erasing),
        ]
    )


def test_transform(cfg: MarketConfig) -> T.Compose:
    return T.Compose(
        [T.Resize((cfg.height, cfg.width)), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )


class ReidImages(Dataset[tuple[Tensor, int]]):
    """Images of one split, decoded with PIL; a file that cannot be decoded is a user error."""

    def __init__(self, split: ReidSplit, transform: T.Compose) -> None:
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path = self.split.paths[index]
        try:
            with Image.open(path) as img:
                rgb = img.convert("RGB")
        except (OSError, ValueError) as exc:
            raise CirbenchError(
                f"unreadable image {path.parent.name}/{path.name} ({path}): {exc}. Replace it "
                "with the file from the original release."
            ) from None
        out: Tensor = self.transform(rgb)
        return out, int(self.split.pids[index])


def default_workers() -> int:
    """One DataLoader worker per CPU this process may run on, at most 8."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(8, cpus or 1)


def loader_options(c: MarketConfig) -> dict[str, Any]:
    """DataLoader keyword arguments from the config's loading fields (module docstring)."""
    workers = default_workers() if c.num_workers is None else c.num_workers
    pin = torch.cuda.is_available() if c.pin_memory is None else c.pin_memory
    options: dict[str, Any] = {"num_workers": workers, "pin_memory": pin}
    if workers > 0:
        options["prefetch_factor"] = c.prefetch_factor
    return options


def clean_loader_errors(loader: DataLoader[tuple[Tensor, int]]) -> Iterator[tuple[Tensor, Tensor]]:
    """Iterate ``loader``; a CirbenchError raised in a worker keeps only its message."""
    try:
        yield from loader
    except CirbenchError as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        last = lines[-1] if lines else str(exc)
        raise CirbenchError(last.split("CirbenchError: ", 1)[-1]) from None


@dataclass(frozen=True)
class MarketTaskData(TaskData):
    """The read tree: training split (relabelled ids), query and gallery."""

    market: MarketData


@TASKS.register
class Market1501(Task[MarketConfig, MarketTaskData]):
    name = "market1501"
    dataset = "market1501"
    config_type = MarketConfig
    provides = frozenset({FEATURES, LOGITS})
    default_methods = (
        "ls+triplet",
        "center+ls+triplet",
        "cir+ls+triplet",
        "circle",
        "cir+circle",
        "triplet",
        "cir+triplet",
        "circle-cls",
    )
    metrics = ("recall@1", "recall@5", "recall@10", "mAP", "mINP")
    profiles: ClassVar[Mapping[str, TrainConfig]] = {
        "paper": MarketConfig(
            epochs=120,
            batch_size=64,
            lr=3.5e-4,
            optimizer="adam",
            weight_decay=5e-4,
            schedule="step",
            # The reference's WarmupMultiStepLR (STEPS 40/70, WARMUP_FACTOR 0.01, WARMUP_ITERS 10)
            # is stepped at every epoch start (engine/trainer.py lines 172-174) after the step its
            # constructor takes, so epoch e (1-based) runs at its value for e: 0.109 x lr first,
            # x0.1 from the 40th epoch. Our lr_factor(i) is for 0-based i; these values give
            # exactly the reference's 120 learning rates (tests/tasks/test_market.py).
            milestones=(39, 69),
            gamma=0.1,
            warmup_epochs=9,
            warmup_factor=0.109,
            pretrained="resnet50-tv",
        ),
        "smoke": MarketConfig(
            epochs=2,
            batch_size=16,
            lr=3.5e-4,
            weight_decay=5e-4,
            backbone="resnet18",
            backbone_width=16,
            height=64,
            width=32,
            p=4,
            k=4,
            pad=2,
            num_workers=0,
            eval_batch_size=64,
        ),
    }
    default_profile = "paper"
    # No overrides: circle / circle-cls defaults already are the re-ID values (m 0.25, gamma 128).
    method_defaults: ClassVar[dict[str, dict[str, float]]] = {}

    def load(self, data_root: Path) -> MarketTaskData:
        # the layout and names are checked before the catalogue's counts: the most specific
        # message for a wrong tree
        data = read_market(existing_folder(self.dataset, data_root))
        require_dataset(self.dataset, data_root)  # file counts of datasets.yaml
        check_official_counts(data.counts)
        log.info("market1501: %s (%d junk gallery files dropped)", data.counts, data.junk_dropped)
        return MarketTaskData(
            market=data, num_classes=data.num_classes, fingerprint=data.fingerprint
        )

    def validation(self, data: MarketTaskData, cfg: MarketConfig) -> MarketTaskData:
        """20% of the training identities (seed 0, ours) held out: one image per camera of
        each is a query, the rest the gallery, scored by the same evaluation (same-id
        same-camera gallery entries dropped); the other identities are trained on, relabelled.
        ``query/`` and ``bounding_box_test/`` are not read."""
        market = data.market
        train = market.train
        split = reid_holdout(train.pids, train.cams)
        original = market.train_original_pids

        def part(positions: np.ndarray, pids: np.ndarray) -> ReidSplit:
            return ReidSplit(tuple(train.paths[i] for i in positions), pids, train.cams[positions])

        kept_pids = train.pids[split.train]
        rest = part(split.train, relabel(kept_pids))
        query = part(split.query, original[train.pids[split.query]])
        gallery = part(split.gallery, original[train.pids[split.gallery]])
        counts = MarketCounts(
            train_images=len(rest),
            train_ids=len(np.unique(kept_pids)),
            query_images=len(query),
            test_files=len(gallery),
            gallery_images=len(gallery),
        )
        val = replace(
            market,
            train=rest,
            train_original_pids=original[np.unique(kept_pids)],
            query=query,
            gallery=gallery,
            counts=counts,
            junk_dropped=0,
            fingerprint=val_fingerprint(market.fingerprint),
        )
        return MarketTaskData(market=val, num_classes=val.num_classes, fingerprint=val.fingerprint)

    def backbone(self, cfg: MarketConfig) -> str:
        return cfg.backbone

    def build_model(self, data: MarketTaskData, cfg: MarketConfig) -> EmbeddingNet:
        weights = resolve_weights(cfg.pretrained) if cfg.pretrained else None
        return BoTNet(data.num_classes, cfg.backbone, cfg.last_stride, weights, cfg.backbone_width)

    def train_batches(
        self, data: MarketTaskData, cfg: MarketConfig, generator: torch.Generator
    ) -> Iterator[tuple[Tensor, Tensor]]:
        c, market = cfg, data.market
        sampler = sharded_pk_sampler(market.train.pids.tolist(), c.p, c.k, generator)
        loader = DataLoader(
            ReidImages(market.train, train_transform(c)),
            batch_sampler=sampler,
            generator=generator,
            **loader_options(c),
        )
        return clean_loader_errors(loader)

    def embed_split(
        self, model: EmbeddingNet, split: ReidSplit, c: MarketConfig, device: torch.device
    ) -> Tensor:
        loader = DataLoader(
            ReidImages(split, test_transform(c)),
            batch_size=c.eval_batch_size,
            shuffle=False,
            **loader_options(c),
        )
        feats = [model.embed(x.to(device)).float().cpu() for x, _ in clean_loader_errors(loader)]
        return torch.cat(feats)

    def evaluate(self, ctx: EvalContext[MarketConfig, MarketTaskData]) -> Evaluation:
        model, device = ctx.model, ctx.device
        c, market = ctx.cfg, ctx.data.market
        qf = self.embed_split(model, market.query, c, device)
        gf = self.embed_split(model, market.gallery, c, device)
        result = evaluate_reid(
            qf,
            gf,
            market.query.pids,
            market.query.cams,
            market.gallery.pids,
            market.gallery.cams,
            distance=c.eval_distance,
            normalize=c.eval_normalize,
            chunk_size=c.eval_chunk,
            rerank=RerankConfig() if c.rerank else None,
        )
        details = {
            "backbone": c.backbone,
            "backbone_width": c.backbone_width,
            "pretrained_backbone": ctx.model.pretrained_weights is not None,
            "pretrained": ctx.model.pretrained_weights,
            "eval_feature": "post-BN" if LOGITS in ctx.method.requires else "pre-BN (head unused)",
            "distance": c.eval_distance,
            "normalized": c.eval_normalize,
            "rerank": c.rerank,
            "num_queries": result.num_queries,
            "num_valid_queries": result.num_valid_queries,
            "queries_without_valid_match": [
                market.query.paths[i].name for i in result.invalid_queries
            ],
            "num_gallery": result.num_gallery,
            "num_train_images": market.counts.train_images,
            "num_train_ids": market.counts.train_ids,
        }
        return Evaluation(result.metrics, details)
