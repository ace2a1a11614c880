"""Person search evaluator at CUHK-SYSU size: 2,900 queries, gallery 100, 6,978 test images with
10 detections each (256-d features, scores uniform in [0.3, 1], so about 71% pass the 0.5
threshold), 1 to 4 gallery images holding the target per query. Also the detection metrics over
the 6,978 images and, side by side in one process, a per-item loop in the structure of SeqNet's
eval_search_cuhk (sklearn AP per query) on every 10th query as the baseline.

Run with ``pytest benchmarks/test_bench_person_search.py``; timings go to the benchmark report,
never to pass/fail.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture
from sklearn.metrics import average_precision_score

from cirbench.data.cuhk_sysu import GalleryItem, SearchQuery
from cirbench.eval.person_search import Detections, box_iou, detection_metrics, search_metrics

N_IMAGES, N_QUERIES, GALLERY, DETS, DIM = 6978, 2900, 100, 10, 256


@dataclass
class Synthetic:
    queries: list[SearchQuery]
    query_features: np.ndarray
    detections: dict[str, Detections]
    ground_truth: dict[str, np.ndarray]


@pytest.fixture(scope="module")
def synthetic() -> Synthetic:
    rng = np.random.default_rng(0)
    names = [f"s{i}.jpg" for i in range(N_IMAGES)]
    gt, detections = {}, {}
    for name in names:
        corners = rng.uniform(0, 600, size=(6, 2))
        boxes = np.c_[corners, corners + rng.uniform(20, 200, size=(6, 2))].astype(np.float32)
        gt[name] = boxes
        found = boxes[rng.permutation(6)[:4]] + rng.normal(0, 3, size=(4, 4)).astype(np.float32)
        noise = np.c_[corners[: DETS - 4], corners[: DETS - 4] + 60].astype(np.float32) + 300
        feats = rng.normal(size=(DETS, DIM)).astype(np.float32)
        feats /= np.linalg.norm(feats, axis=1, keepdims=True)
        scores = rng.uniform(0.3, 1.0, size=DETS).astype(np.float32)
        detections[name] = Detections(np.r_[found, noise], scores, feats)
    queries, qfeats = [], rng.normal(size=(N_QUERIES, DIM)).astype(np.float32)
    qfeats /= np.linalg.norm(qfeats, axis=1, keepdims=True)
    for _ in range(N_QUERIES):
        picks = rng.choice(N_IMAGES, size=GALLERY + 1, replace=False)
        n_pos = int(rng.integers(1, 5))
        items = tuple(
            GalleryItem(names[i], gt[names[i]][0] if k < n_pos else None)
            for k, i in enumerate(picks[1:])
        )
        queries.append(SearchQuery(names[picks[0]], gt[names[picks[0]]][0], items))
    return Synthetic(queries, qfeats, detections, gt)


def literal_loop(data: Synthetic, queries: range) -> float:
    """Per gallery item, per detection, sklearn AP per query (SeqNet's structure)."""
    kept = {}
    for name, det in data.detections.items():
        m = det.scores >= 0.5
        if m.any():
            kept[name] = (det.boxes[m], det.features[m])
    aps = []
    for i in queries:
        q, fq = data.queries[i], data.query_features[i]
        y_true, y_score, count_gt, count_tp = [], [], 0, 0
        for item in q.gallery:
            count_gt += item.box is not None
            if item.image not in kept:
                continue
            boxes, feats = kept[item.image]
            sim = feats @ fq
            label = np.zeros(len(sim), dtype=int)
            if item.box is not None:
                w, h = item.box[2] - item.box[0], item.box[3] - item.box[1]
                thr = min(0.5, w * h / ((w + 10) * (h + 10)))
                order = np.argsort(sim, kind="stable")[::-1]
                sim, boxes = sim[order], boxes[order]
                for j in range(len(sim)):
                    if box_iou(item.box, boxes[j : j + 1])[0] >= thr:
                        label[j] = 1
                        count_tp += 1
                        break
            y_true.extend(label)
            y_score.extend(sim)
        rate = count_tp / count_gt
        aps.append(0 if count_tp == 0 else average_precision_score(y_true, y_score) * rate)
    return float(np.mean(aps))


def test_bench_search_metrics_cuhk_size(benchmark: BenchmarkFixture, synthetic: Synthetic) -> None:
    result = benchmark.pedantic(
        search_metrics,
        args=(synthetic.queries, synthetic.query_features, synthetic.detections),
        rounds=3,
        iterations=1,
    )
    # the same 290 queries, ours vs the literal loop, timed side by side (medians of 3)
    subset = range(0, N_QUERIES, 10)
    ours_t, loop_t = [], []
    for _ in range(3):
        start = time.perf_counter()
        ours = search_metrics(
            [synthetic.queries[i] for i in subset],
            synthetic.query_features[list(subset)],
            synthetic.detections,
        )
        ours_t.append(time.perf_counter() - start)
        start = time.perf_counter()
        ref = literal_loop(synthetic, subset)
        loop_t.append(time.perf_counter() - start)
    assert ours.metrics["mAP"] == pytest.approx(ref, abs=1e-9)
    benchmark.extra_info.update(
        {
            "queries": N_QUERIES,
            "gallery": GALLERY,
            "detections_per_image": DETS,
            "mAP": result.metrics["mAP"],
            "subset_ours_s": float(np.median(ours_t)),
            "subset_literal_loop_s": float(np.median(loop_t)),
            "speedup_vs_literal_loop": float(np.median(loop_t) / np.median(ours_t)),
        }
    )


def test_bench_detection_metrics_cuhk_size(
    benchmark: BenchmarkFixture, synthetic: Synthetic
) -> None:
    result = benchmark.pedantic(
        detection_metrics, args=(synthetic.ground_truth, synthetic.detections), rounds=3
    )
    assert 0.0 < result["det_recall"] <= 1.0
    benchmark.extra_info.update({"images": N_IMAGES, **result})
