"""A tiny CUHK-SYSU tree in the release's exact layout, for reader, task and CLI tests.

Writes ``Image/SSM/*.jpg`` and the ``annotation/`` .mat files with the nested MATLAB structure of
the release (see cirbench/data/cuhk_sysu.py): ``Img`` (1, N) struct with a nested ``box`` struct,
``pool`` (M, 1) cell, ``Train`` (K, 1) cell of (1, 1) structs with a nested ``scene`` struct,
``TestG{G}`` (1, Q) struct with ``Query`` (1, 1) and ``Gallery`` (1, G) structs (empty
``idlocate`` (1, 0) for a distractor). Box coordinates are uint16 as in the release.

People are drawn as two-colour rectangles; an identity's colours are fixed, so a model can learn
them. All content is deterministic. ``painter`` replaces the drawing (tests/layouts_real.py passes
real handwriting on real photographs), ``scale`` multiplies every coordinate and the scene size,
and ``n_distractors`` sets the distractor scenes that every query's gallery holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

WIDTH, HEIGHT = 128, 96
PERSON_W, PERSON_H = 18, 40
SLOTS = (6, 40, 74, 104)  # x positions of people in a scene
Person = tuple[int, int, int, int, str]  # x, y, w, h, drawn name
#: (scene index, scene width, scene height, its people) -> (height, width, 3) uint8 pixels.
Painter = Callable[[int, int, int, list[Person]], np.ndarray]


@dataclass
class CuhkFixture:
    root: Path
    train_images: list[str]
    pool: list[str]
    num_identities: int
    dropped_boxes: int
    # per image: list of (x, y, w, h, identity name or None) of valid boxes, in file order
    people: dict[str, list[tuple[int, int, int, int, str | None]]] = field(default_factory=dict)
    # per query: (query image, query box xywh, [(gallery image, box xywh or None), ...])
    queries: list[tuple[str, tuple[int, int, int, int], list[tuple[str, tuple | None]]]] = field(
        default_factory=list
    )
    # per image: (x, y, w, h, name) of every valid box with its drawn name (u*/b*/d* unlabeled)
    who: dict[str, list[tuple[int, int, int, int, str]]] = field(default_factory=dict)


def _colours(name: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    seed = sum(ord(c) * 31**i for i, c in enumerate(name)) % (2**31)
    rng = np.random.RandomState(seed)
    top = tuple(int(v) for v in rng.randint(30, 226, size=3))
    bottom = tuple(int(v) for v in rng.randint(30, 226, size=3))
    return top, bottom  # type: ignore[return-value]


def colour_scene(seed: int, width: int, height: int, people: list[Person]) -> np.ndarray:
    """The default painter: grey noise with two-colour rectangles, one colour pair per name."""
    rng = np.random.RandomState(seed)
    img = rng.randint(100, 140, size=(height, width, 3)).astype(np.uint8)
    for x, y, w, h, name in people:
        if w <= 0 or h <= 0:
            continue
        top, bottom = _colours(name)
        img[y : y + h // 2, x : x + w] = top
        img[y + h // 2 : y + h, x : x + w] = bottom
    return img


def _box_struct(boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    arr = np.empty((1, len(boxes)), dtype=[("idlocate", "O"), ("ishard", "O")])
    for j, box in enumerate(boxes):
        arr[0, j] = (np.array([box], dtype=np.uint16), np.array([[0]], dtype=np.uint8))
    return arr


def _scene_struct(items: list[tuple[str, tuple[int, int, int, int] | None]]) -> np.ndarray:
    arr = np.empty((1, len(items)), dtype=[("imname", "O"), ("idlocate", "O"), ("ishard", "O")])
    for j, (name, box) in enumerate(items):
        loc = np.zeros((1, 0)) if box is None else np.array([box], dtype=np.uint16)
        arr[0, j] = (name, loc, np.array([[0]], dtype=np.uint8))
    return arr


def _query_struct(name: str, box: tuple[int, int, int, int], idname: str) -> np.ndarray:
    dt = [("imname", "O"), ("idlocate", "O"), ("ishard", "O"), ("idname", "O")]
    arr = np.empty((1, 1), dtype=dt)
    arr[0, 0] = (name, np.array([box], dtype=np.uint16), np.array([[0]], dtype=np.uint8), idname)
    return arr


def _layout(n_train: int, n_ids: int, n_test_ids: int, n_distractors: int) -> dict[str, list]:
    """Who stands where: train scenes with labeled ids, unlabeled people and invalid boxes;
    test scenes: per test identity one query scene and two gallery scenes, plus distractors."""
    rng = np.random.RandomState(0)
    scenes: dict[str, list] = {}
    for i in range(n_train):
        ids = [f"p{(i + k) % n_ids + 1}" for k in (0, 1)]
        slots = rng.permutation(len(SLOTS))[:3]
        people = [
            (SLOTS[s], int(rng.randint(4, HEIGHT - PERSON_H - 4)), PERSON_W, PERSON_H, who)
            for s, who in zip(slots, [*ids, f"u{i}"], strict=True)
        ]
        if i % 4 == 0:  # an invalid (zero-width) box, dropped by the reader
            people.append((60, 10, 0, PERSON_H, f"x{i}"))
        scenes[f"s{i + 1}.jpg"] = people
    for t in range(n_test_ids):
        for k in range(3):  # k = 0: query scene, 1 and 2: gallery scenes with the target
            other = f"b{t}_{k}"
            scenes[f"s{100 + 3 * t + k}.jpg"] = [
                (SLOTS[(t + k) % 4], 20 + 4 * k, PERSON_W, PERSON_H, f"t{t + 1}"),
                (SLOTS[(t + k + 2) % 4], 30, PERSON_W, PERSON_H, other),
            ]
    for d in range(n_distractors):  # distractor scenes: nobody of the test identities
        scenes[f"s{200 + d}.jpg"] = [(SLOTS[d % 4], 25, PERSON_W, PERSON_H, f"d{d}")]
    return scenes


def write_cuhk_fixture(
    root: Path,
    n_train: int = 12,
    n_ids: int = 6,
    n_test_ids: int = 3,
    sizes: tuple = (50, 100),
    n_distractors: int = 2,
    painter: Painter = colour_scene,
    scale: int = 1,
) -> CuhkFixture:
    """Write the tree under ``root`` (the dataset folder, i.e. ``<data root>/cuhk_sysu``).
    Scene names encode the split (s1..s99 train, s100.. test), hence n_train < 100,
    n_test_ids <= 33 and n_distractors <= 100."""
    assert n_train < 100 and n_test_ids <= 33 and n_distractors <= 100
    images = root / "Image" / "SSM"
    images.mkdir(parents=True, exist_ok=True)
    (root / "annotation" / "test" / "train_test").mkdir(parents=True, exist_ok=True)
    scenes = {
        name: [(x * scale, y * scale, w * scale, h * scale, who) for x, y, w, h, who in people]
        for name, people in _layout(n_train, n_ids, n_test_ids, n_distractors).items()
    }
    for k, (name, people) in enumerate(scenes.items()):
        pixels = painter(k, WIDTH * scale, HEIGHT * scale, people)
        Image.fromarray(pixels).save(images / name, quality=95)
    names = list(scenes)
    train_names = [n for n in names if int(n[1:-4]) < 100]
    pool = [n for n in names if int(n[1:-4]) >= 100]

    img = np.empty((1, len(names)), dtype=[("imname", "O"), ("nAppear", "O"), ("box", "O")])
    for i, name in enumerate(names):
        boxes = [p[:4] for p in scenes[name]]
        img[0, i] = (name, np.array([[len(boxes)]], dtype=np.float64), _box_struct(boxes))
    scipy.io.savemat(root / "annotation" / "Images.mat", {"Img": img})

    cell = np.empty((len(pool), 1), dtype=object)
    for i, name in enumerate(pool):
        cell[i, 0] = name
    scipy.io.savemat(root / "annotation" / "pool.mat", {"pool": cell})

    train = np.empty((n_ids, 1), dtype=object)
    for p in range(n_ids):
        idname = f"p{p + 1}"
        items = [
            (n, person[:4]) for n in train_names for person in scenes[n] if person[4] == idname
        ]
        st = np.empty((1, 1), dtype=[("idname", "O"), ("nAppear", "O"), ("scene", "O")])
        st[0, 0] = (idname, np.array([[len(items)]], dtype=np.float64), _scene_struct(items))
        train[p, 0] = st
    scipy.io.savemat(root / "annotation/test/train_test/Train.mat", {"Train": train})

    queries = []
    for t in range(n_test_ids):
        target = f"t{t + 1}"
        q_name = f"s{100 + 3 * t}.jpg"
        q_box = next(p[:4] for p in scenes[q_name] if p[4] == target)
        gallery: list[tuple[str, tuple | None]] = []
        for k in (1, 2):
            g = f"s{100 + 3 * t + k}.jpg"
            gallery.append((g, next(p[:4] for p in scenes[g] if p[4] == target)))
        gallery += [(f"s{200 + d}.jpg", None) for d in range(n_distractors)]
        other = f"s{100 + 3 * ((t + 1) % n_test_ids)}.jpg"  # another query's scene
        gallery.append((other, None))
        queries.append((q_name, q_box, gallery))
    for size in sizes:
        protoc = np.empty((1, len(queries)), dtype=[("Query", "O"), ("Gallery", "O")])
        for i, (q_name, q_box, gallery) in enumerate(queries):
            protoc[0, i] = (_query_struct(q_name, q_box, f"t{i + 1}"), _scene_struct(gallery))
        scipy.io.savemat(
            root / f"annotation/test/train_test/TestG{size}.mat", {f"TestG{size}": protoc}
        )

    people = {n: [p for p in scenes[n] if p[2] > 0 and p[3] > 0] for n in names}
    who = {n: list(ps) for n, ps in people.items()}
    labeled = {f"p{p + 1}" for p in range(n_ids)}
    people = {
        n: [(*p[:4], p[4] if p[4] in labeled else None) for p in ps] for n, ps in people.items()
    }
    dropped = sum(1 for ps in scenes.values() for p in ps if p[2] <= 0 or p[3] <= 0)
    return CuhkFixture(root, train_names, pool, n_ids, dropped, people, queries, who)
