"""Few-shot evaluation from cached embeddings: 10,000 5-way 5-shot 15-query episodes.

2,000 cached 512-d features (100 classes x 20 images, class means plus noise). The benchmarked
call draws the episodes and scores them by nearest prototype, vectorised over episodes
(:func:`cirbench.eval.fewshot.episode_accuracies`). In the same run, the per-episode loop
(:func:`episode_accuracies_loop`) is timed on the same episodes, interleaved with the vectorised
scoring, and the ratio of medians goes to ``extra_info`` (``loop_over_vectorised``). Target: the
vectorised call under 3 s on the 2-core CPU. Run with ``pytest benchmarks/test_bench_fewshot.py``;
timings go to the benchmark report (``--benchmark-json`` keeps ``extra_info``), never to
pass/fail.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from pytest_benchmark.fixture import BenchmarkFixture

from cirbench.data.episodes import Episodes, sample_episodes
from cirbench.eval.fewshot import episode_accuracies, episode_accuracies_loop

N_CLASSES, PER_CLASS, DIM = 100, 20, 512
N_EPISODES, WAY, SHOT, QUERY = 10_000, 5, 5, 15
LOOP_ROUNDS = 3


def cached_features() -> tuple[torch.Tensor, np.ndarray]:
    gen = torch.Generator().manual_seed(0)
    means = torch.randn(N_CLASSES, DIM, generator=gen).repeat_interleave(PER_CLASS, 0)
    feats = means + 6.0 * torch.randn(N_CLASSES * PER_CLASS, DIM, generator=gen)
    return feats, np.repeat(np.arange(N_CLASSES), PER_CLASS)


def evaluate(feats: torch.Tensor, labels: np.ndarray) -> np.ndarray:
    eps = sample_episodes(labels, WAY, SHOT, QUERY, N_EPISODES, seed=0)
    return episode_accuracies(feats, eps)


def timed(fn: object, *args: object) -> float:
    start = time.perf_counter()
    fn(*args)  # type: ignore[operator]
    return time.perf_counter() - start


def test_vectorised_episodes_vs_loop(benchmark: BenchmarkFixture) -> None:
    feats, labels = cached_features()
    eps: Episodes = sample_episodes(labels, WAY, SHOT, QUERY, N_EPISODES, seed=0)
    fast, slow = [], []
    for _ in range(LOOP_ROUNDS):  # interleaved, same episodes
        fast.append(timed(episode_accuracies, feats, eps))
        slow.append(timed(episode_accuracies_loop, feats, eps))
    acc = benchmark.pedantic(evaluate, args=(feats, labels), rounds=5, iterations=1)
    assert np.array_equal(acc, episode_accuracies_loop(feats, eps))
    benchmark.extra_info.update(
        {
            "episodes": N_EPISODES,
            "shape": f"{WAY}-way {SHOT}-shot {QUERY}-query, {len(labels)} x {DIM} features",
            "vectorised_median_s": statistics.median(fast),
            "loop_median_s": statistics.median(slow),
            "loop_over_vectorised": statistics.median(slow) / statistics.median(fast),
            "mean_accuracy": float(acc.mean()),
            "threads": torch.get_num_threads(),
        }
    )
