"""Re-ID evaluator peak memory at Market-1501 size, on data where the metrics are far from 1.

Data: 3,368 queries x 15,913 gallery (2,793 distractors, no junk), 2048-d float32, 750 ids over
6 cameras; features = id centre + ``NOISE`` x standard normal noise. With ``NOISE = 4`` recall@1
is about 0.46 and mAP about 0.13, so a wrong metric would show (with the noise of
``test_bench_reid_eval.market_size``, 1.5, every metric is 1.0).

In one run:

- **peak memory**: a fresh process loads the features (saved to ``.npy`` by this test), resets
  the kernel's high-water mark (``/proc/self/clear_refs``), runs
  :func:`cirbench.eval.reid.evaluate_reid` once and reads ``VmHWM`` minus the resident size
  before the call: the extra memory the evaluator needed, torch's and numpy's allocations
  included (tracemalloc would miss torch's);
- **reference**: the same distances (the evaluator's own :func:`distance_block` over the same
  256-row chunks, so the bits agree, exact ties included) ranked per query by a stable argsort,
  then same-id-same-camera removal, CMC / AP / INP, as in torchreid's ``eval_market1501``; the
  evaluator's metrics must agree;
- **ties**: how many queries have an exact float32 tie between one of their own-id gallery
  entries and another entry (the case the evaluator's stable tie rule decides).

Run: ``pytest benchmarks/test_bench_reid_memory.py -s --benchmark-json
results/benchmarks/reid-eval-memory-cpu.json`` (about a minute of CPU; Linux only).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pytest_benchmark.fixture import BenchmarkFixture

from cirbench.eval.distances import distance_block, row_sq_norms
from cirbench.eval.reid import DEFAULT_CHUNK, evaluate_reid, synthetic_reid

NUM_QUERY, NUM_GALLERY, DIM = 3368, 15913, 2048
NUM_IDS, NUM_DISTRACTORS = 750, 2793
NOISE = 4.0
KS = (1, 5, 10)


def noisy_market(seed: int = 0, noise: float = NOISE) -> dict[str, np.ndarray]:
    return synthetic_reid(NUM_QUERY, NUM_GALLERY, NUM_IDS, NUM_DISTRACTORS, DIM, noise, seed)


def chunked_distances(d: dict[str, np.ndarray]) -> np.ndarray:
    q, g = torch.from_numpy(d["qf"]), torch.from_numpy(d["gf"])
    g_sq = row_sq_norms(g)
    rows = [
        distance_block(q[s : s + DEFAULT_CHUNK], g, g_sq, "euclidean").numpy()
        for s in range(0, len(q), DEFAULT_CHUNK)
    ]
    return np.concatenate(rows)


def reference(dist: np.ndarray, d: dict[str, np.ndarray]) -> tuple[dict[str, float], int]:
    """Per-query stable argsort loop; also counts queries with an own-id exact tie."""
    firsts, aps, inps = [], [], []
    ties = 0
    for i in range(len(dist)):
        row, pid, cam = dist[i], d["q_pids"][i], d["q_cams"][i]
        own = row[d["g_pids"] == pid]
        ties += bool(np.count_nonzero(np.isin(row, own)) > len(own))
        order = np.argsort(row, kind="stable")
        keep = ~((d["g_pids"][order] == pid) & (d["g_cams"][order] == cam))
        hits = d["g_pids"][order][keep] == pid
        if not hits.any():
            continue
        ranks = np.flatnonzero(hits) + 1
        firsts.append(ranks[0])
        aps.append(np.mean(np.arange(1, len(ranks) + 1) / ranks))
        inps.append(len(ranks) / ranks[-1])
    metrics = {f"recall@{k}": float(np.mean(np.asarray(firsts) <= k)) for k in KS}
    metrics["mAP"] = float(np.mean(aps))
    metrics["mINP"] = float(np.mean(inps))
    return metrics, ties


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(folder: str) -> None:
    """Run in a fresh process: load the arrays, evaluate once, print peak extra memory."""
    arrays = {
        name: np.load(Path(folder) / f"{name}.npy")
        for name in ("qf", "gf", "q_pids", "q_cams", "g_pids", "g_cams")
    }
    torch.set_num_threads(torch.get_num_threads())  # initialise the thread pool first
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status_kib("VmRSS")
    result = evaluate_reid(
        torch.from_numpy(arrays["qf"]),
        torch.from_numpy(arrays["gf"]),
        arrays["q_pids"],
        arrays["q_cams"],
        arrays["g_pids"],
        arrays["g_cams"],
    )
    peak = _status_kib("VmHWM")
    print(json.dumps({"rss_before_kib": before, "peak_kib": peak, "metrics": result.metrics}))


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_reid_eval_peak_memory_and_metrics(benchmark: BenchmarkFixture, tmp_path: Path) -> None:
    d = noisy_market()
    for name, array in d.items():
        np.save(tmp_path / f"{name}.npy", array)
    runs = []
    for _ in range(1 if benchmark.disabled else 3):
        out = subprocess.run(
            [sys.executable, __file__, str(tmp_path)], capture_output=True, text=True, check=True
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    extra_mib = sorted((r["peak_kib"] - r["rss_before_kib"]) / 1024 for r in runs)
    got = runs[0]["metrics"]
    expected, ties = reference(chunked_distances(d), d)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-9), key
    info = {
        "queries": NUM_QUERY,
        "gallery": NUM_GALLERY,
        "dim": DIM,
        "noise": NOISE,
        "chunk_size": DEFAULT_CHUNK,
        "inputs_mib": (d["qf"].nbytes + d["gf"].nbytes) / 2**20,
        "peak_extra_mib_runs": extra_mib,
        "peak_extra_mib_median": extra_mib[len(extra_mib) // 2],
        "metrics": got,
        "reference_metrics": expected,
        "queries_with_own_id_exact_tie": ties,
        "threads": torch.get_num_threads(),
    }
    benchmark.group = "reid-eval-memory"
    benchmark.extra_info.update(info)
    print("\nreid evaluator memory at Market size:", json.dumps(info, indent=1))
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


if __name__ == "__main__":
    child(sys.argv[1])
