"""Reader for the CIFAR-10 / CIFAR-100 python release, written against the pickle format itself.

Layouts (Krizhevsky 2009, https://www.cs.toronto.edu/~kriz/cifar.html):

- ``cifar-10-batches-py/``: ``data_batch_1`` .. ``data_batch_5`` (training), ``test_batch``,
  ``batches.meta``. A batch is a pickled dict with ``data`` (N x 3072 uint8: 1024 red, then 1024
  green, then 1024 blue values, each a row-major 32 x 32 plane), ``labels`` (N ints in 0..9),
  ``batch_label`` and ``filenames``; the meta dict holds ``label_names`` (10 names).
- ``cifar-100-python/``: ``train``, ``test`` (dicts with ``data``, ``fine_labels`` (0..99),
  ``coarse_labels`` (0..19), ``filenames``, ``batch_label``) and ``meta`` (``fine_label_names``,
  ``coarse_label_names``).

The official files were pickled by Python 2, so their keys and names load as ``bytes`` under
``encoding="bytes"``; files written by Python 3 may carry ``str`` keys. Both are accepted: keys and
names are decoded as latin-1. Files are loaded with ``encoding="bytes"`` through an unpickler that
only resolves the few globals a CIFAR file holds (numpy's array reconstruction, ``numpy.dtype``,
``_codecs.encode``): a pickle that names anything else is refused, since unpickling can run code.

Anything wrong with a file (truncated, corrupted, not a pickle, wrong structure) raises a
:class:`~cirbench.errors.CirbenchError` naming the file and the fix. Checksums are the catalogue's
job (:func:`cirbench.data.catalog.require_dataset`), which the tasks call before this reader.

The augmentation of the CIFAR ResNet papers (He et al. 2016, Sec. 4.2: pad 4, random 32 x 32
crop, random horizontal flip) is :func:`random_crop_flip`, done in batch on uint8 tensors.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from cirbench import distributed
from cirbench.data import safe_pickle
from cirbench.errors import CirbenchError

IMAGE_SHAPE = (3, 32, 32)
PIXELS = 3 * 32 * 32
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = "test_batch"
CIFAR10_META = "batches.meta"
CIFAR100_TRAIN, CIFAR100_TEST, CIFAR100_META = "train", "test", "meta"

Split = Literal["train", "test"]


@dataclass(frozen=True)
class CifarSplit:
    """One split in memory: images (N, 3, 32, 32) uint8, labels (N,) int64 and the class names.

    ``coarse_labels`` / ``coarse_names`` are CIFAR-100's 20 super-classes (None for CIFAR-10).
    """

    images: Tensor
    labels: Tensor
    names: tuple[str, ...]
    coarse_labels: Tensor | None = None
    coarse_names: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.labels)


def _fix(path: Path) -> str:
    return (
        f"replace {path.name} with the file from the official release "
        "(https://www.cs.toronto.edu/~kriz/cifar.html) and check it with "
        "`cirbench datasets verify NAME`"
    )


def load_pickle(path: Path) -> dict[str, Any]:
    """The dict stored in a CIFAR pickle, keys decoded to ``str``; a CirbenchError if unreadable."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CirbenchError(f"cannot read CIFAR file {path}: {exc.strerror}") from None
    try:
        obj = safe_pickle.loads(raw, "CIFAR file")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as exc:
        reason = str(exc) or type(exc).__name__
        raise CirbenchError(
            f"{path} is not a readable CIFAR pickle (truncated or corrupted: {reason}); "
            f"{_fix(path)}"
        ) from None
    if not isinstance(obj, dict):
        raise CirbenchError(
            f"{path} holds a {type(obj).__name__}, not the dict of a CIFAR batch; {_fix(path)}"
        )
    return {_text(key): value for key, value in obj.items()}


def _text(value: object) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def _field(batch: dict[str, Any], key: str, path: Path) -> Any:
    if key not in batch:
        keys = ", ".join(sorted(batch)) or "none"
        raise CirbenchError(f"{path} has no key {key!r} (its keys: {keys}); {_fix(path)}")
    return batch[key]


# --- batches and meta files -----------------------------------------------------------------


def read_images(batch: dict[str, Any], path: Path) -> np.ndarray:
    """``data`` as an (N, 3, 32, 32) uint8 array."""
    data = _field(batch, "data", path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        got = f"{type(data).__name__} {getattr(data, 'dtype', '')} {getattr(data, 'shape', '')}"
        raise CirbenchError(f"{path}: 'data' must be an N x {PIXELS} uint8 array, got {got}")
    if data.shape[1] != PIXELS:
        raise CirbenchError(
            f"{path}: 'data' has {data.shape[1]} values per image, expected {PIXELS} (3 x 32 x 32)"
        )
    return data.reshape(-1, *IMAGE_SHAPE)


def read_labels(
    batch: dict[str, Any], key: str, count: int, classes: int, path: Path
) -> np.ndarray:
    """``batch[key]`` as int64 (N,), checked against the number of images and classes."""
    labels = np.asarray(_field(batch, key, path))
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise CirbenchError(f"{path}: {key!r} must be a list of integers")
    if len(labels) != count:
        raise CirbenchError(f"{path}: {len(labels)} {key} for {count} images")
    if count and (labels.min() < 0 or labels.max() >= classes):
        raise CirbenchError(
            f"{path}: {key!r} holds values outside 0..{classes - 1} "
            f"(min {labels.min()}, max {labels.max()}); {_fix(path)}"
        )
    return labels.astype(np.int64)


def read_names(meta: dict[str, Any], key: str, path: Path) -> tuple[str, ...]:
    """Class names from a meta dict (bytes or str), in label order."""
    names = _field(meta, key, path)
    if not isinstance(names, list | tuple) or not names:
        raise CirbenchError(f"{path}: {key!r} must be a non-empty list of class names")
    return tuple(_text(name) for name in names)


def read_cifar10(folder: Path, split: Split) -> CifarSplit:
    """A split of ``cifar-10-batches-py/``: the 5 training batches in order, or the test batch."""
    folder = Path(folder)
    names = read_names(load_pickle(folder / CIFAR10_META), "label_names", folder / CIFAR10_META)
    files = CIFAR10_TRAIN if split == "train" else (CIFAR10_TEST,)
    images, labels = [], []
    for name in files:
        path = folder / name
        batch = load_pickle(path)
        x = read_images(batch, path)
        images.append(x)
        labels.append(read_labels(batch, "labels", len(x), len(names), path))
    return CifarSplit(_tensor(np.concatenate(images)), _tensor(np.concatenate(labels)), names)


def read_cifar100(folder: Path, split: Split) -> CifarSplit:
    """A split of ``cifar-100-python/`` with fine (100) and coarse (20) labels and names."""
    folder = Path(folder)
    meta_path = folder / CIFAR100_META
    meta = load_pickle(meta_path)
    fine_names = read_names(meta, "fine_label_names", meta_path)
    coarse_names = read_names(meta, "coarse_label_names", meta_path)
    path = folder / (CIFAR100_TRAIN if split == "train" else CIFAR100_TEST)
    batch = load_pickle(path)
    x = read_images(batch, path)
    fine = read_labels(batch, "fine_labels", len(x), len(fine_names), path)
    coarse = read_labels(batch, "coarse_labels", len(x), len(coarse_names), path)
    return CifarSplit(_tensor(x), _tensor(fine), fine_names, _tensor(coarse), coarse_names)


def _tensor(array: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(array))


# --- augmentation ---------------------------------------------------------------------------


def random_crop_flip(
    images: Tensor, generator: torch.Generator, pad: int = 4, flip: bool = True
) -> Tensor:
    """Zero-pad by ``pad``, crop back to the input size at a random offset, flip half at random.

    Vectorised over the batch, no per-image Python work: the padded batch and its mirror image
    are viewed (``unfold``, no copy) as every (2*pad+1)^2 crop window, and one indexing op picks
    each image's window (a flipped crop at offset dx is the mirror's window at 2*pad - dx).
    ``images`` (B, C, H, W), any dtype (uint8 here); offsets uniform in 0..2*pad and flips with
    probability 1/2, drawn from ``generator`` (a CPU generator). Returns a new (B, C, H, W) tensor.
    """
    b, _, h, w = images.shape
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    flipped = torch.rand(b, generator=generator) < 0.5 if flip else torch.zeros(b, dtype=torch.bool)
    dx = torch.where(flipped, 2 * pad - dx, dx)
    padded = F.pad(images, (pad, pad, pad, pad)) if pad else images
    both = torch.stack([padded, padded.flip(3)]) if flip else padded.unsqueeze(0)
    windows = both.unfold(3, h, 1).unfold(4, w, 1)  # (2, B, C, 2p+1, 2p+1, H, W), a view
    index = [t.to(images.device) for t in (flipped.long(), torch.arange(b), dy, dx)]
    return windows[index[0], index[1], :, index[2], index[3]]


def shuffled_batches(
    images: Tensor,
    labels: Tensor,
    batch_size: int,
    generator: torch.Generator,
    pad: int | None = 4,
) -> Iterator[tuple[Tensor, Tensor]]:
    """One epoch of (uint8 images, labels) in a random order, augmented by
    :func:`random_crop_flip` with ``pad`` (None: no augmentation). The last incomplete batch is
    dropped. Everything random is drawn from ``generator``. Under several processes every rank
    draws the same global batch and augmentation and keeps its share (:func:`distributed.shard`).
    """
    order = torch.randperm(len(labels), generator=generator)
    for start in range(0, len(labels) - batch_size + 1, batch_size):
        idx = order[start : start + batch_size]
        x = images[idx]
        if pad is not None:
            x = random_crop_flip(x, generator, pad)
        mine = distributed.shard(torch.arange(batch_size))
        yield x[mine], labels[idx[mine]]


def channel_stats(images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 images (N, C, H, W), on the 0..1 scale.

    Exact and without a float copy of the data: from each channel's 256-bin value histogram.
    """
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for channel in range(images.shape[1]):
        counts = torch.bincount(images[:, channel].reshape(-1), minlength=256).double()
        total = counts.sum()
        mean = float((counts * values).sum() / total)
        var = float((counts * values**2).sum() / total) - mean**2
        means.append(mean)
        stds.append(max(var, 0.0) ** 0.5)
    return tuple(means), tuple(stds)
