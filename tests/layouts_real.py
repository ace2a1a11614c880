"""Market-1501, CUHK-SYSU and tieredImageNet trees written from real pictures.

Each builder writes the dataset's canonical on-disk form through the layout writer of its
fixture module (``fixture_market``, ``fixture_cuhk``, ``fixture_tiered``: one home per layout),
handing it real pictures from :mod:`real_images` (Omniglot handwriting on CIFAR-10 photographs)
instead of generated colours:

- Market-1501: a character is a person, each of its images a different drawer on a different
  photograph; 6 cameras, disjoint train (odd) and test (even) ids, distractors (id 0) and junk
  (id -1) are other characters; crops are 64 x 128 like the release's.
- CUHK-SYSU: scenes are photographs (256 x 192) with 2 to 3 person cards each, identities
  recurring across scenes, plus the release's ``Images.mat``, ``pool.mat``, ``Train.mat`` and
  ``TestG{50,100}.mat``.
- tieredImageNet (pkl form): 351/97/160 classes are Omniglot characters, super-categories
  (``label_general``) their alphabets, every alphabet in one split only, as the release splits by
  super-category; 84 x 84 PNGs.

Identities / classes of training and test never share a character. ``python
tests/layouts_real.py {market,cuhk,tiered} DATA_ROOT`` writes one tree (for the committed
pipeline-evidence records, results/pipeline-evidence/README.md).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np
from fixture_cuhk import CuhkFixture, Person, write_cuhk_fixture
from fixture_market import MarketFixture, write_market_fixture
from fixture_tiered import SPLITS, write_split
from real_images import RealImages

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TIERED_SPLIT = {"train": 351, "val": 97, "test": 160}  # Ren et al. 2018
JUNK_PID = 999  # what fixture_market hands the source for a junk (-1) file

# `cirbench run TASK ...` arguments of the slow tests and of the committed evidence records
# (--data-root and --out are added by the caller). Sizes and epochs are ours: what trains in
# about a minute per run on 2 shared CPU cores.
MARKET_RUN = [
    "--profile", "smoke", "--method", "ls+triplet,cir+ls+triplet", "--seeds", "0",
    "--device", "cpu", "-q", "--set", "train.epochs=8", "train.lr=1e-3",
]  # fmt: skip
CUHK_RUN = [
    "--profile", "smoke", "--method", "oim,cir+oim", "--seeds", "0", "--device", "cpu", "-q",
    "--set", "train.epochs=12", "train.min_size=192", "train.max_size=256", "train.lr=1e-3",
]  # fmt: skip
TIERED_RUN = [
    "--profile", "smoke", "--method", "triplet,cir+triplet", "--seeds", "0", "--device", "cpu",
    "-q", "--set", "train.epochs=3", "train.steps_per_epoch=50", "train.batch_size=64",
    "train.n_episodes=500", "train.shots=1,5",
]  # fmt: skip


def character_order(images: RealImages, seed: int) -> list[int]:
    """All character indices in a fixed random order (one order per builder)."""
    return np.random.default_rng(seed).permutation(len(images.characters)).tolist()


class MarketSource:
    """fixture_market's image source: pid -> its own character, a new drawer per image;
    distractors and junk take a spare character per file."""

    def __init__(self, images: RealImages, pids: list[int]) -> None:
        self.images = images
        order = character_order(images, seed=1501)
        self.chars = dict(zip(pids, order, strict=False))
        self.spare = order[len(pids) :]
        self.views: Counter[int] = Counter()

    def __call__(self, pid: int, cam: int, seed: int) -> np.ndarray:
        if pid in (0, JUNK_PID):
            char, drawer = self.spare[seed % len(self.spare)], seed
        else:
            char, drawer = self.chars[pid], self.views[pid]
            self.views[pid] += 1
        return self.images.crop(char, drawer, photo=7 * seed + cam, width=64, height=128)


def build_market(
    data_root: Path,
    images: RealImages,
    n_train_ids: int = 100,
    n_test_ids: int = 50,
    per_id: int = 10,
) -> MarketFixture:
    """Train ids 1, 3, ..., test ids 100, 102, ... (fixture_market's numbering)."""
    pids = [2 * i + 1 for i in range(n_train_ids)] + [100 + 2 * i for i in range(n_test_ids)]
    source = MarketSource(images, pids)
    return write_market_fixture(
        data_root, n_train_ids, n_test_ids, per_id, distractors=40, junk=20, source=source
    )


class CuhkPainter:
    """fixture_cuhk's painter: a photograph with each person as a card of its character.

    Names ``p*`` (training ids) and ``t*`` (test ids) keep one character each, any other name
    (unlabeled ``u*``, bystanders ``b*``, distractors ``d*``) gets its own; every appearance of
    a name is a new drawer."""

    def __init__(self, images: RealImages) -> None:
        self.images = images
        self.order = character_order(images, seed=1604)
        self.chars: dict[str, int] = {}
        self.views: Counter[str] = Counter()

    def char(self, name: str) -> int:
        if name not in self.chars:
            self.chars[name] = self.order[len(self.chars)]
        return self.chars[name]

    def __call__(self, seed: int, width: int, height: int, people: list[Person]) -> np.ndarray:
        canvas = self.images.photo(seed, width, height)
        for x, y, w, h, name in people:
            if w > 0 and h > 0:
                box, char = (x, y, w, h), self.char(name)
                self.images.paste(canvas, box, char, self.views[name], stretch=True)
                self.views[name] += 1
        return canvas


def build_cuhk(data_root: Path, images: RealImages) -> CuhkFixture:
    """99 training scenes (30 identities, each in 6 or 7 scenes), 33 test identities (a query
    scene and two gallery scenes each), 30 distractor scenes in every gallery; scale 2."""
    return write_cuhk_fixture(
        data_root / "cuhk_sysu",
        n_train=99,
        n_ids=30,
        n_test_ids=33,
        n_distractors=30,
        painter=CuhkPainter(images),
        scale=2,
    )


def tiered_classes(images: RealImages) -> dict[str, list[int]]:
    """Characters per split, whole alphabets per split (test first, then val, then train, in a
    fixed random alphabet order), each split cut to Ren et al.'s class count."""
    by_alphabet: dict[str, list[int]] = {}
    for index, char in enumerate(images.characters):
        by_alphabet.setdefault(char.alphabet, []).append(index)
    alphabets = sorted(by_alphabet)
    order = np.random.default_rng(2018).permutation(len(alphabets)).tolist()
    queue = [alphabets[i] for i in order]
    out: dict[str, list[int]] = {}
    for split in ("test", "val", "train"):
        chosen: list[int] = []
        while len(chosen) < TIERED_SPLIT[split]:
            chosen += by_alphabet[queue.pop(0)]
        out[split] = chosen[: TIERED_SPLIT[split]]
    return out


def build_tiered(data_root: Path, images: RealImages, size: int = 84) -> Path:
    """The pkl form under ``data_root/tiered-imagenet`` (label_specific numbered across splits,
    label_general = the alphabet's index)."""
    folder = data_root / "tiered-imagenet"
    folder.mkdir(parents=True, exist_ok=True)
    alphabets = sorted({c.alphabet for c in images.characters})
    offset = photo = 0
    for split, chars in ((s, tiered_classes(images)[s]) for s in SPLITS):
        rows, labels, general = [], [], []
        for label, char in enumerate(chars):
            for drawer in range(len(images.characters[char].drawings)):
                rows.append(images.crop(char, drawer, photo, size, size))
                labels.append(label)
                general.append(alphabets.index(images.characters[char].alphabet))
                photo += 1
        write_split(
            folder, split, "pkl", np.stack(rows), np.array(labels), offset, False, np.array(general)
        )
        offset += len(chars)
    return folder


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("market", "cuhk", "tiered"):
        sys.stderr.write("usage: python tests/layouts_real.py {market,cuhk,tiered} DATA_ROOT\n")
        return 2
    images = RealImages(SHARED_DATA)
    root = Path(argv[1])
    if argv[0] == "market":
        sys.stdout.write(f"{build_market(root, images)}\n")
    elif argv[0] == "cuhk":
        build_cuhk(root, images)
    else:
        build_tiered(root, images)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
