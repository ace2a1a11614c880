from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from cirbench.data.episodes import Episodes, sample_episodes
from cirbench.eval.fewshot import (
    episode_accuracies,
    episode_accuracies_loop,
    mean_ci95,
    metric_name,
    paired_test,
)


def test_interval_is_1_96_std_over_sqrt_n() -> None:
    acc = np.array([0.5, 1.0, 0.75, 0.25])
    mean, half = mean_ci95(acc)
    assert mean == pytest.approx(0.625)
    std = math.sqrt(((acc - 0.625) ** 2).mean())  # population std, as np.std
    assert half == pytest.approx(1.96 * std / math.sqrt(4))
    assert mean_ci95(np.full(10, 0.8)) == pytest.approx((0.8, 0.0))


def test_metric_names() -> None:
    assert metric_name(5, 1) == "acc_5w1s" and metric_name(20, 5) == "acc_20w5s"


def hand_made() -> tuple[torch.Tensor, Episodes]:
    """Two ways, two shots, two queries. Way 0 support at (0, 0) and (2, 0): prototype (1, 0);
    way 1 support at (0, 4) and (0, 6): prototype (0, 5).

    Query 4 = (1, 1) is nearer (1, 0): right. Query 5 = (3, 0): right. Query 6 = (0.5, 3.5) is
    nearer (0, 5) by distance (2.5 vs 12.5): right. Query 7 = (10, 40): Euclidean says way 1
    (dist^2 81 + 1225 = 1306 vs 1681) and cosine says way 1 too: right. Query 8 = (5, 1): way 0
    by both; it is labelled way 1 in the episode below, so it is wrong.
    """
    feats = torch.tensor(
        [[0, 0], [2, 0], [0, 4], [0, 6], [1, 1], [3, 0], [0.5, 3.5], [10, 40], [5, 1]],
        dtype=torch.float64,
    )
    eps = Episodes(
        classes=np.array([[0, 1], [0, 1]]),
        support=np.array([[[0, 1], [2, 3]], [[0, 1], [2, 3]]]),
        query=np.array([[[4, 5], [6, 7]], [[4, 5], [6, 8]]]),
    )
    return feats, eps


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_prototype_classifier_on_hand_made_features(distance: str) -> None:
    feats, eps = hand_made()
    acc = episode_accuracies(feats, eps, distance)  # type: ignore[arg-type]
    assert acc.tolist() == [1.0, 0.75]
    assert episode_accuracies_loop(feats, eps, distance).tolist() == [1.0, 0.75]  # type: ignore[arg-type]


def test_euclidean_and_cosine_can_disagree() -> None:
    # prototypes (1, 0) and (10, 10); query (2, 2): nearer (1, 0), but at 45 degrees like (10, 10)
    feats = torch.tensor([[1.0, 0.0], [10.0, 10.0], [2.0, 2.0], [9.0, 9.0]], dtype=torch.float64)
    eps = Episodes(np.array([[0, 1]]), np.array([[[0], [1]]]), np.array([[[2], [3]]]))
    assert episode_accuracies(feats, eps, "euclidean").tolist() == [1.0]
    assert episode_accuracies(feats, eps, "cosine").tolist() == [0.5]


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_vectorised_equals_per_episode_loop(distance: str, monkeypatch) -> None:
    import cirbench.eval.fewshot as fewshot

    monkeypatch.setattr(fewshot, "CHUNK_FLOATS", 5000)  # several chunks
    labels = np.repeat(np.arange(30), 20)
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(30, 16, generator=gen, dtype=torch.float64).repeat_interleave(20, 0)
    feats = feats + 1.5 * torch.randn(600, 16, generator=gen, dtype=torch.float64)
    eps = sample_episodes(labels, 5, 2, 7, 120, seed=3)
    fast = episode_accuracies(feats, eps, distance)  # type: ignore[arg-type]
    slow = episode_accuracies_loop(feats, eps, distance)  # type: ignore[arg-type]
    assert np.array_equal(fast, slow)
    assert 0.3 < fast.mean() < 0.99  # neither trivial nor chance


def test_paired_test_matches_scipy_and_a_t_interval() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(0.5, 1.0, 400)
    b = np.clip(a - 0.02 + rng.normal(0, 0.05, 400), 0, 1)
    out = paired_test(a, b)
    diff = a - b
    assert out["n"] == 400 and out["mean_diff"] == pytest.approx(diff.mean())
    assert out["mean_a"] == pytest.approx(a.mean()) and out["mean_b"] == pytest.approx(b.mean())
    assert out["t_pvalue"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert out["wilcoxon_pvalue"] == pytest.approx(stats.wilcoxon(a, b).pvalue)
    half = stats.t.ppf(0.975, 399) * diff.std(ddof=1) / math.sqrt(400)
    assert out["ci95_low"] == pytest.approx(diff.mean() - half)
    assert out["ci95_high"] == pytest.approx(diff.mean() + half)
    assert out["ci95_low"] > 0 and out["t_pvalue"] < 0.05


def test_paired_test_of_identical_and_of_mismatched_sequences() -> None:
    same = paired_test([0.8, 0.9, 1.0], [0.8, 0.9, 1.0])
    assert same["mean_diff"] == 0 and same["t_pvalue"] == 1.0 and same["wilcoxon_pvalue"] == 1.0
    with pytest.raises(ValueError, match="same episodes"):
        paired_test([0.8, 0.9, 1.0], [0.8, 0.9])
