"""Generated Fashion-MNIST trees: the four gzipped IDX files of the release, tiny and label-coded.

An image of class c is filled with 20 * c + noise, so a model can learn it in a few steps and a
test can read the label back from a pixel. :func:`idx_bytes` writes the IDX format by hand
(big-endian magic and sizes, then unsigned bytes), independently of the reader under test.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """``array`` (uint8) in IDX: magic 0x0801 / 0x0803 by its number of dimensions."""
    if magic is None:
        magic = 0x0800 | array.ndim
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = True, magic: int | None = None) -> Path:
    raw = idx_bytes(array, magic)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw, mtime=0) if gz else raw)
    return path


def coded_split(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` 28x28 images whose grey level codes their label (classes in turn)."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(count) % 10).astype(np.uint8)
    rng.shuffle(labels)
    noise = rng.integers(0, 10, size=(count, 28, 28))
    images = (labels[:, None, None].astype(np.int64) * 20 + noise).astype(np.uint8)
    return images, labels


def write_fashion(folder: Path, train: int = 200, test: int = 60) -> Path:
    """A fashion-mnist folder with the four official file names, gzipped."""
    for (images_name, labels_name), (count, seed) in zip(
        ((TRAIN_IMAGES, TRAIN_LABELS), (TEST_IMAGES, TEST_LABELS)),
        ((train, 0), (test, 1)),
        strict=True,
    ):
        images, labels = coded_split(count, seed)
        write_idx(folder / images_name, images)
        write_idx(folder / labels_name, labels)
    return folder
