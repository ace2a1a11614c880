"""Re-ID evaluator at Market-1501 size: 3,368 queries x 15,913 gallery, 2048-d float32.

Three things are timed in the same run, on the same random features with Market structure
(750 ids over 6 cameras, 2,793 distractors):

- ``fast``: :func:`cirbench.eval.reid.evaluate_reid` (chunks of 256 queries);
- ``floor``: the unavoidable work: one full (Q, G) distance matrix (one matmul) plus one
  row-wise sort of it (``np.sort``, values only: the cheapest row-wise sort available here);
- ``loop``: a straightforward per-query loop: per query, its distance row (a matrix-vector
  product), a stable argsort, same-id-same-camera removal, CMC / AP / INP. It is linear in the
  number of queries, so it is timed on ``LOOP_QUERIES`` queries and scaled to 3,368
  (``loop_scaled_s``). ``loop_on_matrix_s`` is the torchreid-style variant (the full distance
  matrix first, then the per-query loop over its rows), for reference.

``fast`` and ``floor`` are interleaved (medians of ``ROUNDS``); ratios go to ``extra_info``
and are printed. Run: ``pytest benchmarks/test_bench_reid_eval.py -s``. Timings never decide
pass/fail.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import pytest
import torch
from pytest_benchmark.fixture import BenchmarkFixture

from cirbench.eval.reid import DEFAULT_CHUNK, evaluate_reid, synthetic_reid

NUM_QUERY, NUM_GALLERY, DIM = 3368, 15913, 2048
NUM_IDS, NUM_DISTRACTORS = 750, 2793
ROUNDS = 3
LOOP_QUERIES = 200


def market_size(seed: int = 0) -> dict[str, np.ndarray]:
    """Market-size data; queries may share a camera with their matches (the camera rule is
    exercised), noise 1.5."""
    return synthetic_reid(
        NUM_QUERY, NUM_GALLERY, NUM_IDS, NUM_DISTRACTORS, DIM, 1.5, seed, other_camera=False
    )


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    return market_size()


def fast(d: dict[str, np.ndarray]) -> dict[str, float]:
    return evaluate_reid(
        torch.from_numpy(d["qf"]),
        torch.from_numpy(d["gf"]),
        d["q_pids"],
        d["q_cams"],
        d["g_pids"],
        d["g_cams"],
    ).metrics


def distance_matrix(d: dict[str, np.ndarray]) -> np.ndarray:
    q, g = torch.from_numpy(d["qf"]), torch.from_numpy(d["gf"])
    g_sq = g.pow(2).sum(dim=1)
    q_sq = q.pow(2).sum(dim=1, keepdim=True)
    return torch.addmm(g_sq.unsqueeze(0), q, g.T, alpha=-2.0).add_(q_sq).numpy()


def floor(d: dict[str, np.ndarray]) -> float:
    return float(np.sort(distance_matrix(d), axis=1)[0, 0])


def rank_one_query(
    row: np.ndarray, pid: int, cam: int, g_pids: np.ndarray, g_cams: np.ndarray
) -> tuple[float, float, float] | None:
    order = np.argsort(row, kind="stable")
    keep = ~((g_pids[order] == pid) & (g_cams[order] == cam))
    hits = g_pids[order][keep] == pid
    if not hits.any():
        return None
    ranks = np.flatnonzero(hits) + 1
    return ranks[0], float(np.mean(np.arange(1, len(ranks) + 1) / ranks)), len(ranks) / ranks[-1]


def loop(d: dict[str, np.ndarray], n: int) -> None:
    gf = d["gf"]
    g_sq = np.einsum("ij,ij->i", gf, gf)
    for i in range(n):
        q = d["qf"][i]
        row = g_sq - 2.0 * (gf @ q) + q @ q
        rank_one_query(row, d["q_pids"][i], d["q_cams"][i], d["g_pids"], d["g_cams"])


def loop_on_rows(dist: np.ndarray, d: dict[str, np.ndarray], n: int) -> None:
    for i in range(n):
        rank_one_query(dist[i], d["q_pids"][i], d["q_cams"][i], d["g_pids"], d["g_cams"])


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def test_reid_eval_fast(benchmark: BenchmarkFixture, data: dict[str, np.ndarray]) -> None:
    benchmark.group = "reid-eval"
    metrics = benchmark.pedantic(fast, args=(data,), rounds=ROUNDS, iterations=1)
    assert 0.0 < metrics["mAP"] <= 1.0


def test_reid_eval_floor(benchmark: BenchmarkFixture, data: dict[str, np.ndarray]) -> None:
    benchmark.group = "reid-eval"
    benchmark.pedantic(floor, args=(data,), rounds=ROUNDS, iterations=1)


def test_reid_eval_ratios(benchmark: BenchmarkFixture, data: dict[str, np.ndarray]) -> None:
    """Interleaved medians of fast and floor; the per-query loop on a subset, scaled."""
    rounds = 1 if benchmark.disabled else ROUNDS
    t_fast: list[float] = []
    t_floor: list[float] = []
    for i in range(rounds):
        pair = [("fast", lambda: fast(data)), ("floor", lambda: floor(data))]
        for name, fn in pair if i % 2 == 0 else pair[::-1]:
            (t_fast if name == "fast" else t_floor).append(seconds(fn))
    fast_s, floor_s = statistics.median(t_fast), statistics.median(t_floor)
    n = LOOP_QUERIES if not benchmark.disabled else 20
    loop_s = seconds(lambda: loop(data, n)) * NUM_QUERY / n
    matrix_s = seconds(lambda: distance_matrix(data))
    dist = distance_matrix(data)
    rows_s = seconds(lambda: loop_on_rows(dist, data, n)) * NUM_QUERY / n
    info = {
        "queries": NUM_QUERY,
        "gallery": NUM_GALLERY,
        "dim": DIM,
        "chunk_size": DEFAULT_CHUNK,
        "peak_chunk_mb": 2 * DEFAULT_CHUNK * NUM_GALLERY * 4 / 2**20,
        "full_matrix_mb": NUM_QUERY * NUM_GALLERY * 4 / 2**20,
        "threads": torch.get_num_threads(),
        "rounds": rounds,
        "fast_median_s": fast_s,
        "floor_median_s": floor_s,
        "ratio_to_floor": fast_s / floor_s,
        "loop_queries_timed": n,
        "loop_scaled_s": loop_s,
        "speedup_over_loop": loop_s / fast_s,
        "loop_on_matrix_s": matrix_s + rows_s,
        "speedup_over_loop_on_matrix": (matrix_s + rows_s) / fast_s,
    }
    benchmark.group = "reid-eval-ratios"
    benchmark.extra_info.update(info)
    print(
        "\nreid evaluator at Market size:",
        {k: round(v, 3) if isinstance(v, float) else v for k, v in info.items()},
    )
    benchmark.pedantic(fast, args=(data,), rounds=1, iterations=1)
