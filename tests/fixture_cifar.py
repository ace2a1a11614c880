"""Generate tiny CIFAR-10 / CIFAR-100 trees in the canonical python layout, for tests.

The pickles have the exact structure of the official release, written the way Python 2 wrote it
(:func:`py2_pickle`): protocol 2, dict keys and names as Python 2 ``str`` (SHORT_BINSTRING, so
they load as ``bytes`` with ``encoding="bytes"``), ``data`` an N x 3072 uint8 numpy array
reconstructed by ``numpy.core.multiarray._reconstruct``, label lists of ints, ``batch_label`` and
``filenames``; ``batches.meta`` / ``meta`` hold the class names. Pixel values encode
the label (every value of image i is ``label * 20 + i % 7``) so that a test can check the
image / label pairing after reading.
"""

from __future__ import annotations

import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np

CIFAR10_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
CIFAR10_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
CIFAR100_FILES = ("train", "test", "meta")
HTML_PAGE = b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body></body></html>\n"


def images_for(labels: np.ndarray) -> np.ndarray:
    """N x 3072 uint8 images whose every value encodes the label (and the index mod 7)."""
    values = (labels.astype(np.int64) * 20 + np.arange(len(labels)) % 7) % 256
    return np.repeat(values[:, None], 3072, axis=1).astype(np.uint8)


def _py2_value(obj: object) -> bytes:
    """Pickle opcodes (no PROTO, no STOP) for ``obj`` as Python 2 would write them."""
    if isinstance(obj, bytes):  # a Python 2 str
        if len(obj) < 256:
            return b"U" + bytes([len(obj)]) + obj
        return b"T" + struct.pack("<i", len(obj)) + obj
    if isinstance(obj, bool) or not isinstance(obj, int | list | dict | np.ndarray):
        raise TypeError(f"py2_pickle does not write {type(obj).__name__}")
    if isinstance(obj, int):
        return b"J" + struct.pack("<i", obj)
    if isinstance(obj, list):
        return b"](" + b"".join(_py2_value(v) for v in obj) + b"e"
    if isinstance(obj, dict):
        items = b"".join(_py2_value(k) + _py2_value(v) for k, v in obj.items())
        return b"}(" + items + b"u"
    # numpy writes the array; only its module name is changed to the one of numpy 1.x / Python 2.
    array = pickle.dumps(obj, protocol=2)[2:-1]
    return array.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def py2_pickle(obj: object) -> bytes:
    """Protocol-2 bytes as the official CIFAR files have them (keys are bytes = py2 str)."""
    return b"\x80\x02" + _py2_value(obj) + b"."


def dump(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(py2_pickle(obj))


def cifar10_batch(labels: np.ndarray, batch_label: str) -> dict[bytes, object]:
    return {
        b"batch_label": batch_label.encode(),
        b"labels": [int(v) for v in labels],
        b"data": images_for(labels),
        b"filenames": [f"img_{i:05d}.png".encode() for i in range(len(labels))],
    }


def write_cifar10(folder: Path, per_batch: int = 20, test: int = 30) -> Path:
    """``folder`` = cifar-10-batches-py/ with 5 training batches of ``per_batch`` images.

    Labels cycle 0..9 with a per-batch offset, so every class appears in every batch.
    """
    for i in range(1, 6):
        labels = (np.arange(per_batch) + i) % 10
        dump(folder / f"data_batch_{i}", cifar10_batch(labels, f"training batch {i} of 5"))
    dump(folder / "test_batch", cifar10_batch(np.arange(test) % 10, "testing batch 1 of 1"))
    meta = {
        b"num_cases_per_batch": per_batch,
        b"label_names": [n.encode() for n in CIFAR10_NAMES],
        b"num_vis": 3072,
    }
    dump(folder / "batches.meta", meta)
    return folder


def coarse_of(fine: np.ndarray) -> np.ndarray:
    """The fixture's fine -> coarse mapping: 5 fine classes per super-class."""
    return fine // 5


def cifar100_split(fine: np.ndarray, batch_label: str) -> dict[bytes, object]:
    return {
        b"filenames": [f"img_{i:05d}.png".encode() for i in range(len(fine))],
        b"batch_label": batch_label.encode(),
        b"fine_labels": [int(v) for v in fine],
        b"coarse_labels": [int(v) for v in coarse_of(fine)],
        b"data": images_for(fine),
    }


def write_cifar100(folder: Path, train: int = 200, test: int = 100) -> Path:
    """``folder`` = cifar-100-python/ with ``train`` and ``test`` images (fine labels cycle)."""
    dump(folder / "train", cifar100_split(np.arange(train) % 100, "training batch 1 of 1"))
    dump(folder / "test", cifar100_split((np.arange(test) * 3) % 100, "testing batch 1 of 1"))
    meta = {
        b"fine_label_names": [f"fine_{i:02d}".encode() for i in range(100)],
        b"coarse_label_names": [f"coarse_{i:02d}".encode() for i in range(20)],
    }
    dump(folder / "meta", meta)
    return folder


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_catalog(path: Path, name: str, folder: str, files: dict[str, str | None]) -> Path:
    """A datasets.yaml with one entry ``name``: ``files`` maps a path to its md5 (or None)."""
    lines = [
        f"{name}:",
        "  description: a generated CIFAR fixture",
        f"  folder: {folder}",
        "  source: generated by tests/fixture_cifar.py",
        "  files:",
    ]
    for file, digest in files.items():
        lines.append(
            f"    - {{path: {file}, md5: {digest}}}" if digest else f"    - {{path: {file}}}"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def catalog_for(path: Path, name: str, root: Path, folder: str, checksums: bool = True) -> Path:
    """A datasets.yaml whose entry ``name`` expects exactly the files now under root/folder."""
    files = {
        str(p.relative_to(root / folder)): (md5(p) if checksums else None)
        for p in sorted((root / folder).iterdir())
    }
    return write_catalog(path, name, folder, files)
