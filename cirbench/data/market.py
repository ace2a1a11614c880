"""Reader for Market-1501 in its released layout (``Market-1501-v15.09.15/``).

Layout (Zheng et al., "Scalable Person Re-identification: A Benchmark", ICCV 2015)::

    bounding_box_train/   12,936 images of 751 ids (training)
    query/                 3,368 images (one query per id and camera)
    bounding_box_test/    19,732 files: ids, distractors (id 0000) and junk (id -1)

File names look like ``0002_c1s1_000451_03.jpg``: person id (4 digits, or ``-1`` for junk),
camera ``c1``..``c6``, sequence ``s1``.., frame (6 digits), box index (2 digits).

Protocol facts and where they come from:

- junk (id -1) is never used: dropped from every split, as reid-strong-baseline's and
  torchreid's ``Market1501._process_dir`` do (``if pid == -1: continue``);
- distractors (id 0, "background") stay in the gallery as non-matches (same code: ``pid == 0
  means background``); the gallery used in evaluation is 19,732 - 3,819 junk = 15,913 files
  (the count printed by both libraries);
- training ids are relabelled 0..750 in increasing order of the original id (ours: a sorted
  order; the reference relabels in ``set`` iteration order, which is also sorted for ints).

Non-JPEG files (e.g. the ``Thumbs.db`` some copies carry) are skipped with a warning in the log;
a ``.jpg`` whose name does not match the pattern is an error. Only the first bytes of every image
are checked here (JPEG signature); images are decoded lazily by the task's data loader, which
names the file when decoding fails.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cirbench.data.fingerprint import data_fingerprint
from cirbench.errors import CirbenchError

log = logging.getLogger(__name__)

TRAIN_DIR = "bounding_box_train"
QUERY_DIR = "query"
GALLERY_DIR = "bounding_box_test"
SPLIT_DIRS = (TRAIN_DIR, QUERY_DIR, GALLERY_DIR)
JUNK_ID = -1
DISTRACTOR_ID = 0
NUM_CAMERAS = 6
NAME_RE = re.compile(r"(-1|\d{4})_c(\d)s(\d+)_(\d{6})_(\d{2})\.jpg")
NAME_PATTERN = "PPPP_cCsS_FFFFFF_BB.jpg (e.g. 0002_c1s1_000451_03.jpg; -1_c... for junk)"
JPEG_MAGIC = b"\xff\xd8\xff"


@dataclass(frozen=True)
class MarketName:
    """The fields of one file name."""

    pid: int
    camera: int  # 1..6 as in the file name
    sequence: int
    frame: int
    box: int


@dataclass(frozen=True)
class MarketCounts:
    """File and id counts of a Market-1501 tree."""

    train_images: int
    train_ids: int
    query_images: int
    test_files: int
    gallery_images: int


#: The official release (Zheng et al. 2015; the statistics printed by reid-strong-baseline and
#: torchreid: train 751 ids / 12,936 images, query 3,368, gallery 15,913).
OFFICIAL_COUNTS = MarketCounts(
    train_images=12936, train_ids=751, query_images=3368, test_files=19732, gallery_images=15913
)


@dataclass(frozen=True)
class ReidSplit:
    """One split: absolute image paths, person ids and cameras (0-based, camera c1 -> 0)."""

    paths: tuple[Path, ...]
    pids: np.ndarray  # (N,) int64
    cams: np.ndarray  # (N,) int64

    def __len__(self) -> int:
        return len(self.paths)


@dataclass(frozen=True)
class MarketData:
    """The three splits. ``train.pids`` are relabelled 0..C-1; ``train_original_pids[c]`` is the
    id of label c. Query and gallery keep the original ids (0 = distractor)."""

    root: Path
    train: ReidSplit
    train_original_pids: np.ndarray
    query: ReidSplit
    gallery: ReidSplit
    counts: MarketCounts
    junk_dropped: int
    fingerprint: str

    @property
    def num_classes(self) -> int:
        return len(self.train_original_pids)


def parse_name(name: str) -> MarketName:
    """``0002_c1s1_000451_03.jpg`` -> MarketName(2, 1, 1, 451, 3); ValueError otherwise."""
    match = NAME_RE.fullmatch(name)
    if match is None:
        raise ValueError(f"{name!r} does not match {NAME_PATTERN}")
    pid, cam, seq, frame, box = (int(g) for g in match.groups())
    if not 1 <= cam <= NUM_CAMERAS:
        raise ValueError(f"{name!r}: camera c{cam} outside c1..c{NUM_CAMERAS}")
    return MarketName(pid, cam, seq, frame, box)


def check_layout(folder: Path) -> None:
    """Raise a CirbenchError naming the missing sub-folders of a Market-1501 tree."""
    missing = [d for d in SPLIT_DIRS if not (folder / d).is_dir()]
    if missing:
        raise CirbenchError(
            f"Market-1501 layout: {', '.join(f'{d}/' for d in missing)} missing in {folder}. "
            f"Expected {folder}/{{{','.join(SPLIT_DIRS)}}}/ as unzipped from "
            "Market-1501-v15.09.15.zip."
        )


def list_split(folder: Path, split: str) -> list[tuple[Path, MarketName]]:
    """Every ``.jpg`` of ``folder/split`` with its parsed name, sorted by file name."""
    entries: list[tuple[Path, MarketName]] = []
    skipped: list[str] = []
    for path in sorted((folder / split).iterdir()):
        if path.suffix.lower() != ".jpg" or not path.is_file():
            skipped.append(path.name)
            continue
        try:
            entries.append((path, parse_name(path.name)))
        except ValueError as exc:
            raise CirbenchError(
                f"Market-1501 layout: bad file name {split}/{path.name}: {exc}. Every image of "
                f"{split}/ must be named {NAME_PATTERN}; remove or rename the file."
            ) from None
    if skipped:
        log.warning(
            "%s/%s: skipped %d non-JPEG entries (e.g. %s)",
            folder.name,
            split,
            len(skipped),
            skipped[0],
        )
    return entries


def check_jpeg(path: Path, split: str) -> None:
    """Cheap check that ``path`` starts like a JPEG; the full decode happens when it is read."""
    with path.open("rb") as handle:
        head = handle.read(len(JPEG_MAGIC))
    if head != JPEG_MAGIC:
        raise CirbenchError(
            f"unreadable image {split}/{path.name} ({path}): not a JPEG file "
            f"(starts with {head!r}). Replace it with the file from the original release."
        )


def to_split(entries: list[tuple[Path, MarketName]], pids: list[int]) -> ReidSplit:
    return ReidSplit(
        paths=tuple(p for p, _ in entries),
        pids=np.asarray(pids, dtype=np.int64),
        cams=np.asarray([n.camera - 1 for _, n in entries], dtype=np.int64),
    )


def drop_junk(entries: list[tuple[Path, MarketName]]) -> list[tuple[Path, MarketName]]:
    return [(p, n) for p, n in entries if n.pid != JUNK_ID]


def check_query_ids(query: ReidSplit, gallery: ReidSplit) -> None:
    """Every query id must have at least one gallery image (else the folders do not match)."""
    absent = sorted(set(query.pids.tolist()) - set(gallery.pids.tolist()))
    if absent:
        first = next(p for p, pid in zip(query.paths, query.pids, strict=True) if pid == absent[0])
        raise CirbenchError(
            f"Market-1501: {len(absent)} query id(s) have no image in {GALLERY_DIR}/ "
            f"(e.g. id {absent[0]}, {QUERY_DIR}/{first.name}): the query and gallery folders do "
            "not belong to the same release. Restore the original folders."
        )


def fingerprint(entries: dict[str, list[tuple[Path, MarketName]]]) -> str:
    """sha256 of every split's sorted file names and sizes."""
    lines = (
        f"{split}/{path.name}:{path.stat().st_size}\n".encode()
        for split in SPLIT_DIRS
        for path, _ in entries[split]
    )
    return data_fingerprint("market1501", lines)


def read_market(folder: Path, check_images: bool = True) -> MarketData:
    """Read a Market-1501 tree: parse names, drop junk, relabel training ids.

    Raises :class:`CirbenchError` for a missing sub-folder, a bad file name, a file that is not
    a JPEG, junk in the training or query folder, or a query id absent from the gallery.
    """
    folder = Path(folder)
    check_layout(folder)
    entries = {split: list_split(folder, split) for split in SPLIT_DIRS}
    if check_images:
        for split, items in entries.items():
            for path, _ in items:
                check_jpeg(path, split)
    for split in (TRAIN_DIR, QUERY_DIR):
        junk = [p.name for p, n in entries[split] if n.pid in (JUNK_ID, DISTRACTOR_ID)]
        if junk:
            raise CirbenchError(
                f"Market-1501 layout: {split}/{junk[0]} has id {junk[0].split('_')[0]}: junk "
                f"(-1) and distractor (0000) images belong in {GALLERY_DIR}/ only"
            )
    train = entries[TRAIN_DIR]
    original = np.asarray(sorted({n.pid for _, n in train}), dtype=np.int64)
    label = {int(pid): i for i, pid in enumerate(original)}
    gallery_entries = drop_junk(entries[GALLERY_DIR])
    query = to_split(entries[QUERY_DIR], [n.pid for _, n in entries[QUERY_DIR]])
    gallery = to_split(gallery_entries, [n.pid for _, n in gallery_entries])
    check_query_ids(query, gallery)
    counts = MarketCounts(
        train_images=len(train),
        train_ids=len(original),
        query_images=len(query),
        test_files=len(entries[GALLERY_DIR]),
        gallery_images=len(gallery),
    )
    return MarketData(
        root=folder,
        train=to_split(train, [label[n.pid] for _, n in train]),
        train_original_pids=original,
        query=query,
        gallery=gallery,
        counts=counts,
        junk_dropped=counts.test_files - counts.gallery_images,
        fingerprint=fingerprint(entries),
    )


def check_official_counts(counts: MarketCounts) -> None:
    """For a tree with the official file counts, the derived counts must be official too."""
    raw = (counts.train_images, counts.query_images, counts.test_files)
    official = OFFICIAL_COUNTS
    if raw != (official.train_images, official.query_images, official.test_files):
        return
    if counts != official:
        raise CirbenchError(
            f"Market-1501: file counts match the official release but the contents do not: "
            f"got {counts}, expected {official}. Some files were renamed or replaced; "
            "unzip Market-1501-v15.09.15.zip again."
        )
