from __future__ import annotations

import numpy as np
import pytest

from cirbench.data.episodes import class_table, sample_episodes
from cirbench.errors import CirbenchError


def labels_with_counts(counts: list[int]) -> np.ndarray:
    return np.repeat(np.arange(len(counts)), counts)


def test_episode_shape_and_content() -> None:
    labels = labels_with_counts([20] * 30)
    eps = sample_episodes(labels, n_way=5, k_shot=3, n_query=4, n_episodes=200, seed=1)
    assert eps.classes.shape == (200, 5)
    assert eps.support.shape == (200, 5, 3) and eps.query.shape == (200, 5, 4)
    for e in range(200):
        assert len(set(eps.classes[e].tolist())) == 5  # N distinct classes
        for way in range(5):
            images = np.r_[eps.support[e, way], eps.query[e, way]]
            assert len(set(images.tolist())) == 7  # K + Q distinct images
            assert set(labels[images].tolist()) == {eps.classes[e, way]}


def test_identical_seed_identical_episodes_other_seed_other_episodes() -> None:
    labels = labels_with_counts([20] * 40)
    a = sample_episodes(labels, 5, 1, 15, 50, seed=7)
    b = sample_episodes(labels, 5, 1, 15, 50, seed=7)
    c = sample_episodes(labels, 5, 1, 15, 50, seed=8)
    for field in ("classes", "support", "query"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.support, c.support)


def test_episodes_use_only_the_given_split() -> None:
    """Indices refer to the labelled test set passed in: training classes cannot appear."""
    train = np.arange(10)  # classes 0..9 are training classes
    test_labels = labels_with_counts([20] * 12) + 100  # test classes 100..111
    eps = sample_episodes(test_labels, 5, 5, 15, 100, seed=0)
    picked = set(test_labels[np.r_[eps.support.ravel(), eps.query.ravel()]].tolist())
    assert picked <= set(range(100, 112)) and not picked & set(train.tolist())
    assert set(eps.classes.ravel().tolist()) == picked


def test_classes_with_too_few_images_are_never_picked_and_choice_is_uniform() -> None:
    labels = labels_with_counts([6, 2, 6, 6, 6, 6])  # class 1 cannot hold 1 + 5 images
    eps = sample_episodes(labels, 2, 1, 5, 3000, seed=0)
    counts = np.bincount(eps.classes.ravel(), minlength=6)
    assert counts[1] == 0
    expected = 3000 * 2 / 5
    assert np.all(np.abs(counts[[0, 2, 3, 4, 5]] - expected) < 0.1 * expected)
    # every image of a class is used as support about equally often (uniform split)
    support_counts = np.bincount(eps.support.ravel(), minlength=len(labels))[:6]
    assert np.all(np.abs(support_counts - support_counts.mean()) < 0.2 * support_counts.mean())


def test_class_table_lists_each_class_images() -> None:
    labels = np.array([3, 1, 3, 2, 1, 3])
    classes, counts, table = class_table(labels)
    assert classes.tolist() == [1, 2, 3] and counts.tolist() == [2, 1, 3]
    assert table.tolist() == [[1, 4, -1], [3, -1, -1], [0, 2, 5]]


@pytest.mark.parametrize(
    ("way", "shot", "query", "message"),
    [
        (21, 1, 5, "need 21 test classes"),
        (5, 10, 15, "at least 25 images each"),
        (0, 1, 5, "all must be >= 1"),
    ],
)
def test_impossible_episodes_are_user_errors(way: int, shot: int, query: int, message: str) -> None:
    labels = labels_with_counts([20] * 20)
    with pytest.raises(CirbenchError, match=message):
        sample_episodes(labels, way, shot, query, 10, seed=0)
