"""tieredImageNet readers, in the three forms users have.

Ren et al., "Meta-Learning for Semi-Supervised Few-Shot Classification", ICLR 2018
(arXiv:1803.00676): 608 ImageNet classes in 34 super-categories, train/val/test = 351/97/160
classes (20/6/8 categories), 84x84 colour images. Forms, in the dataset folder:

- ``pkl``: ``{split}_images_png.pkl`` (a pickled sequence of PNG-encoded images: numpy uint8
  buffers as written by the release's ``cv2.imencode``, or bytes) with ``{split}_labels.pkl``
  (a pickled dict with ``label_specific`` (N,), ``label_general`` (N,), ``label_specific_str``,
  ``label_general_str``); the original release, pickled under Python 2 (read with latin-1);
- ``npz``: ``{split}_images.npz`` (array ``images`` (N, 84, 84, 3) uint8) with the same
  ``{split}_labels.pkl``, the widely shared decoded copy;
- ``folders``: ``{split}/<class>/<image>.{png,jpg,jpeg}``, a class-per-folder copy.

Class ids are ``label_specific`` renumbered 0..C-1 in sorted order (folder names sorted for the
class-per-folder form). Images are decoded on demand (PNG bytes and files) or kept as the
loaded array (npz); :meth:`TieredSplit.images` returns (n, size, size, 3) uint8, resized with
PIL bilinear when ``size`` differs from the stored size. A file that is an HTML page (a failed
download), a wrong class count, a missing file or a label/image count mismatch each end in one
:class:`~cirbench.errors.CirbenchError` naming the file and the fix.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from cirbench.data import safe_pickle
from cirbench.data.catalog import looks_like_html
from cirbench.errors import CirbenchError

Form = Literal["pkl", "npz", "folders"]
SPLITS = ("train", "val", "test")
#: Classes per split in Ren et al. 2018 (Sec. 4, "tieredImageNet").
TIERED_CLASSES: Mapping[str, int] = {"train": 351, "val": 97, "test": 160}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SOURCE = (
    "get the pickled release (tiered-imagenet.tar) linked from "
    "https://github.com/renmengye/few-shot-ssl-public and extract it so that the folder holds "
    "{split}_images_png.pkl and {split}_labels.pkl for train, val and test (the decoded "
    "{split}_images.npz form or a class-per-folder copy {split}/<class>/*.png also work)"
)

Decoder = Callable[[np.ndarray, int], np.ndarray]


@dataclass(frozen=True)
class TieredSplit:
    """One split: ``labels`` (N,) int64 in [0, C); ``decode(indices, size)`` gives images."""

    split: str
    form: Form
    labels: np.ndarray
    decode: Decoder

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1 if self.labels.size else 0

    def images(self, indices: Sequence[int] | np.ndarray, size: int = 84) -> np.ndarray:
        """(n, size, size, 3) uint8 images of ``indices``."""
        return self.decode(np.asarray(indices, dtype=np.int64), size)


def detect_form(folder: Path) -> Form:
    """Which form the dataset folder holds; a CirbenchError when none."""
    if any((folder / f"{s}_images_png.pkl").exists() for s in SPLITS):
        return "pkl"
    if any((folder / f"{s}_images.npz").exists() for s in SPLITS):
        return "npz"
    if any((folder / s).is_dir() for s in SPLITS):
        return "folders"
    raise CirbenchError(f"tieredImageNet not found in {folder}: {SOURCE}")


def load_split(folder: Path, split: str, form: Form | None = None) -> TieredSplit:
    """Read one split of the dataset in ``folder`` (form detected unless given)."""
    form = form or detect_form(folder)
    if form == "folders":
        return _folder_split(folder, split)
    labels = read_labels(_existing(folder / f"{split}_labels.pkl"))
    if form == "pkl":
        encoded = _read_pickle(_existing(folder / f"{split}_images_png.pkl"))
        decode = _png_decoder(_as_sequence(encoded, folder / f"{split}_images_png.pkl"))
        count = len(encoded)
    else:
        array = read_npz(_existing(folder / f"{split}_images.npz"))
        decode, count = _array_decoder(array), len(array)
    if count != len(labels):
        raise CirbenchError(
            f"tieredImageNet {split}: {count} images but {len(labels)} labels in "
            f"{folder / f'{split}_labels.pkl'}; the files come from different downloads: {SOURCE}"
        )
    return TieredSplit(split, form, labels, decode)


def split_classes(folder: Path, split: str, form: Form) -> int:
    """Number of classes of a split, reading only its labels (or folder names)."""
    if form == "folders":
        return len(_class_folders(folder, split))
    labels = read_labels(_existing(folder / f"{split}_labels.pkl"))
    return int(labels.max()) + 1 if labels.size else 0


def check_class_count(split: str, found: int, expected: Mapping[str, int]) -> None:
    want = expected[split]
    if found != want:
        raise CirbenchError(
            f"tieredImageNet {split} split has {found} classes, expected {want} (Ren et al. 2018: "
            f"train/val/test = {'/'.join(str(expected[s]) for s in SPLITS)}): the data is "
            f"incomplete or another split; {SOURCE}"
        )


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise CirbenchError(f"tieredImageNet file missing: {path}; {SOURCE}")
    if path.stat().st_size == 0 or looks_like_html(path):
        what = "is empty" if path.stat().st_size == 0 else "is an HTML page, not data"
        raise CirbenchError(
            f"{path} {what} (a failed download): download the release again; {SOURCE}"
        )
    return path


def _read_pickle(path: Path) -> Any:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CirbenchError(f"cannot read tieredImageNet file {path}: {exc.strerror}") from None
    try:
        # Python 2 pickles of the release; no code runs from the file (safe_pickle)
        return safe_pickle.loads(raw, "tieredImageNet file", encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise CirbenchError(
            f"{path} is not a readable pickle ({type(exc).__name__}: {exc}); it is damaged or "
            f"truncated: download it again; {SOURCE}"
        ) from None


def read_labels(path: Path) -> np.ndarray:
    """``label_specific`` of a ``{split}_labels.pkl``, renumbered 0..C-1 (N,) int64."""
    data = _read_pickle(path)
    if not isinstance(data, dict) or "label_specific" not in data:
        raise CirbenchError(
            f"{path} is not a tieredImageNet labels file: expected a pickled dict with "
            f"'label_specific' (and 'label_general', ...); {SOURCE}"
        )
    raw = np.asarray(data["label_specific"]).reshape(-1)
    _, labels = np.unique(raw, return_inverse=True)
    return labels.astype(np.int64)


def read_npz(path: Path) -> np.ndarray:
    try:
        with np.load(path) as archive:
            key = "images" if "images" in archive.files else archive.files[0]
            array = np.asarray(archive[key])
    except (OSError, ValueError, IndexError) as exc:
        raise CirbenchError(f"{path} is not a readable .npz ({exc}): download it again") from None
    if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8:
        raise CirbenchError(
            f"{path}: expected images (N, H, W, 3) uint8, got {array.shape} {array.dtype}"
        )
    return array


def _as_sequence(encoded: Any, path: Path) -> Sequence[Any]:
    if isinstance(encoded, np.ndarray):
        return list(encoded)
    if isinstance(encoded, list | tuple):
        return encoded
    raise CirbenchError(f"{path}: expected a pickled list of PNG images, got {type(encoded)}")


def _as_bytes(item: Any) -> bytes:
    if isinstance(item, np.ndarray):
        return item.tobytes()
    if isinstance(item, str):  # a Python 2 str read with latin-1
        return item.encode("latin1")
    return bytes(item)


def to_rgb(img: Image.Image, size: int) -> np.ndarray:
    rgb = img.convert("RGB")
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def _png_decoder(encoded: Sequence[Any]) -> Decoder:
    def decode(indices: np.ndarray, size: int) -> np.ndarray:
        out = np.empty((len(indices), size, size, 3), dtype=np.uint8)
        for row, i in enumerate(indices):
            with Image.open(io.BytesIO(_as_bytes(encoded[int(i)]))) as img:
                out[row] = to_rgb(img, size)
        return out

    return decode


def _array_decoder(array: np.ndarray) -> Decoder:
    def decode(indices: np.ndarray, size: int) -> np.ndarray:
        picked = array[indices]
        if picked.shape[1:3] == (size, size):
            return np.asarray(picked, dtype=np.uint8)
        return np.stack([to_rgb(Image.fromarray(im), size) for im in picked])

    return decode


def _class_folders(folder: Path, split: str) -> list[Path]:
    root = folder / split
    if not root.is_dir():
        raise CirbenchError(f"tieredImageNet split folder missing: {root}; {SOURCE}")
    return sorted(p for p in root.iterdir() if p.is_dir())


def _folder_split(folder: Path, split: str) -> TieredSplit:
    files: list[Path] = []
    labels: list[int] = []
    for label, class_dir in enumerate(_class_folders(folder, split)):
        found = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        files += found
        labels += [label] * len(found)
    if not files:
        raise CirbenchError(f"no images under {folder / split}/<class>/; {SOURCE}")

    def decode(indices: np.ndarray, size: int) -> np.ndarray:
        out = np.empty((len(indices), size, size, 3), dtype=np.uint8)
        for row, i in enumerate(indices):
            with Image.open(files[int(i)]) as img:
                out[row] = to_rgb(img, size)
        return out

    return TieredSplit(split, "folders", np.array(labels, dtype=np.int64), decode)
