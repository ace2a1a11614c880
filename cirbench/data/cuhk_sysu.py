"""Reader for the CUHK-SYSU person search release (Xiao et al. 2017, arXiv:1604.01850).

Layout (under the dataset folder)::

    Image/SSM/*.jpg                          all 18,184 scene images
    annotation/Images.mat                    Img (1, N) struct: imname, nAppear, box
                                               box (1, n) struct: idlocate (1, 4) x y w h, ishard
    annotation/pool.mat                      pool (6978, 1) cell of image names: the test images
    annotation/test/train_test/Train.mat     Train (5532, 1) cell of (1, 1) structs:
                                               idname, nAppear, scene (1, k) struct:
                                               imname, idlocate (1, 4), ishard
    annotation/test/train_test/TestG{G}.mat  TestG{G} (1, 2900) struct: Query, Gallery
                                               Query (1, 1) struct: imname, idlocate, ishard, idname
                                               Gallery (1, G) struct: imname, idlocate, ishard
                                               (idlocate empty for a distractor image)

The nested layout and the indexing follow the two reference loaders: ShuangLI59/person_search
``lib/datasets/psdb.py`` (``gt_roidb``, ``_load_image_set_index``, ``evaluate_search``) and
serend1p1ty/SeqNet ``datasets/cuhk_sysu.py``; the field names are those printed by other public
CUHK-SYSU readers (``['imname', 'idlocate', 'ishard', 'idname']`` for a query). As in both
references: train images = all images of Images.mat minus pool.mat; a box is kept when w > 0 and
h > 0 (we count the dropped ones); a training identity's boxes are found in Images.mat by exact
equality of (x, y, w, h); identities are numbered by their order in Train.mat, here 0..K-1;
every other person is unlabeled and gets :data:`UNLABELED`. Coordinates are stored as uint8 or
uint16 in the release, so they are widened before x + w is formed. Boxes are returned as float32
(x1, y1, x2, y2) = (x, y, x + w, y + h).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
from numpy.typing import NDArray

from cirbench.errors import CirbenchError

log = logging.getLogger(__name__)

#: Identity marker of a person without a training identity.
UNLABELED = -1
#: Gallery sizes of the release (one TestG file each); -1 means the full 6,978-image gallery.
GALLERY_SIZES = (50, 100, 500, 1000, 2000, 4000)
FULL_GALLERY = -1

IMAGES_MAT = "annotation/Images.mat"
POOL_MAT = "annotation/pool.mat"
TRAIN_MAT = "annotation/test/train_test/Train.mat"
IMAGE_DIR = "Image/SSM"

Boxes = NDArray[np.float32]


def test_mat(gallery_size: int) -> str:
    return f"annotation/test/train_test/TestG{gallery_size}.mat"


@dataclass(frozen=True)
class Scene:
    """One image: its file name, person boxes (n, 4) x1 y1 x2 y2 and identities (n,)."""

    name: str
    boxes: Boxes
    pids: NDArray[np.int64]


@dataclass(frozen=True)
class GalleryItem:
    """One gallery image of a query; ``box`` is the target's box, or None for a distractor."""

    image: str
    box: Boxes | None


@dataclass(frozen=True)
class SearchQuery:
    image: str
    box: Boxes  # (4,) x1 y1 x2 y2
    gallery: tuple[GalleryItem, ...]


@dataclass(frozen=True)
class CuhkSysu:
    """The loaded release: training scenes with identities, the test pool with all its boxes."""

    root: Path
    train: list[Scene]
    gallery: list[Scene]
    num_identities: int
    dropped_boxes: int
    unmatched_train_boxes: int


class _LayoutError(Exception):
    """Raised inside the parsers; turned into a CirbenchError naming the file."""


def read_mat(root: Path, rel: str, key: str) -> Any:
    """Load variable ``key`` of ``root/rel``; a missing or unreadable file is a user error."""
    path = root / rel
    if not path.is_file():
        raise CirbenchError(
            f"CUHK-SYSU: {rel} is missing (expected at {path}). Extract the release so that "
            f"{root} holds Image/SSM/ and annotation/ (see `cirbench datasets verify cuhk-sysu`)."
        )
    try:
        content = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises ValueError, TypeError, MatReadError, OSError...
        raise CirbenchError(
            f"CUHK-SYSU: {path} is not a readable MATLAB file ({exc}); replace it with the "
            "file from the release."
        ) from None
    if key not in content:
        found = ", ".join(k for k in content if not k.startswith("__")) or "none"
        raise CirbenchError(
            f"CUHK-SYSU: {path} has no variable {key!r} (found: {found}); it is not the "
            "release's file: replace it with the original."
        )
    return content[key]


def _structure_error(root: Path, rel: str, exc: Exception) -> CirbenchError:
    return CirbenchError(
        f"CUHK-SYSU: {root / rel} does not have the structure of the release ({exc}); the "
        "file was probably modified or comes from another version: replace it with the "
        "original from the CUHK-SYSU release."
    )


def _text(cell: Any) -> str:
    """A MATLAB char array as loaded by scipy (``array(['s1.jpg'])``) -> ``'s1.jpg'``."""
    arr = np.asarray(cell).reshape(-1)
    if arr.size != 1 or not isinstance(arr[0], str):
        raise _LayoutError(f"expected a string, got {cell!r}")
    return str(arr[0])


def _xywh(cell: Any) -> NDArray[np.int64]:
    arr = np.asarray(cell)
    if arr.size != 4 or not np.issubdtype(arr.dtype, np.number):
        raise _LayoutError(f"expected a box of 4 numbers, got {cell!r}")
    return arr.reshape(4).astype(np.int64)


def xywh_to_xyxy(box: NDArray[np.int64]) -> Boxes:
    x, y, w, h = (int(v) for v in box)
    return np.array([x, y, x + w, y + h], dtype=np.float32)


def _records(arr: Any) -> Iterator[Any]:
    """Iterate the elements of a MATLAB struct or cell array of any shape."""
    a = np.asarray(arr)
    if a.size == 0:
        return
    yield from a.reshape(-1)


def _field(record: Any, name: str) -> Any:
    try:
        return record[name]
    except (KeyError, ValueError, IndexError, TypeError) as exc:
        raise _LayoutError(f"missing field {name!r}") from exc


def _parse_images(img: Any) -> tuple[dict[str, NDArray[np.int64]], list[str], int]:
    """Images.mat -> (name -> valid boxes (n, 4) x y w h, image order, dropped box count)."""
    boxes: dict[str, NDArray[np.int64]] = {}
    order: list[str] = []
    dropped = 0
    for record in _records(img):
        name = _text(_field(record, "imname"))
        raw = [_xywh(_field(b, "idlocate")) for b in _records(_field(record, "box"))]
        arr = np.stack(raw) if raw else np.zeros((0, 4), dtype=np.int64)
        valid = (arr[:, 2] > 0) & (arr[:, 3] > 0)
        dropped += int((~valid).sum())
        boxes[name] = arr[valid]
        order.append(name)
    if not order:
        raise _LayoutError("no image records")
    return boxes, order, dropped


def _parse_pool(pool: Any) -> list[str]:
    names = [_text(cell) for cell in _records(pool)]
    if not names:
        raise _LayoutError("empty pool")
    return names


def _parse_train(train: Any) -> list[list[tuple[str, NDArray[np.int64]]]]:
    """Train.mat -> per identity (in file order) the list of (image, box x y w h)."""
    identities = []
    for cell in _records(train):
        struct = np.asarray(cell).reshape(-1)[0]
        scenes = [
            (_text(_field(s, "imname")), _xywh(_field(s, "idlocate")))
            for s in _records(_field(struct, "scene"))
        ]
        identities.append(scenes)
    if not identities:
        raise _LayoutError("no identities")
    return identities


def _parse_protocol(protoc: Any) -> list[SearchQuery]:
    queries = []
    for record in _records(protoc):
        query = np.asarray(_field(record, "Query")).reshape(-1)[0]
        gallery = tuple(
            GalleryItem(_text(_field(g, "imname")), _optional_box(_field(g, "idlocate")))
            for g in _records(_field(record, "Gallery"))
        )
        box = xywh_to_xyxy(_xywh(_field(query, "idlocate")))
        queries.append(SearchQuery(_text(_field(query, "imname")), box, gallery))
    if not queries:
        raise _LayoutError("no queries")
    return queries


def _optional_box(cell: Any) -> Boxes | None:
    return None if np.asarray(cell).size == 0 else xywh_to_xyxy(_xywh(cell))


def _parse(root: Path, rel: str, key: str, parser: Any) -> Any:
    raw = read_mat(root, rel, key)
    try:
        return parser(raw)
    except (_LayoutError, KeyError, ValueError, IndexError, TypeError) as exc:
        raise _structure_error(root, rel, exc) from None


def _assign_identities(
    boxes: dict[str, NDArray[np.int64]],
    identities: list[list[tuple[str, NDArray[np.int64]]]],
) -> tuple[dict[str, NDArray[np.int64]], int]:
    """Per image the identity of each valid box; also how many Train.mat boxes found none."""
    pids = {name: np.full(len(b), UNLABELED, dtype=np.int64) for name, b in boxes.items()}
    unmatched = 0
    for pid, scenes in enumerate(identities):
        for name, box in scenes:
            hits = np.flatnonzero((boxes.get(name, np.zeros((0, 4))) == box).all(axis=1))
            if hits.size == 0:
                unmatched += 1
                continue
            pids[name][hits[0]] = pid  # the first equal box, as in the references
    return pids, unmatched


def load_cuhk_sysu(root: Path, check_images: bool = True) -> CuhkSysu:
    """Read Images.mat, pool.mat and Train.mat under ``root`` (the dataset folder)."""
    boxes, order, dropped = _parse(root, IMAGES_MAT, "Img", _parse_images)
    pool = _parse(root, POOL_MAT, "pool", _parse_pool)
    identities = _parse(root, TRAIN_MAT, "Train", _parse_train)
    unknown = sorted(set(pool) - set(boxes))
    if unknown:
        raise CirbenchError(
            f"CUHK-SYSU: {len(unknown)} images of {POOL_MAT} are not in {IMAGES_MAT} (first: "
            f"{unknown[0]}); the annotation files do not belong together: re-extract them."
        )
    pids, unmatched = _assign_identities(boxes, identities)
    if unmatched:
        log.warning("CUHK-SYSU: %d boxes of Train.mat match no box of Images.mat", unmatched)
    if dropped:
        log.info("CUHK-SYSU: dropped %d boxes with zero width or height", dropped)
    in_pool = set(pool)
    train_names = sorted(n for n in order if n not in in_pool)  # as SeqNet: sorted(all - pool)
    train = [_scene(n, boxes, pids) for n in train_names if len(boxes[n])]
    gallery = [_scene(n, boxes, {}) for n in pool]
    if check_images:
        check_images_exist(root, [s.name for s in train] + pool)
    return CuhkSysu(root, train, gallery, len(identities), dropped, unmatched)


def _scene(
    name: str, boxes: dict[str, NDArray[np.int64]], pids: dict[str, NDArray[np.int64]]
) -> Scene:
    b = boxes[name]
    xyxy = np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1).astype(np.float32)
    ids = pids.get(name, np.full(len(b), UNLABELED, dtype=np.int64))
    return Scene(name, xyxy.reshape(-1, 4), ids)


def load_protocol(root: Path, gallery_size: int, check_images: bool = True) -> list[SearchQuery]:
    """The queries and per-query galleries of TestG{gallery_size}.mat (TestG50 for the full
    gallery, whose queries are the same, as in both references)."""
    if gallery_size != FULL_GALLERY and gallery_size not in GALLERY_SIZES:
        sizes = ", ".join(map(str, GALLERY_SIZES))
        raise CirbenchError(
            f"CUHK-SYSU has no gallery size {gallery_size}: use one of {sizes}, or -1 for "
            "the full test pool."
        )
    size = 50 if gallery_size == FULL_GALLERY else gallery_size
    rel = test_mat(size)
    if not (root / rel).is_file():
        raise CirbenchError(
            f"CUHK-SYSU: gallery size {gallery_size} needs {rel}, which is missing (expected at "
            f"{root / rel}); extract the full annotation folder of the release, or evaluate "
            "another gallery size."
        )
    queries: list[SearchQuery] = _parse(root, rel, f"TestG{size}", _parse_protocol)
    if check_images:
        check_images_exist(root, [q.image for q in queries])
    return queries


def check_images_exist(root: Path, names: Sequence[str]) -> None:
    folder = root / IMAGE_DIR
    missing = [n for n in dict.fromkeys(names) if not (folder / n).is_file()]
    if missing:
        raise CirbenchError(
            f"CUHK-SYSU: {len(missing)} images named in the annotation are missing from "
            f"{folder} (first: {missing[0]}); the image folder is incomplete: extract all of "
            f"Image/SSM from the release."
        )
