"""Few-shot tasks: ``omniglot`` (real data, offline) and ``tieredimagenet`` (the paper protocol).

Training (the CIR paper's few-shot claim: a plain embedding network trained with a metric loss):
an embedding network on P x K batches (:class:`~cirbench.data.samplers.PKSampler`, P =
``batch_size // k`` classes, K = ``k`` images each, ``steps_per_epoch`` batches at most per
epoch, 0 = a full sampler pass), with ``triplet``, ``cir+triplet`` or ``proto``.

Validation (``--split val``): episodes over classes that are neither trained on nor test classes:
a class-disjoint 20% of Omniglot's training characters, tieredImageNet's own 97 val classes
(:mod:`cirbench.data.holdout`).

Evaluation: ``n_episodes`` N-way K-shot episodes with ``n_query`` queries per class drawn from the
test classes with ``episode_seed`` (:mod:`cirbench.data.episodes`): the same episodes for every
method and seed. Each query goes to the nearest class prototype (``distance``: squared
Euclidean or cosine) of the cached test embeddings. Metrics ``acc_{N}w{K}s`` (mean accuracy,
a fraction) and ``acc_{N}w{K}s_ci95`` (95% half-width, 1.96 * std / sqrt(E)); the record's
details keep the episode seed, the number of episodes and every per-episode accuracy
(4 decimals) for paired tests (:func:`cirbench.eval.fewshot.paired_test`).

``omniglot``: trains on ``images_background_small1`` + ``images_background_small2`` (136 + 156
= 292 characters listed, but the two sets share Latin and Greek, 50 characters and 1,000
byte-identical images, so the union is 242 distinct characters, 4,840 images; each is used once)
and tests on ``images_evaluation`` (659 characters, 13,180 images), 28x28 (Snell et al.
2017). ``rotations=true`` adds the 90/180/270-degree rotations of each training character as
new classes (Vinyals et al. 2016; Snell et al. rotate test classes too,
we do not). Not the published protocol: Snell et al. train on 1,200 characters (plus rotations)
of the full 964-character background set, which is not available offline; our 292 (242
distinct) characters make these numbers incomparable with theirs.

``tieredimagenet``: Ren et al. 2018 splits (351/97/160 classes, checked), 84x84, 5-way 1- and
5-shot with 15 queries. Profile ``paper``: ResNet-12 (Lee et al. 2019) with SGD; ``conv4``:
Conv-4 with Adam (Snell et al. 2017); ``smoke``: a few steps for tests.
"""

from __future__ import annotations

import itertools
from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar, Generic, Literal, Protocol, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from cirbench.data.catalog import catalog_folder, existing_folder, require_dataset
from cirbench.data.episodes import Episodes, check_episode_shape, sample_episodes
from cirbench.data.fingerprint import data_fingerprint
from cirbench.data.holdout import class_holdout, relabel
from cirbench.data.imagenet import IMAGENET_MEAN, IMAGENET_STD
from cirbench.data.omniglot import OmniglotSet, check_classes, load_set
from cirbench.data.samplers import sharded_pk_sampler
from cirbench.data.tiered import (
    SPLITS,
    TIERED_CLASSES,
    TieredSplit,
    check_class_count,
    detect_form,
    load_split,
    split_classes,
)
from cirbench.engine import Evaluation, TrainConfig
from cirbench.eval.fewshot import episode_accuracies, mean_ci95, metric_name
from cirbench.methods.base import FEATURES
from cirbench.models import EmbeddingNet
from cirbench.models.conv4 import Conv4
from cirbench.models.resnet12 import ResNet12
from cirbench.tasks.base import TASKS, EvalContext, Task, TaskData, val_fingerprint

OMNIGLOT_TRAIN = ("images_background_small1", "images_background_small2")
OMNIGLOT_TEST = "images_evaluation"
ROTATIONS = 4
#: ImageNet channel statistics, the usual normalisation of tieredImageNet inputs.


@dataclass(frozen=True)
class FewShotConfig(TrainConfig):
    """Training schedule plus the few-shot fields (``--set train.FIELD=...``)."""

    k: int = 4
    steps_per_epoch: int = 0
    backbone: Literal["conv4", "resnet12"] = "conv4"
    image_size: int = 28
    rotations: bool = False
    augment: bool = False
    ways: tuple[int, ...] = (5, 20)
    shots: tuple[int, ...] = (1, 5)
    n_query: int = 15
    n_episodes: int = 2000
    episode_seed: int = 0
    distance: Literal["euclidean", "cosine"] = "euclidean"
    eval_batch_size: int = 512

    def validate(self) -> None:
        super().validate()
        if self.k < 2 or self.batch_size % self.k or self.batch_size // self.k < 2:
            raise ValueError(
                f"batch_size must be P x k with P >= 2 classes and k >= 2 images, got "
                f"batch_size={self.batch_size}, k={self.k}"
            )
        if self.n_episodes < 1 or self.steps_per_epoch < 0 or not self.ways or not self.shots:
            raise ValueError("n_episodes >= 1, steps_per_epoch >= 0, ways and shots non-empty")


def settings(cfg: FewShotConfig) -> list[tuple[int, int]]:
    return [(way, shot) for way in cfg.ways for shot in cfg.shots]


def check_settings(test_labels: np.ndarray, cfg: FewShotConfig) -> None:
    """Every N-way K-shot setting must fit the test split (before anything trains)."""
    for way, shot in settings(cfg):
        check_episode_shape(test_labels, way, shot, cfg.n_query)


def build_backbone(cfg: FewShotConfig, in_channels: int) -> EmbeddingNet:
    if cfg.backbone == "resnet12":
        return ResNet12(in_channels=in_channels)
    return Conv4(in_channels=in_channels, image_size=cfg.image_size)


def pk_batches(
    labels: np.ndarray, cfg: FewShotConfig, generator: torch.Generator
) -> Iterator[list[int]]:
    sampler = sharded_pk_sampler(labels.tolist(), cfg.batch_size // cfg.k, cfg.k, generator)
    steps = cfg.steps_per_epoch or None
    return itertools.islice(iter(sampler), steps)


def embed_used(
    model: EmbeddingNet,
    images: Callable[[np.ndarray], Tensor],
    count: int,
    episodes: dict[str, Episodes],
    cfg: FewShotConfig,
    device: torch.device,
) -> Tensor:
    """Embeddings (count, D) of the test images that ``episodes`` use (other rows stay 0),
    computed in batches of ``cfg.eval_batch_size``; ``images(indices)`` gives model inputs."""
    used = np.unique(
        np.concatenate([np.r_[e.support.ravel(), e.query.ravel()] for e in episodes.values()])
    )
    parts = []
    for start in range(0, len(used), cfg.eval_batch_size):
        x = images(used[start : start + cfg.eval_batch_size]).to(device)
        parts.append(model.embed(x).float())
    part = torch.cat(parts)
    features = part.new_zeros(count, part.shape[1])
    features[torch.from_numpy(used).to(part.device)] = part
    return features


def evaluate_episodes(
    features: Tensor, labels: np.ndarray, cfg: FewShotConfig, episodes: dict[str, Episodes]
) -> Evaluation:
    """Metrics and details of prototype classification on the given episodes."""
    metrics: dict[str, float] = {}
    per_episode: dict[str, list[float]] = {}
    for name, eps in episodes.items():
        acc = episode_accuracies(features, eps, cfg.distance)
        metrics[name], metrics[f"{name}_ci95"] = mean_ci95(acc)
        per_episode[name] = [round(float(a), 4) for a in acc]
    details = {
        "episode_seed": cfg.episode_seed,
        "n_episodes": cfg.n_episodes,
        "n_query": cfg.n_query,
        "distance": cfg.distance,
        "test_classes": len(np.unique(labels)),
        "episodes": per_episode,
    }
    return Evaluation(metrics, details)


def draw_episodes(labels: np.ndarray, cfg: FewShotConfig) -> dict[str, Episodes]:
    return {
        metric_name(way, shot): sample_episodes(
            labels, way, shot, cfg.n_query, cfg.n_episodes, cfg.episode_seed
        )
        for way, shot in settings(cfg)
    }


# --- Omniglot --------------------------------------------------------------------------------


@dataclass(frozen=True)
class OmniglotData:
    images: Tensor  # (N, 1, S, S) uint8, bright strokes
    labels: np.ndarray  # (N,) int64


def omniglot_folder(root: Path) -> Path:
    folder = catalog_folder("omniglot", root)
    zips = [folder / f"{name}.zip" for name in (*OMNIGLOT_TRAIN, OMNIGLOT_TEST)]
    if all(z.exists() for z in zips) or not folder.is_dir():
        return require_dataset("omniglot", root)  # the zips, md5-checked
    return folder  # unzipped folders (or a mix): read as found, counts checked


def merge_sets(sets: list[OmniglotSet]) -> OmniglotData:
    """One labelled set from several, each image and character once.

    The two small background sets share 50 characters (Latin and Greek, 1,000 byte-identical
    images): their union has 242 distinct characters, not 136 + 156 = 292. A character is
    identified by "Alphabet/characterNN" and an image by its path inside the set.
    """
    seen: dict[str, tuple[np.ndarray, str]] = {}
    for s in sets:
        check_classes(s)
        for image, label, file in zip(s.images, s.labels, s.files, strict=True):
            seen.setdefault(file, (image, s.classes[label]))
    files = sorted(seen)
    classes = sorted({seen[f][1] for f in files})
    index = {c: i for i, c in enumerate(classes)}
    images = torch.from_numpy(np.stack([seen[f][0] for f in files])).unsqueeze(1)
    labels = np.array([index[seen[f][1]] for f in files], dtype=np.int64)
    return OmniglotData(images, labels)


def rotated_batch(data: OmniglotData, index: Tensor) -> tuple[Tensor, Tensor]:
    """Images and labels of indices into the rotation-augmented set (rotation r = i // N)."""
    n, n_classes = len(data.labels), int(data.labels.max()) + 1
    base, rot = index % n, index // n
    x = data.images[base].clone()
    for r in range(1, ROTATIONS):
        chosen = rot == r
        if bool(chosen.any()):
            x[chosen] = torch.rot90(x[chosen], r, dims=(2, 3))
    y = torch.from_numpy(data.labels)[base] + rot * n_classes
    return x, y


class LabelledSplit(Protocol):
    """A split of labelled images: what few-shot evaluation needs of a test split."""

    @property
    def labels(self) -> np.ndarray: ...


SplitT = TypeVar("SplitT", bound=LabelledSplit)


@dataclass(frozen=True)
class FewShotData(TaskData, Generic[SplitT]):
    """Training and test split of one few-shot dataset (disjoint classes); ``own_val`` reads
    the dataset's own validation split on demand (None: the dataset has none)."""

    train: SplitT
    test: SplitT
    own_val: Callable[[], SplitT] | None = None


class FewShotTask(Task[FewShotConfig, FewShotData[SplitT]], Generic[SplitT]):
    """Shared by the few-shot tasks: backbone, settings check and episodic evaluation."""

    config_type = FewShotConfig
    provides = frozenset({FEATURES})
    default_methods = ("triplet", "cir+triplet", "proto")
    metrics: ClassVar[tuple[str, ...]] = (
        "acc_5w1s",
        "acc_5w5s",
        "acc_20w1s",
        "acc_20w5s",
        "acc_5w1s_ci95",
        "acc_5w5s_ci95",
        "acc_20w1s_ci95",
        "acc_20w5s_ci95",
    )
    intervals = frozenset(m for m in metrics if m.endswith("_ci95"))
    in_channels: ClassVar[int] = 1

    @abstractmethod
    def test_inputs(self, test: SplitT, idx: np.ndarray, cfg: FewShotConfig) -> Tensor:
        """Model inputs for the test images at positions ``idx``."""

    def check(self, data: FewShotData[SplitT], cfg: FewShotConfig) -> None:
        """Every N-way K-shot setting fits the test classes."""
        check_settings(data.test.labels, cfg)

    def backbone(self, cfg: FewShotConfig) -> str:
        return cfg.backbone

    def build_model(self, data: FewShotData[SplitT], cfg: FewShotConfig) -> EmbeddingNet:
        return build_backbone(cfg, self.in_channels)

    def evaluate(self, ctx: EvalContext[FewShotConfig, FewShotData[SplitT]]) -> Evaluation:
        """N-way K-shot episodes of the test classes, the same for every few-shot task."""
        cfg, test = ctx.cfg, ctx.data.test
        episodes = draw_episodes(test.labels, cfg)
        features = embed_used(
            ctx.model,
            lambda idx: self.test_inputs(test, idx, cfg),
            len(test.labels),
            episodes,
            cfg,
            ctx.device,
        )
        return evaluate_episodes(features, test.labels, cfg, episodes)


@TASKS.register
class Omniglot(FewShotTask[OmniglotData]):
    name = "omniglot"
    dataset = "omniglot"
    in_channels = 1
    profiles: ClassVar[Mapping[str, TrainConfig]] = {
        # Adam 1e-3 as Snell et al. 2017; 250 steps of P x K = 32 x 4 with rotated classes
        # (ours), sized for 3 methods x 3 seeds on a 2-core CPU (records' wall_time_s).
        "default": FewShotConfig(
            epochs=5, batch_size=128, lr=1e-3, k=4, steps_per_epoch=50, rotations=True
        ),
        "smoke": FewShotConfig(
            epochs=1, batch_size=32, lr=1e-3, k=4, steps_per_epoch=3, n_episodes=10
        ),
    }
    default_profile = "default"

    def load(self, data_root: Path) -> FewShotData[OmniglotData]:
        folder = omniglot_folder(data_root)
        train = merge_sets([load_set(folder, name) for name in OMNIGLOT_TRAIN])
        test = merge_sets([load_set(folder, OMNIGLOT_TEST)])
        n_train = int(train.labels.max()) + 1
        return FewShotData(
            train=train,
            test=test,
            num_classes=n_train * ROTATIONS,  # label space with the rotated classes
            fingerprint=data_fingerprint(
                "omniglot", [train.images.numpy(), train.labels, test.images.numpy(), test.labels]
            ),
        )

    def validation(
        self, data: FewShotData[OmniglotData], cfg: FewShotConfig
    ) -> FewShotData[OmniglotData]:
        """A class-disjoint hold-out: 20% of the 242 training characters (seed 0, ours) are the
        episode classes, the other characters are trained on; the evaluation set is unused."""
        train = data.train
        kept, held = class_holdout(train.labels)
        rest = OmniglotData(train.images[torch.from_numpy(kept)], relabel(train.labels[kept]))
        val = OmniglotData(train.images[torch.from_numpy(held)], relabel(train.labels[held]))
        return FewShotData(
            train=rest,
            test=val,
            num_classes=(int(rest.labels.max()) + 1) * ROTATIONS,
            fingerprint=val_fingerprint(data.fingerprint),
        )

    def train_batches(
        self, data: FewShotData[OmniglotData], cfg: FewShotConfig, generator: torch.Generator
    ) -> Iterator[tuple[Tensor, Tensor]]:
        train = data.train
        labels = train.labels
        if cfg.rotations:
            n_classes = int(labels.max()) + 1
            labels = np.concatenate([labels + r * n_classes for r in range(ROTATIONS)])
        for batch in pk_batches(labels, cfg, generator):
            x, y = rotated_batch(train, torch.tensor(batch))
            yield self.prepare(x, cfg), y

    @staticmethod
    def prepare(x: Tensor, cfg: FewShotConfig) -> Tensor:
        x = x.float() / 255.0
        if x.shape[-1] != cfg.image_size:
            x = F.interpolate(x, size=cfg.image_size, mode="bilinear", antialias=True)
        return x

    def test_inputs(self, test: OmniglotData, idx: np.ndarray, cfg: FewShotConfig) -> Tensor:
        return self.prepare(test.images[torch.from_numpy(idx)], cfg)


# --- tieredImageNet --------------------------------------------------------------------------


def to_input(images: np.ndarray, device: torch.device | None = None) -> Tensor:
    """(n, H, W, 3) uint8 -> (n, 3, H, W) float, ImageNet-normalised."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def augment(x: Tensor, generator: torch.Generator, pad: int = 8) -> Tensor:
    """Horizontal flip (p = 0.5) and a random crop after zero padding ``pad`` (per image)."""
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=generator) < 0.5
    x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    padded = F.pad(x, (pad, pad, pad, pad))
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator).tolist()
    return torch.stack(
        [padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets)]
    )


def tiered_subset(split: TieredSplit, positions: np.ndarray) -> TieredSplit:
    """The images of ``split`` at ``positions``, labels relabelled 0..C-1."""
    decode = split.decode
    return TieredSplit(
        split.split,
        split.form,
        relabel(split.labels[positions]),
        lambda idx, size: decode(positions[idx], size),
    )


@TASKS.register
class TieredImageNet(FewShotTask[TieredSplit]):
    name = "tieredimagenet"
    dataset = "tieredimagenet"
    in_channels = 3
    #: Overridable in tests (fixtures with fewer classes); the paper's split otherwise.
    expected_classes: ClassVar[dict[str, int]] = dict(TIERED_CLASSES)
    profiles: ClassVar[Mapping[str, TrainConfig]] = {
        # ResNet-12 with SGD 0.1, momentum 0.9, weight decay 5e-4, 60 epochs of 1,000 steps, as
        # MetaOptNet (Lee et al. 2019, train.py lines 166-171); their lr factors (0.06, 0.012,
        # 0.0024 from the 20th, 40th and 50th epoch, 1-based: LambdaLR stepped at each epoch
        # start) are approximated by x0.1 at the same epochs (0-based 19, 39, 49; the factors
        # are ours); flip + pad-8 crop (ours, a subset of theirs); P x K = 32 x 4 (ours).
        # Audit against the sources: docs/PROTOCOL_AUDIT.md.
        "paper": FewShotConfig(
            epochs=60,
            batch_size=128,
            lr=0.1,
            optimizer="sgd",
            weight_decay=5e-4,
            schedule="step",
            milestones=(19, 39, 49),
            k=4,
            steps_per_epoch=1000,
            backbone="resnet12",
            image_size=84,
            augment=True,
            ways=(5,),
            n_episodes=1000,  # MetaOptNet test.py line 83 (--episode 1000)
        ),
        # Conv-4 with Adam 1e-3 (Snell et al. 2017), lr halved every 20 epochs (ours: their
        # "every 2,000 episodes").
        "conv4": FewShotConfig(
            epochs=60,
            batch_size=128,
            lr=1e-3,
            schedule="step",
            milestones=(20, 40),
            gamma=0.5,
            k=4,
            steps_per_epoch=1000,
            image_size=84,
            augment=True,
            ways=(5,),
        ),
        # A few steps on 32x32 inputs, for tests (ours).
        "smoke": FewShotConfig(
            epochs=1,
            batch_size=16,
            lr=1e-3,
            k=4,
            steps_per_epoch=2,
            image_size=32,
            ways=(5,),
            n_episodes=10,
        ),
    }
    default_profile = "paper"

    def load(self, data_root: Path) -> FewShotData[TieredSplit]:
        folder = existing_folder(self.dataset, data_root)
        form = detect_form(folder)
        for split in SPLITS:
            check_class_count(split, split_classes(folder, split, form), self.expected_classes)
        train, test = load_split(folder, "train", form), load_split(folder, "test", form)
        return FewShotData(
            train=train,
            test=test,
            num_classes=train.num_classes,
            fingerprint=data_fingerprint(f"tieredimagenet-{form}", [train.labels, test.labels]),
            own_val=lambda: load_split(folder, "val", form),
        )

    def validation(
        self, data: FewShotData[TieredSplit], cfg: FewShotConfig
    ) -> FewShotData[TieredSplit]:
        """The dataset's own validation split (97 classes, disjoint from train and test; Ren
        et al. 2018) as the episode classes, in whichever form the reader loaded; training is
        unchanged. Without one: a class-disjoint 20% of the training classes (seed 0, ours)."""
        if data.own_val is not None:
            val = data.own_val()
            fingerprint = data_fingerprint(f"tieredimagenet-{val.form}-val", [val.labels])
            return replace(data, test=val, fingerprint=fingerprint, own_val=None)
        kept, held = class_holdout(data.train.labels)
        rest, val = tiered_subset(data.train, kept), tiered_subset(data.train, held)
        return FewShotData(
            train=rest,
            test=val,
            num_classes=rest.num_classes,
            fingerprint=val_fingerprint(data.fingerprint),
        )

    def train_batches(
        self, data: FewShotData[TieredSplit], cfg: FewShotConfig, generator: torch.Generator
    ) -> Iterator[tuple[Tensor, Tensor]]:
        train = data.train
        for batch in pk_batches(train.labels, cfg, generator):
            x = to_input(train.images(batch, cfg.image_size))
            if cfg.augment:
                x = augment(x, generator)
            yield x, torch.from_numpy(train.labels[batch])

    def test_inputs(self, test: TieredSplit, idx: np.ndarray, cfg: FewShotConfig) -> Tensor:
        return to_input(test.images(idx, cfg.image_size))
