"""N-way K-shot Q-query episodes, drawn all at once from a fixed seed.

An episode picks ``n_way`` distinct classes uniformly, then for each of them ``k_shot + n_query``
distinct images uniformly without replacement: the first ``k_shot`` are the support set, the rest
the queries. All episodes of one call come from ``numpy.random.default_rng(seed)`` and depend
only on the labels, the seed and the shape, never on a model: every method evaluated with the
same seed is scored on the very same episodes (Ren et al. 2018 and Lee et al. 2019 note that the
number of episodes moves results by points, so it and the seed belong to the protocol).

Vectorised: class choice by ``argpartition`` of one uniform key per (episode, class), image
choice by ``argpartition`` of one uniform key per (episode, way, image slot), with slots beyond a
class's image count keyed +inf; the chosen images are put in key order, so which of them are
support and which are queries is uniform too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cirbench.errors import CirbenchError


@dataclass(frozen=True)
class Episodes:
    """Indices into the labelled set: ``support`` (E, N, K), ``query`` (E, N, Q); ``classes``
    (E, N) the label of each way (way j of episode e is class ``classes[e, j]``)."""

    classes: np.ndarray
    support: np.ndarray
    query: np.ndarray

    @property
    def n_episodes(self) -> int:
        return int(self.classes.shape[0])


def class_table(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(class ids (C,), per-class counts (C,), index table (C, M) padded with -1)."""
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(labels)) - starts[inverse[order]]
    table = np.full((len(classes), int(counts.max())), -1, dtype=np.int64)
    table[inverse[order], rank] = order
    return classes, counts, table


def check_episode_shape(labels: np.ndarray, n_way: int, k_shot: int, n_query: int) -> None:
    """Raise a CirbenchError when ``labels`` cannot give such episodes."""
    if n_way < 1 or k_shot < 1 or n_query < 1:
        raise CirbenchError(
            f"bad episode shape {n_way}-way {k_shot}-shot {n_query}-query: all must be >= 1"
        )
    classes, counts = np.unique(labels, return_counts=True)
    need = k_shot + n_query
    usable = int((counts >= need).sum())
    if n_way > usable:
        raise CirbenchError(
            f"{n_way}-way {k_shot}-shot episodes with {n_query} queries need {n_way} test classes "
            f"with at least {need} images each; the test split has {usable} such classes "
            f"(of {len(classes)}). Lower the number of ways, shots or queries."
        )


def sample_episodes(
    labels: np.ndarray, n_way: int, k_shot: int, n_query: int, n_episodes: int, seed: int
) -> Episodes:
    """``n_episodes`` episodes over ``labels`` (N,) drawn from ``seed``; see the module doc.

    Classes with fewer than ``k_shot + n_query`` images are never picked.
    """
    check_episode_shape(labels, n_way, k_shot, n_query)
    if n_episodes < 1:
        raise CirbenchError(f"the number of episodes must be >= 1, got {n_episodes}")
    rng = np.random.default_rng(seed)
    classes, counts, table = class_table(np.asarray(labels))
    need = k_shot + n_query
    keep = np.flatnonzero(counts >= need)
    keys = rng.random((n_episodes, len(keep)))
    picked = keep[np.argpartition(keys, n_way - 1, axis=1)[:, :n_way]]  # (E, N) rows of table
    slots = rng.random((n_episodes, n_way, table.shape[1]))
    slots[np.arange(table.shape[1]) >= counts[picked][..., None]] = np.inf
    chosen = np.argpartition(slots, need - 1, axis=2)[..., :need]  # the K+Q smallest keys
    by_key = np.argsort(np.take_along_axis(slots, chosen, axis=2), axis=2)
    chosen = np.take_along_axis(chosen, by_key, axis=2)  # in key order: a uniform split
    index = np.take_along_axis(table[picked], chosen, axis=2)
    return Episodes(classes[picked], index[..., :k_shot], index[..., k_shot:])
