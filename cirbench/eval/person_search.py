"""Person search evaluation on CUHK-SYSU: the protocol shared by OIM, NAE and SeqNet.

Sources: Xiao et al., "Joint Detection and Identification Feature Learning for Person Search",
CVPR 2017 (arXiv:1604.01850), reference code ShuangLI59/person_search ``lib/datasets/psdb.py``
(``evaluate_detections``, ``evaluate_search``); Li & Miao, "Sequential End-to-end Network for
Efficient Person Search", AAAI 2021, reference code serend1p1ty/SeqNet ``eval_func.py``
(``eval_detection``, ``eval_search_cuhk``). What both do, and so what we do:

Search, per query q with feature f_q (D,) and its protocol gallery (TestG{G}.mat):

1. keep the detections of every gallery image with score >= ``det_thresh`` (0.5); an image with
   no kept detection contributes nothing but its ground truth;
2. for every gallery item, ``count_gt += 1`` if it holds the target (non-empty box); a repeated
   image name is scored once (SeqNet); similarity = f_g . f_q (cosine: features are
   L2-normalised; OIM's squared distance gives the same order);
3. in an image holding the target (box w x h), the detections are ordered by similarity,
   descending, and the first one whose IoU with the box is >= min(0.5, w*h / ((w+10)(h+10)))
   is the one true positive (``count_tp += 1``); all other detections are negatives;
4. full gallery (``gallery_size=-1``): TestG50's queries and galleries, plus every other image of
   the test pool (all negatives) that is neither the query image nor in the protocol gallery;
5. AP_q = 0 if count_tp == 0, else sklearn's ``average_precision_score`` over all scored
   detections times the recall rate count_tp / count_gt; mAP is the mean over queries;
6. top-k (k = 1, 5, 10): 1 if a true positive is among the first k after sorting by
   ``np.argsort(score)[::-1]`` (SeqNet), else 0; averaged over queries.

Ties: numpy's default argsort is not stable (and differs between machines with SIMD sorts), so
we use the stable sort reversed, which is what the references compute whenever their sort
happens to be stable: among equal scores the later item comes first. AP is tie-independent
(sklearn scores tied items as one threshold); our :func:`average_precision` reproduces sklearn's
value (tested against it) without its per-call overhead.

Detection (``eval_detection``, all boxes, labeled and unlabeled): per test image, detections with
score >= 0.5; a detection is a true positive when its IoU with a ground-truth box is >= 0.5,
keeping for every detection only its best ground truth and for every ground truth only its best
detection (argmax, first on ties); recall = TP / #GT; AP = average_precision_score(y_true,
scores) * recall. IoU uses continuous coordinates (no +1), as both references.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cirbench.data.cuhk_sysu import SearchQuery

DET_THRESH = 0.5
DET_IOU = 0.5
TOPK = (1, 5, 10)

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Detections:
    """One image's detections: boxes (n, 4) x1 y1 x2 y2, scores (n,), features (n, D)."""

    boxes: NDArray[np.floating]
    scores: NDArray[np.floating]
    features: NDArray[np.floating]

    def keep(self, thresh: float) -> Detections:
        mask = np.asarray(self.scores) >= thresh
        return Detections(self.boxes[mask], self.scores[mask], self.features[mask])


@dataclass(frozen=True)
class SearchResult:
    metrics: dict[str, float]  # mAP, top1, top5, top10 (fractions)
    aps: FloatArray  # (Q,) per-query AP, already scaled by the recall rate
    hits: NDArray[np.bool_]  # (Q, len(TOPK)) top-k hit per query


def box_iou(box: NDArray[np.floating], boxes: NDArray[np.floating]) -> FloatArray:
    """IoU of one box (4,) with boxes (n, 4), continuous coordinates (as the references)."""
    b = np.asarray(box, dtype=np.float64)
    bs = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w = np.clip(np.minimum(b[2], bs[:, 2]) - np.maximum(b[0], bs[:, 0]), 0, None)
    h = np.clip(np.minimum(b[3], bs[:, 3]) - np.maximum(b[1], bs[:, 1]), 0, None)
    inter = w * h
    union = (b[2] - b[0]) * (b[3] - b[1]) + (bs[:, 2] - bs[:, 0]) * (bs[:, 3] - bs[:, 1]) - inter
    out: FloatArray = inter / union
    return out


def pairwise_iou(a: NDArray[np.floating], b: NDArray[np.floating]) -> FloatArray:
    """IoU matrix (n, m) of boxes a (n, 4) and b (m, 4), same formula as :func:`box_iou`."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(1, -1, 4)
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    out: FloatArray = inter / (area_a + area_b - inter)
    return out


def average_precision(y_true: NDArray[np.bool_], y_score: NDArray[np.floating]) -> float:
    """sklearn.metrics.average_precision_score for binary labels with at least one positive:
    sum over distinct score thresholds of (R_n - R_{n-1}) * P_n, tied scores as one threshold."""
    order = np.argsort(y_score, kind="stable")[::-1]
    return _ap_sorted(np.asarray(y_true)[order], np.asarray(y_score)[order])


def _ap_sorted(true: NDArray[np.bool_], score: NDArray[np.floating]) -> float:
    """:func:`average_precision` of items already sorted by descending score."""
    last = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]
    tps = np.cumsum(true, dtype=np.float64)[last]
    precision = tps / (last + 1)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


class _Gallery:
    """All kept detections stacked (features float32), with each image's start and count."""

    def __init__(self, detections: Mapping[str, Detections], det_thresh: float) -> None:
        dets = list(detections.values())
        counts = np.array([len(d.scores) for d in dets], dtype=np.int64)
        dim = next((np.asarray(d.features).shape[1] for d in dets if len(d.scores)), 0)
        scores = _cat([np.asarray(d.scores, np.float64).reshape(-1) for d in dets], (0,))
        keep = scores >= det_thresh
        owner = np.repeat(np.arange(len(dets)), counts)[keep]
        self.counts = np.bincount(owner, minlength=len(dets)).astype(np.int64)
        self.starts = np.cumsum(self.counts) - self.counts
        self.features = _cat([np.asarray(d.features, np.float32) for d in dets], (0, dim))[keep]
        self.boxes = _cat([np.asarray(d.boxes, np.float64).reshape(-1, 4) for d in dets], (0, 4))
        self.boxes = self.boxes[keep]
        self.ids = {n: i for i, n in enumerate(detections) if self.counts[i] > 0}


def _cat(parts: list[NDArray[Any]], empty: tuple[int, ...]) -> NDArray[Any]:
    return np.concatenate(parts) if parts else np.zeros(empty)


def _score_query(
    query: SearchQuery, feature: NDArray[np.float32], gallery: _Gallery, extra: NDArray[np.int64]
) -> tuple[float, NDArray[np.bool_]]:
    """(AP x recall rate, top-k hits) of one query; ``extra``: ids of full-gallery images."""
    ids: list[int] = []
    seen: set[int] = set()
    targets: list[tuple[int, NDArray[np.floating]]] = []
    count_gt = 0
    for item in query.gallery:
        count_gt += item.box is not None
        gid = gallery.ids.get(item.image)
        if gid is None or gid in seen:
            continue
        if item.box is not None:
            targets.append((len(ids), item.box))
        ids.append(gid)
        seen.add(gid)
    order_ids = np.array(ids, dtype=np.int64)
    if len(extra):
        tested = [*ids, gallery.ids.get(query.image, -1)]
        order_ids = np.r_[order_ids, extra[~np.isin(extra, tested)]]
    lengths = gallery.counts[order_ids]
    offsets = np.cumsum(lengths) - lengths
    index = np.repeat(gallery.starts[order_ids] - offsets, lengths) + np.arange(lengths.sum())
    scores = np.zeros(0)
    if len(index):
        scores = (gallery.features[index] @ feature).astype(np.float64)
    labels = np.zeros(len(index), dtype=bool)
    count_tp = 0
    for pos, box in targets:
        lo, hi = int(offsets[pos]), int(offsets[pos] + lengths[pos])
        order = np.argsort(scores[lo:hi], kind="stable")[::-1]
        index[lo:hi], scores[lo:hi] = index[lo:hi][order], scores[lo:hi][order]
        w, h = float(box[2] - box[0]), float(box[3] - box[1])
        thresh = min(0.5, w * h / ((w + 10) * (h + 10)))
        hit = np.flatnonzero(box_iou(box, gallery.boxes[index[lo:hi]]) >= thresh)
        if hit.size:
            labels[lo + hit[0]] = True
            count_tp += 1
    order = np.argsort(scores, kind="stable")[::-1]
    ranked = labels[order]
    recall = count_tp / count_gt if count_gt else 0.0
    ap = _ap_sorted(ranked, scores[order]) * recall if count_tp else 0.0
    return ap, np.array([bool(ranked[:k].any()) for k in TOPK])


def search_metrics(
    queries: Sequence[SearchQuery],
    query_features: NDArray[np.floating],
    detections: Mapping[str, Detections],
    det_thresh: float = DET_THRESH,
    full_gallery: Sequence[str] = (),
) -> SearchResult:
    """mAP and top-k of person search. ``query_features`` (Q, D) are the features of the query
    boxes; ``detections`` maps every gallery image name to its detections; ``full_gallery``
    is the whole test pool for the full-gallery protocol (empty: protocol galleries only)."""
    gallery = _Gallery(detections, det_thresh)
    feats = np.asarray(query_features, dtype=np.float32)
    if len(feats) != len(queries):
        raise ValueError(f"{len(queries)} queries but {len(feats)} query features")
    extra = np.array([gallery.ids[n] for n in full_gallery if n in gallery.ids], dtype=np.int64)
    aps = np.zeros(len(queries))
    hits = np.zeros((len(queries), len(TOPK)), dtype=bool)
    for i, query in enumerate(queries):
        aps[i], hits[i] = _score_query(query, feats[i], gallery, extra)
    metrics = {"mAP": float(aps.mean()) if len(aps) else 0.0}
    for j, k in enumerate(TOPK):
        metrics[f"top{k}"] = float(hits[:, j].mean()) if len(aps) else 0.0
    return SearchResult(metrics, aps, hits)


def _match(gt: NDArray[np.floating], det: Detections, iou_thresh: float) -> NDArray[np.bool_]:
    """(n_det,) true-positive flags: IoU >= thresh, best gt per det and best det per gt."""
    ious = pairwise_iou(gt, det.boxes).astype(np.float32)  # float32 as SeqNet's matrix
    best_gt = np.arange(len(gt))[:, None] == ious.argmax(axis=0)[None, :]
    best_det = np.arange(len(det.scores))[None, :] == ious.argmax(axis=1)[:, None]
    tf = (ious >= iou_thresh) & best_gt & best_det
    flags: NDArray[np.bool_] = np.asarray(tf.any(axis=0), dtype=bool)
    return flags


def detection_metrics(
    ground_truth: Mapping[str, NDArray[np.floating]],
    detections: Mapping[str, Detections],
    det_thresh: float = DET_THRESH,
    iou_thresh: float = DET_IOU,
) -> dict[str, float]:
    """``det_recall`` and ``det_ap`` over the test images (``ground_truth``: name -> boxes)."""
    y_true: list[NDArray[np.bool_]] = []
    y_score: list[NDArray[np.floating]] = []
    count_gt = 0
    for name, gt in ground_truth.items():
        gt = np.asarray(gt).reshape(-1, 4)
        count_gt += len(gt)
        det = detections.get(name)
        if det is None:
            continue
        det = det.keep(det_thresh)
        if not len(det.scores):
            continue
        flags = _match(gt, det, iou_thresh) if len(gt) else np.zeros(len(det.scores), bool)
        y_true.append(flags)
        y_score.append(np.asarray(det.scores, dtype=np.float64))
    true = np.concatenate(y_true) if y_true else np.zeros(0, bool)
    tp = int(true.sum())
    recall = tp / count_gt if count_gt else 0.0
    ap = average_precision(true, np.concatenate(y_score)) * recall if tp else 0.0
    return {"det_recall": recall, "det_ap": ap}
