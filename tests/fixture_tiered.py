"""Generate tiny tieredImageNet trees in the release's three forms (for reader and task tests).

``make_tiered(root, form, classes, per_class)`` writes ``root/tiered-imagenet/`` with:

- ``pkl``: ``{split}_images_png.pkl`` (a list of PNG buffers as numpy uint8 arrays, like the
  release's cv2.imencode output; ``png_as_bytes=True`` stores plain bytes) and
  ``{split}_labels.pkl`` (dict: label_specific, label_general, label_specific_str,
  label_general_str), label_specific numbered globally across splits as in the release;
- ``npz``: ``{split}_images.npz`` (``images`` (N, H, W, 3) uint8) and the same labels;
- ``folders``: ``{split}/<class name>/<i>.png``.

``write_split`` writes one split from given images and labels (tests/layouts_real.py passes real
pictures and their super-categories).

Image i of class c is filled with colour ``pixel(c, i)`` so tests can check that decoding and
labels line up.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image

SPLITS = ("train", "val", "test")
SMALL = {"train": 3, "val": 2, "test": 6}
FULL = {"train": 351, "val": 97, "test": 160}


def pixel(label: int, index: int) -> tuple[int, int, int]:
    return (label * 7 % 256, index * 13 % 256, (label + index) % 256)


def split_arrays(n_classes: int, per_class: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    labels = np.repeat(np.arange(n_classes), per_class)
    images = np.empty((len(labels), size, size, 3), dtype=np.uint8)
    for row, label in enumerate(labels):
        images[row] = pixel(int(label), row % per_class)
    return images, labels


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def labels_dict(
    labels: np.ndarray, offset: int, general: np.ndarray | None = None
) -> dict[str, object]:
    """The labels pickle; super-category ``general`` per image (default: specific // 10)."""
    specific = labels + offset
    general = specific // 10 if general is None else general
    return {
        "label_specific": specific,
        "label_general": general,
        "label_specific_str": [f"n{c:08d}" for c in specific],
        "label_general_str": [f"cat{c}" for c in general],
    }


def make_tiered(
    root: Path,
    form: str = "pkl",
    classes: Mapping[str, int] = SMALL,
    per_class: int | Mapping[str, int] = 4,
    size: int = 84,
    png_as_bytes: bool = False,
) -> Path:
    """Write the tree under ``root/tiered-imagenet``; return that folder."""
    folder = root / "tiered-imagenet"
    folder.mkdir(parents=True, exist_ok=True)
    offset = 0
    for split in SPLITS:
        count = per_class if isinstance(per_class, int) else per_class[split]
        images, labels = split_arrays(classes[split], count, size)
        write_split(folder, split, form, images, labels, offset, png_as_bytes)
        offset += classes[split]
    return folder


def write_split(
    folder: Path,
    split: str,
    form: str,
    images: np.ndarray,
    labels: np.ndarray,
    offset: int,
    png_as_bytes: bool,
    general: np.ndarray | None = None,
) -> None:
    if form == "folders":
        for row, (image, label) in enumerate(zip(images, labels, strict=True)):
            class_dir = folder / split / f"n{label + offset:08d}"
            class_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(class_dir / f"{row:05d}.png")
        return
    with (folder / f"{split}_labels.pkl").open("wb") as fh:
        pickle.dump(labels_dict(labels, offset, general), fh)
    if form == "npz":
        np.savez(folder / f"{split}_images.npz", images=images)
        return
    encoded = [png_bytes(im) for im in images]
    items = encoded if png_as_bytes else [np.frombuffer(b, dtype=np.uint8) for b in encoded]
    with (folder / f"{split}_images_png.pkl").open("wb") as fh:
        pickle.dump(items, fh)
