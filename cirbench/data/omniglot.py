"""Omniglot reader: the official python-release zips (or the same trees unzipped), in memory.

Layout (Lake et al., github.com/brendenlake/omniglot, python/): each set is a zip
``<set>.zip`` holding ``<set>/<Alphabet>/characterNN/<charid>_<drawer>.png`` (105x105, 1-bit,
black strokes on white), or the unzipped folder ``<set>/`` with the same tree. One class is one
(alphabet, character) pair; classes are numbered in sorted path order.

Images are decoded with PIL, resized to ``size`` x ``size`` (Lanczos, ours), and inverted so
that strokes are bright (uint8, 255 = stroke). Decoded sets are cached in memory per
(path, size, mtime, image size), so several runs in one process decode each zip once.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from cirbench.errors import CirbenchError

IMAGE_RE = re.compile(r"[^/]+/([^/]+)/(character\d+)/[^/]+\.png")

#: Official set names and their character counts (Lake et al.; shared/data/README.md).
SET_CLASSES = {
    "images_background": 964,
    "images_background_small1": 136,
    "images_background_small2": 156,
    "images_evaluation": 659,
}
DRAWERS = 20


@dataclass(frozen=True)
class OmniglotSet:
    """One decoded set: ``images`` (N, size, size) uint8, ``labels`` (N,) int64 in [0, C)."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]  # "Alphabet/characterNN" per label
    files: tuple[str, ...]  # "Alphabet/characterNN/<charid>_<drawer>.png" per image

    @property
    def num_classes(self) -> int:
        return len(self.classes)


_CACHE: dict[tuple[str, int, int, int], OmniglotSet] = {}


def set_source(folder: Path, name: str) -> Path:
    """``folder/name.zip`` if present, else the unzipped ``folder/name/``; else an error."""
    for path in (folder / f"{name}.zip", folder / name):
        if path.exists():
            return path
    raise CirbenchError(
        f"Omniglot set {name!r} not found: expected {folder / (name + '.zip')} (the official "
        f"zip) or the unzipped folder {folder / name}/. Get the zips from the python/ folder of "
        "https://github.com/brendenlake/omniglot and pass --data-root to the folder holding "
        "omniglot/."
    )


def load_set(folder: Path, name: str, size: int = 28) -> OmniglotSet:
    """Decode set ``name`` under ``folder`` (zip or folder), resized to ``size``; cached."""
    source = set_source(folder, name)
    stat = source.stat()
    key = (str(source.resolve()), stat.st_size, stat.st_mtime_ns, size)
    if key not in _CACHE:
        entries = sorted(_zip_entries(source) if source.is_file() else _folder_entries(source))
        _CACHE[key] = _decode(name, entries, size, source)
    return _CACHE[key]


def _zip_entries(path: Path) -> Iterator[tuple[str, bytes]]:
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if IMAGE_RE.fullmatch(member):
                    yield member, archive.read(member)
    except zipfile.BadZipFile:
        raise CirbenchError(
            f"{path} is not a readable zip (a failed or partial download?): download it again "
            "from https://github.com/brendenlake/omniglot (python/ folder)"
        ) from None


def _folder_entries(path: Path) -> Iterator[tuple[str, bytes]]:
    for file in path.glob("*/character*/*.png"):
        yield str(PurePosixPath(path.name, *file.relative_to(path).parts)), file.read_bytes()


def _decode(name: str, entries: list[tuple[str, bytes]], size: int, source: Path) -> OmniglotSet:
    if not entries:
        raise CirbenchError(
            f"{source} holds no Omniglot images: expected "
            f"{name}/<Alphabet>/characterNN/<charid>_<drawer>.png inside it"
        )
    keys = [_class_key(member) for member, _ in entries]
    classes = tuple(sorted(set(keys)))
    index = {c: i for i, c in enumerate(classes)}
    images = np.stack([_decode_member(member, data, size, source) for member, data in entries])
    labels = np.array([index[k] for k in keys], dtype=np.int64)
    files = tuple(member.split("/", 1)[1] for member, _ in entries)
    return OmniglotSet(name, images, labels, classes, files)


def _class_key(member: str) -> str:
    match = IMAGE_RE.fullmatch(member)
    assert match is not None
    return f"{match.group(1)}/{match.group(2)}"


def _decode_member(member: str, data: bytes, size: int, source: Path) -> np.ndarray:
    try:
        return decode_png(data, size)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise CirbenchError(
            f"{source}: {member} is not a readable PNG ({type(exc).__name__}); the archive or "
            "folder is damaged: download images_background / images_evaluation again and check "
            "them with `cirbench datasets verify omniglot`"
        ) from None


def decode_png(data: bytes, size: int) -> np.ndarray:
    """PNG bytes -> (size, size) uint8 with bright strokes."""
    with Image.open(io.BytesIO(data)) as img:
        grey = img.convert("L")
        if grey.size != (size, size):
            grey = grey.resize((size, size), Image.Resampling.LANCZOS)
        return 255 - np.asarray(grey, dtype=np.uint8)


def check_classes(data: OmniglotSet, expected: int | None = None) -> None:
    """Raise when the set does not hold the official number of characters."""
    want = SET_CLASSES.get(data.name) if expected is None else expected
    if want is not None and data.num_classes != want:
        raise CirbenchError(
            f"Omniglot set {data.name!r} has {data.num_classes} characters, expected {want}: "
            "the zip or folder is incomplete; download it again"
        )
