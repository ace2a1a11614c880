"""Validation hold-outs carved out of TRAINING data only, seeded and fixed.

The test split never takes part: every function here sees training labels (or identities) and
returns positions into them. Three kinds, one per protocol family:

- :func:`stratified_holdout` (classification): ``fraction`` of the images of every class, as
  scikit-learn's ``train_test_split(..., stratify=labels)`` draws them.
- :func:`class_holdout` (few-shot, retrieval): ``fraction`` of the classes with all their
  images, so validation classes are never trained on (the few-shot and re-ID protocols test on
  unseen classes; Musgrave et al., "A Metric Learning Reality Check", ECCV 2020,
  arXiv:2003.08505, Sec. 3, hold out classes of the training set the same way).
- :func:`reid_holdout` (re-identification): a class hold-out of identities, whose images become
  one query per (identity, camera) and a gallery of the rest, as Market-1501's test query set
  holds at most one image per identity and camera.

The fractions and seeds are our own choices; they are part of what a validation record names
(its ``split`` and the config hash), so changing one changes every validation record's name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import train_test_split

from cirbench.errors import CirbenchError

VAL_SEED = 0
VAL_FRACTION = 0.2


def stratified_holdout(
    labels: np.ndarray, fraction: float = VAL_FRACTION, seed: int = VAL_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted positions ``(kept, held_out)`` into ``labels``: ``fraction`` of every class held
    out (stratified, seeded)."""
    positions = np.arange(len(labels))
    kept, held = train_test_split(positions, test_size=fraction, stratify=labels, random_state=seed)
    return np.sort(kept), np.sort(held)


def class_holdout(
    labels: np.ndarray, fraction: float = VAL_FRACTION, seed: int = VAL_SEED, minimum: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted positions ``(kept, held_out)``: every image of ``round(fraction * classes)``
    classes (at least ``minimum``, drawn with ``seed``) is held out, the other classes kept."""
    classes = np.unique(labels)
    count = max(minimum, round(fraction * len(classes)))
    if count >= len(classes):
        raise CirbenchError(
            f"a class hold-out of {count} classes needs more than the {len(classes)} training "
            "classes found; the training split is too small for a validation split"
        )
    held_classes = np.random.default_rng(seed).choice(classes, size=count, replace=False)
    held = np.isin(labels, held_classes)
    return np.flatnonzero(~held), np.flatnonzero(held)


def relabel(labels: np.ndarray) -> np.ndarray:
    """Labels mapped to 0..C-1 in the order of their values (for heads and PK samplers)."""
    _, dense = np.unique(labels, return_inverse=True)
    return dense.astype(np.int64)


@dataclass(frozen=True)
class ReidHoldout:
    """Positions into the training split: kept for training, validation query and gallery."""

    train: np.ndarray
    query: np.ndarray
    gallery: np.ndarray


def reid_holdout(
    pids: np.ndarray, cams: np.ndarray, fraction: float = VAL_FRACTION, seed: int = VAL_SEED
) -> ReidHoldout:
    """A class hold-out of identities; of each held-out identity, one image per camera (drawn
    with ``seed``) is a query and the others form the gallery."""
    kept, held = class_holdout(pids, fraction, seed)
    rng = np.random.default_rng(seed + 1)
    order = held[rng.permutation(len(held))]
    query: list[int] = []
    seen: set[tuple[int, int]] = set()
    for i in order:
        key = (int(pids[i]), int(cams[i]))
        if key not in seen:
            seen.add(key)
            query.append(int(i))
    q = np.sort(np.array(query, dtype=np.int64))
    gallery = np.setdiff1d(held, q)
    if not len(gallery):
        raise CirbenchError(
            "the held-out training identities have one image per camera only: no gallery is "
            "left for a validation split"
        )
    return ReidHoldout(kept, q, gallery)
