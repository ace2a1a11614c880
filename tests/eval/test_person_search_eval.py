"""CUHK-SYSU search and detection metrics on hand-computed cases, and against a literal loop
that follows SeqNet's eval_search_cuhk with sklearn's average_precision_score."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from cirbench.data.cuhk_sysu import GalleryItem, SearchQuery
from cirbench.eval.person_search import (
    Detections,
    average_precision,
    box_iou,
    detection_metrics,
    search_metrics,
)

TARGET = np.array([0.0, 0.0, 50.0, 100.0], dtype=np.float32)  # w 50, h 100: IoU thresh 0.5
FAR = np.array([200.0, 0.0, 250.0, 100.0])


def unit(angle: float) -> np.ndarray:
    """A 2-d unit feature whose dot product with the query (1, 0) is cos(angle)."""
    return np.array([np.cos(angle), np.sin(angle)])


def dets(*items: tuple[np.ndarray, float, float]) -> Detections:
    """(box, similarity to the query, detection score) per detection."""
    boxes = np.array([b for b, _, _ in items], dtype=np.float32).reshape(-1, 4)
    feats = np.array([unit(np.arccos(s)) for _, s, _ in items]).reshape(-1, 2)
    scores = np.array([c for _, _, c in items])
    return Detections(boxes, scores, feats)


def query(gallery: list[tuple[str, np.ndarray | None]], image: str = "q.jpg") -> SearchQuery:
    return SearchQuery(image, TARGET, tuple(GalleryItem(n, b) for n, b in gallery))


QF = np.array([[1.0, 0.0]])


def test_box_iou_by_hand() -> None:
    a = np.array([0.0, 0.0, 10.0, 10.0])
    got = box_iou(a, np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 5]]))
    np.testing.assert_allclose(got, [1.0, 50 / 150, 0.0, 0.5])


def test_average_precision_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 40))
        score = rng.integers(0, 6, size=n).astype(float)  # many ties
        true = rng.random(n) < 0.3
        true[rng.integers(n)] = True
        assert average_precision(true, score) == pytest.approx(
            average_precision_score(true, score), abs=1e-12
        )


def test_missed_detection_and_distractor_by_hand() -> None:
    # g1 holds the target: its matching detection has similarity 0.6, another person 0.95;
    # g2 is a distractor image (0.8, 0.2); g3 holds the target but nothing overlaps it (0.7).
    detections = {
        "g1.jpg": dets((TARGET, 0.6, 0.9), (FAR, 0.95, 0.9)),
        "g2.jpg": dets((TARGET, 0.8, 0.9), (FAR, 0.2, 0.9)),
        "g3.jpg": dets((FAR, 0.7, 0.9)),
    }
    q = query([("g1.jpg", TARGET), ("g2.jpg", None), ("g3.jpg", TARGET)])
    res = search_metrics([q], QF, detections)
    # ranking 0.95 F, 0.8 F, 0.7 F, 0.6 T, 0.2 F: AP = 1/4; recall 1/2 -> 0.125
    assert res.metrics["mAP"] == pytest.approx(0.125)
    assert (res.metrics["top1"], res.metrics["top5"], res.metrics["top10"]) == (0.0, 1.0, 1.0)


def test_detection_below_threshold_is_dropped() -> None:
    detections = {"g1.jpg": dets((TARGET, 0.9, 0.49), (FAR, 0.1, 0.9))}
    res = search_metrics([query([("g1.jpg", TARGET)])], QF, detections)
    assert res.metrics["mAP"] == 0.0 and res.metrics["top10"] == 0.0
    res = search_metrics([query([("g1.jpg", TARGET)])], QF, detections, det_thresh=0.4)
    assert res.metrics["mAP"] == 1.0 and res.metrics["top1"] == 1.0


def test_small_box_uses_the_lower_iou_threshold() -> None:
    small = np.array([0.0, 0.0, 10.0, 20.0], dtype=np.float32)  # thresh 200/(20*30) = 1/3
    part = np.array([0.0, 0.0, 10.0, 8.0])  # IoU 80/200 = 0.4
    q = SearchQuery("q.jpg", small, (GalleryItem("g.jpg", small),))
    res = search_metrics([q], QF, {"g.jpg": dets((part, 0.9, 0.9))})
    assert res.metrics["mAP"] == 1.0
    big = np.array([0.0, 0.0, 100.0, 200.0], dtype=np.float32)  # thresh min(0.5, 0.866)
    big_part = np.array([0.0, 0.0, 100.0, 80.0])  # IoU 0.4 < 0.5
    q = SearchQuery("q.jpg", big, (GalleryItem("g.jpg", big),))
    res = search_metrics([q], QF, {"g.jpg": dets((big_part, 0.9, 0.9))})
    assert res.metrics["mAP"] == 0.0


def test_only_the_most_similar_matching_detection_is_positive() -> None:
    shifted = TARGET + np.array([2.0, 0.0, 2.0, 0.0])  # IoU 48*100/(52*100) > 0.5
    detections = {"g1.jpg": dets((FAR, 0.99, 0.9), (shifted, 0.7, 0.9), (TARGET, 0.6, 0.9))}
    res = search_metrics([query([("g1.jpg", TARGET)])], QF, detections)
    # ranking 0.99 F, 0.7 T, 0.6 F (the exact box is a negative): AP = 1/2
    assert res.metrics["mAP"] == pytest.approx(0.5)
    assert res.metrics["top1"] == 0.0 and res.metrics["top5"] == 1.0


def test_ties_are_broken_as_reversed_stable_sort() -> None:
    detections = {"g1.jpg": dets((TARGET, 0.5, 0.9)), "g2.jpg": dets((TARGET, 0.5, 0.9))}
    # items in gallery order T (g1), F (g2): the later (F) ranks first
    res = search_metrics([query([("g1.jpg", TARGET), ("g2.jpg", None)])], QF, detections)
    assert res.metrics["top1"] == 0.0
    assert res.metrics["mAP"] == pytest.approx(0.5)  # one threshold: precision 1/2
    res = search_metrics([query([("g2.jpg", None), ("g1.jpg", TARGET)])], QF, detections)
    assert res.metrics["top1"] == 1.0
    assert res.metrics["mAP"] == pytest.approx(0.5)


def test_full_gallery_adds_the_rest_of_the_pool_once() -> None:
    detections = {
        "q.jpg": dets((FAR, 0.99, 0.9)),  # the query image itself: never scored
        "g1.jpg": dets((TARGET, 0.6, 0.9)),
        "p1.jpg": dets((FAR, 0.7, 0.9)),
        "p2.jpg": dets((FAR, 0.5, 0.9)),
    }
    q = query([("g1.jpg", TARGET)])
    assert search_metrics([q], QF, detections).metrics["mAP"] == 1.0
    pool = ["q.jpg", "g1.jpg", "p1.jpg", "p2.jpg"]
    res = search_metrics([q], QF, detections, full_gallery=pool)
    assert res.metrics["mAP"] == pytest.approx(0.5)  # 0.7 F, 0.6 T, 0.5 F
    assert res.metrics["top1"] == 0.0 and res.metrics["top5"] == 1.0


def test_no_detection_at_all_scores_zero() -> None:
    res = search_metrics([query([("g1.jpg", TARGET)])], QF, {})
    assert res.metrics == {"mAP": 0.0, "top1": 0.0, "top5": 0.0, "top10": 0.0}


def seqnet_loop(queries, qfeats, detections, thresh=0.5):
    """A literal per-item loop in the structure of SeqNet's eval_search_cuhk (our words)."""
    kept = {}
    for name, d in detections.items():
        m = d.scores >= thresh
        if m.any():
            kept[name] = (d.boxes[m], d.features[m])
    aps, accs = [], []
    for q, fq in zip(queries, qfeats, strict=True):
        y_true, y_score, count_gt, count_tp, done = [], [], 0, 0, set()
        for item in q.gallery:
            count_gt += item.box is not None
            if item.image not in kept or item.image in done:
                continue
            done.add(item.image)
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
        order = np.argsort(np.array(y_score), kind="stable")[::-1]
        ranked = np.array(y_true)[order]
        accs.append([min(1, ranked[:k].sum()) for k in (1, 5, 10)])
    return np.mean(aps), np.mean(accs, axis=0)


def test_matches_a_literal_loop_on_random_data() -> None:
    rng = np.random.default_rng(1)
    names = [f"g{i}.jpg" for i in range(30)]
    people = {n: rng.uniform(0, 300, size=(4, 2)) for n in names}
    gt = {n: np.c_[p, p + rng.uniform(8, 80, size=(4, 2))] for n, p in people.items()}
    detections = {}
    for n in names:
        boxes = np.r_[gt[n] + rng.normal(0, 4, size=(4, 4)), rng.uniform(0, 300, size=(3, 4))]
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        feats = rng.normal(size=(7, 8))
        feats /= np.linalg.norm(feats, axis=1, keepdims=True)
        detections[n] = Detections(boxes, rng.uniform(0.2, 1.0, size=7), feats)
    queries, qfeats = [], []
    for _ in range(40):
        gal = rng.choice(names, size=10, replace=False)
        items = [
            GalleryItem(n, gt[n][rng.integers(4)] if k < 3 else None) for k, n in enumerate(gal)
        ]
        queries.append(SearchQuery("q.jpg", gt[gal[0]][0], tuple(items)))
        f = rng.normal(size=8)
        qfeats.append(f / np.linalg.norm(f))
    res = search_metrics(queries, np.array(qfeats), detections)
    m_ap, accs = seqnet_loop(queries, qfeats, detections)
    assert res.metrics["mAP"] == pytest.approx(m_ap, abs=1e-12)
    assert [res.metrics[k] for k in ("top1", "top5", "top10")] == pytest.approx(list(accs))
    assert 0.0 < m_ap < 1.0


def test_detection_metrics_by_hand() -> None:
    g1 = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], dtype=np.float32)
    one = np.array([[0, 0, 10, 10]], dtype=np.float32)
    detections = {
        # A: exact hit 0.9 (TP); 0.8 overlaps gt 1 (IoU 0.82) but gt 1 keeps its best: FP;
        #    the second person is found only at score 0.4 < 0.5: dropped
        "a.jpg": Detections(
            np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 0, 30, 10]], dtype=np.float32),
            np.array([0.9, 0.8, 0.4]),
            np.zeros((3, 2)),
        ),
        # B: no detection; C: a hit at 0.7
        "c.jpg": Detections(one.copy(), np.array([0.7]), np.zeros((1, 2))),
    }
    got = detection_metrics({"a.jpg": g1, "b.jpg": one, "c.jpg": one}, detections)
    # GT 4, TP 2: recall 1/2; ranking 0.9 T, 0.8 F, 0.7 T: AP = 1/2 * 1 + 1/2 * 2/3
    assert got["det_recall"] == pytest.approx(0.5)
    assert got["det_ap"] == pytest.approx((0.5 + 0.5 * 2 / 3) * 0.5)


def test_detection_best_match_per_ground_truth_only() -> None:
    # two ground-truth boxes, one detection between them: it matches only its best gt
    gt = np.array([[0, 0, 10, 10], [2, 0, 12, 10]], dtype=np.float32)
    det = Detections(
        np.array([[1, 0, 11, 10]], dtype=np.float32), np.array([0.9]), np.zeros((1, 2))
    )
    got = detection_metrics({"a.jpg": gt}, {"a.jpg": det})
    assert got == {"det_recall": 0.5, "det_ap": 0.5}
