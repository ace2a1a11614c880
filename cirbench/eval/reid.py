"""Re-ID evaluation: CMC rank-k, mAP and mINP with the Market-1501 protocol, fast and chunked.

Protocol (Zheng et al. ICCV 2015; the ``eval_market1501`` / ``eval_func`` loops of torchreid and
reid-strong-baseline): for each query, gallery entries with the same id AND the same camera are
removed from its ranking, and junk entries (id -1) from every ranking; distractors (id 0) stay as
non-matches. On the remaining ranking (increasing distance; ties broken by gallery index, i.e. a
stable sort):

    CMC@k  = 1 if the first match is within the top k, averaged over valid queries
    AP     = 1/n sum_{i=1..n} i / r_i   for the ranks r_1 < ... < r_n of the n matches
    INP    = n / r_n                    (Ye et al., "Deep Learning for Person Re-identification:
                                          A Survey and Outlook", TPAMI 2021, arXiv:2001.04193)

A query is valid when it has at least one match left; invalid queries are left out of every
metric (torchreid ``continue``s over them) and are counted in :class:`ReidEvaluation`.
Metric names: ``recall@1``, ``recall@5``, ``recall@10``, ``mAP``, ``mINP`` (fractions).

How it is fast: only the ranks of a query's own-id gallery entries matter. Per chunk of queries
we compute the distance block, sort each row's *values* (``np.sort``, no index permutation), and
find each own-id entry's rank by binary search in its sorted row (ties with other entries are
resolved by index, exactly like a stable argsort). Removing same-camera entries only shifts the
ranks of the matches behind them. So the work is one distance matrix plus one row-wise sort, in
chunks of ``chunk_size`` queries: a distance block and its sorted copy, ``2 * chunk_size * G *
itemsize`` bytes (33 MB at Market size with 256 float32 rows), instead of the full Q x G matrix.
The gallery is not copied (junk rows are dropped only when a junk id exists) and its squared
norms are taken in row chunks (the same bits as one ``pow(2).sum(1)``, without a G x D
temporary). Measured peak memory above the inputs at Market size, and how to measure it:
``benchmarks/test_bench_reid_eval.py`` (``results/benchmarks/reid-eval-memory-cpu.json``).
``device`` computes the distance blocks on another device (e.g. CUDA); ranking stays on the CPU.

Distances: ``euclidean`` ranks by the squared Euclidean distance (the same order as Euclidean;
reid-strong-baseline and torchreid also rank squared distances), ``cosine`` by 1 - cosine.

Re-ranking: :func:`k_reciprocal_rerank` (Zhong et al., "Re-ranking Person Re-identification with
k-reciprocal Encoding", CVPR 2017, arXiv:1701.08398; defaults k1=20, k2=6, lambda=0.3 from the
paper), written after the equations and checked against the structure of reid-strong-baseline's
``utils/re_ranking.py``: original distance = squared Euclidean over query+gallery, each row
divided by its maximum; k-reciprocal sets R(i, k1), expanded by R(c, round(k1/2)) of each member
c when |R(c) & R(i)| > 2/3 |R(c)|; V_i = softmax-like weights exp(-d) over the expanded set;
local query expansion V_i <- mean of V over the k2 nearest; Jaccard distance 1 - sum min /
sum max (= 1 - m / (2 - m) since every V row sums to 1); final = (1 - lambda) * Jaccard + lambda
* original. It needs the (Q+G) x (Q+G) distances: about 1.5 GB of float32 at Market size
(neighbour lists are kept as k1+1 columns and V as a sparse matrix; ours: float32 where the
reference used float16).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor

from cirbench.eval.distances import Distance, distance_block, row_sq_norms

log = logging.getLogger(__name__)

JUNK_ID = -1
DEFAULT_KS = (1, 5, 10)
DEFAULT_CHUNK = 256


@dataclass(frozen=True)
class RerankConfig:
    """k-reciprocal re-ranking; defaults from Zhong et al. CVPR 2017 (k1=20, k2=6, lambda=0.3)."""

    k1: int = 20
    k2: int = 6
    lambda_value: float = 0.3


@dataclass
class ReidEvaluation:
    """Metrics (fractions) and bookkeeping: which queries had no valid match."""

    metrics: dict[str, float]
    num_queries: int
    num_gallery: int
    invalid_queries: list[int] = field(default_factory=list)
    peak_chunk_bytes: int = 0

    @property
    def num_valid_queries(self) -> int:
        return self.num_queries - len(self.invalid_queries)


@dataclass(frozen=True)
class _Gallery:
    """Gallery ids and cameras, with indices grouped by id for fast own-id look-ups."""

    pids: np.ndarray
    cams: np.ndarray
    by_pid: np.ndarray  # gallery indices sorted by (pid, index)
    unique: np.ndarray  # sorted distinct pids
    starts: np.ndarray  # start of each distinct pid in ``by_pid``
    counts: np.ndarray

    @classmethod
    def build(cls, pids: np.ndarray, cams: np.ndarray) -> _Gallery:
        by_pid = np.argsort(pids, kind="stable")
        unique, starts, counts = np.unique(pids[by_pid], return_index=True, return_counts=True)
        return cls(pids, cams, by_pid, unique, starts, counts)

    def own_id_entries(self, q_pids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Padded (C, M) gallery indices with each query's id, and the validity mask."""
        pos = np.searchsorted(self.unique, q_pids)
        pos_clip = np.minimum(pos, len(self.unique) - 1)
        found = (pos < len(self.unique)) & (self.unique[pos_clip] == q_pids)
        count = np.where(found, self.counts[pos_clip], 0)
        width = max(1, int(count.max(initial=0)))
        offsets = np.arange(width)
        valid = offsets[None, :] < count[:, None]
        flat = np.where(valid, self.starts[pos_clip][:, None] + offsets[None, :], 0)
        return self.by_pid[flat], valid


def as_numpy(x: Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def positions_in_rows(dist: np.ndarray, sorted_rows: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """0-based position of gallery entry ``idx[c, m]`` in row c's stable ascending order."""
    values = np.take_along_axis(dist, idx, axis=1)
    sorted_t = torch.from_numpy(sorted_rows)
    values_t = torch.from_numpy(np.ascontiguousarray(values))
    left = torch.searchsorted(sorted_t, values_t).numpy()
    right = torch.searchsorted(sorted_t, values_t, right=True).numpy()
    ties = np.argwhere(right - left > 1)
    for c, m in ties:  # rare with real-valued features: equal distances ranked by index
        j = idx[c, m]
        left[c, m] += int(np.count_nonzero(dist[c, :j] == values[c, m]))
    return left


def chunk_metrics(
    dist: np.ndarray,
    q_pids: np.ndarray,
    q_cams: np.ndarray,
    gallery: _Gallery,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-query first-match rank (1-based), AP, INP and validity for one block of rows."""
    idx, valid = gallery.own_id_entries(q_pids)
    same_cam = gallery.cams[idx] == q_cams[:, None]
    positive = valid & ~same_cam
    removed = valid & same_cam
    rank0 = positions_in_rows(dist, np.sort(dist, axis=1), idx)
    before = removed[:, None, :] & (rank0[:, None, :] < rank0[:, :, None])
    kept_rank = (rank0 - before.sum(axis=2) + 1).astype(np.float64)
    ranks = np.sort(np.where(positive, kept_rank, np.inf), axis=1)
    n = positive.sum(axis=1)
    ok = n > 0
    i = np.arange(1, ranks.shape[1] + 1, dtype=np.float64)
    precision = np.where(np.isfinite(ranks), i[None, :] / ranks, 0.0)
    ap = precision.sum(axis=1) / np.maximum(n, 1)
    last = np.take_along_axis(ranks, np.maximum(n - 1, 0)[:, None], axis=1)[:, 0]
    inp = np.where(ok, n / np.where(ok, last, 1.0), 0.0)
    return ranks[:, 0], ap, inp, ok


def summarize(
    first: np.ndarray, ap: np.ndarray, inp: np.ndarray, ok: np.ndarray, ks: tuple[int, ...]
) -> dict[str, float]:
    if not ok.any():
        raise ValueError("no query has a valid match in the gallery")
    out = {f"recall@{k}": float(np.mean(first[ok] <= k)) for k in ks}
    out["mAP"] = float(np.mean(ap[ok]))
    out["mINP"] = float(np.mean(inp[ok]))
    return out


def check_inputs(
    q_pids: np.ndarray, q_cams: np.ndarray, g_pids: np.ndarray, g_cams: np.ndarray
) -> None:
    if q_pids.shape != q_cams.shape or g_pids.shape != g_cams.shape:
        raise ValueError("ids and cameras must have the same length per side")
    if np.any(q_pids == JUNK_ID):
        raise ValueError("a query has the junk id -1; junk images are never queries")


def _prepare(features: Tensor | np.ndarray, distance: Distance, normalize: bool) -> Tensor:
    x = torch.as_tensor(as_numpy(features))
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    if normalize or distance == "cosine":
        x = F.normalize(x, dim=1)
    return x.contiguous()


def evaluate_reid(
    query_features: Tensor | np.ndarray,
    gallery_features: Tensor | np.ndarray,
    q_pids: np.ndarray,
    q_cams: np.ndarray,
    g_pids: np.ndarray,
    g_cams: np.ndarray,
    distance: Distance = "euclidean",
    normalize: bool = False,
    ks: tuple[int, ...] = DEFAULT_KS,
    chunk_size: int = DEFAULT_CHUNK,
    rerank: RerankConfig | None = None,
    device: torch.device | str | None = None,
) -> ReidEvaluation:
    """CMC / mAP / mINP of query features against gallery features (Market-1501 protocol).

    ``normalize`` L2-normalises the features first (reid-strong-baseline ``TEST.FEAT_NORM``).
    Computed in float32, or float64 when the features are float64. Junk gallery entries
    (id -1) are dropped before any distance is computed. ``device``: where the distance blocks
    are computed (default: the CPU); the ranking always runs on the CPU.

    Examples:
        Two queries; the gallery holds each one's match from another camera, a same-camera
        picture of query 0 (not a valid match, removed from its ranking) and a distractor:

        >>> q = np.array([[0.0, 0.0], [10.0, 0.0]])
        >>> g = np.array([[0.1, 0.0], [9.0, 0.0], [0.0, 0.1], [5.0, 5.0]])
        >>> result = evaluate_reid(q, g, q_pids=[1, 2], q_cams=[1, 1],
        ...                        g_pids=[1, 2, 1, 0], g_cams=[2, 2, 1, 3])
        >>> result.metrics["recall@1"], result.metrics["mAP"], result.num_valid_queries
        (1.0, 1.0, 2)
    """
    q_pids, q_cams = np.asarray(q_pids, np.int64), np.asarray(q_cams, np.int64)
    g_pids, g_cams = np.asarray(g_pids, np.int64), np.asarray(g_cams, np.int64)
    check_inputs(q_pids, q_cams, g_pids, g_cams)
    where = torch.device("cpu") if device is None else torch.device(device)
    q = _prepare(query_features, distance, normalize).to(where)
    g = _prepare(gallery_features, distance, normalize).to(where)
    keep = g_pids != JUNK_ID
    if not keep.all():  # a copy of the gallery only when there is junk to drop
        g = g[torch.from_numpy(keep).to(g.device)]
        g_pids, g_cams = g_pids[keep], g_cams[keep]
    if rerank is not None:
        dist = k_reciprocal_rerank(q.cpu(), g.cpu(), rerank, distance)
        return evaluate_distances(dist, q_pids, q_cams, g_pids, g_cams, ks, chunk_size)
    gallery = _Gallery.build(g_pids, g_cams)
    g_sq = row_sq_norms(g) if distance == "euclidean" else None
    parts = []
    peak = 0
    for start in range(0, len(q), chunk_size):
        stop = start + chunk_size
        block = distance_block(q[start:stop], g, g_sq, distance).cpu().numpy()
        peak = max(peak, 2 * block.nbytes)
        parts.append(chunk_metrics(block, q_pids[start:stop], q_cams[start:stop], gallery))
    return collect(parts, ks, len(q), len(g), peak)


def evaluate_distances(
    dist: Tensor | np.ndarray,
    q_pids: np.ndarray,
    q_cams: np.ndarray,
    g_pids: np.ndarray,
    g_cams: np.ndarray,
    ks: tuple[int, ...] = DEFAULT_KS,
    chunk_size: int = DEFAULT_CHUNK,
) -> ReidEvaluation:
    """The same metrics from a precomputed (Q, G) distance matrix (junk ids are dropped)."""
    d = as_numpy(dist)
    q_pids, q_cams = np.asarray(q_pids, np.int64), np.asarray(q_cams, np.int64)
    g_pids, g_cams = np.asarray(g_pids, np.int64), np.asarray(g_cams, np.int64)
    check_inputs(q_pids, q_cams, g_pids, g_cams)
    keep = g_pids != JUNK_ID
    d, g_pids, g_cams = d[:, keep], g_pids[keep], g_cams[keep]
    gallery = _Gallery.build(g_pids, g_cams)
    parts = []
    for start in range(0, len(d), chunk_size):
        stop = start + chunk_size
        block = np.ascontiguousarray(d[start:stop])
        parts.append(chunk_metrics(block, q_pids[start:stop], q_cams[start:stop], gallery))
    return collect(parts, ks, d.shape[0], d.shape[1], 2 * min(chunk_size, len(d)) * d.shape[1])


def collect(
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    ks: tuple[int, ...],
    num_queries: int,
    num_gallery: int,
    peak: int,
) -> ReidEvaluation:
    first, ap, inp, ok = (np.concatenate(x) for x in zip(*parts, strict=True))
    invalid = np.flatnonzero(~ok).tolist()
    if invalid:
        log.warning(
            "%d of %d queries have no valid match (only same-camera or no gallery image of "
            "their id) and are left out of the metrics",
            len(invalid),
            num_queries,
        )
    metrics = summarize(first, ap, inp, ok, ks)
    return ReidEvaluation(metrics, num_queries, num_gallery, invalid, peak)


# --- k-reciprocal re-ranking --------------------------------------------------------------


def _all_distances(x: Tensor, distance: Distance, chunk: int = 1024) -> np.ndarray:
    """(N, N) original distances, float32: squared Euclidean or 1 - cosine."""
    x = x.float()
    sq = row_sq_norms(x) if distance == "euclidean" else None
    out = np.empty((len(x), len(x)), dtype=np.float32)
    for start in range(0, len(x), chunk):
        out[start : start + chunk] = distance_block(x[start : start + chunk], x, sq, distance)
    return out


def _nearest(dist: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """(N, k) indices of the k smallest entries of each row, ascending (ties by index)."""
    k = min(k, dist.shape[1])
    out = np.empty((dist.shape[0], k), dtype=np.int64)
    for start in range(0, len(dist), chunk):
        block = dist[start : start + chunk]
        part = np.argpartition(block, k - 1, axis=1)[:, :k] if k < block.shape[1] else None
        if part is None:
            part = np.broadcast_to(np.arange(k), (len(block), k))
        vals = np.take_along_axis(block, part, axis=1)
        order = np.lexsort((part, vals), axis=1)
        out[start : start + chunk] = np.take_along_axis(part, order, axis=1)
    return out


def _reciprocal(ranked: np.ndarray) -> list[np.ndarray]:
    """k-reciprocal sets: j in R(i) iff j is among i's first columns and i among j's."""
    n = len(ranked)
    back = ranked[ranked]  # (N, k, k): the neighbour lists of i's neighbours
    mutual = (back == np.arange(n)[:, None, None]).any(axis=2)
    return [ranked[i][mutual[i]] for i in range(n)]


def _expanded_sets(ranked: np.ndarray, k1: int) -> list[np.ndarray]:
    full = _reciprocal(ranked[:, : k1 + 1])
    half = _reciprocal(ranked[:, : round(k1 / 2) + 1])
    out = []
    for members in full:
        expanded = [members]
        for c in members:
            cand = half[c]
            if len(np.intersect1d(cand, members)) > 2.0 / 3.0 * len(cand):
                expanded.append(cand)
        out.append(np.unique(np.concatenate(expanded)))
    return out


def _encoding(dist: np.ndarray, sets: list[np.ndarray]) -> sp.csr_matrix:
    """V (N, N) sparse: V[i, j] = exp(-d_ij) / sum over the expanded set of i."""
    rows = np.repeat(np.arange(len(sets)), [len(s) for s in sets])
    cols = np.concatenate(sets)
    w = np.exp(-dist[rows, cols].astype(np.float64))
    sums = np.bincount(rows, weights=w, minlength=len(sets))
    n = len(sets)
    return sp.csr_matrix((w / sums[rows], (rows, cols)), shape=(n, n))


def _query_expansion(v: sp.csr_matrix, ranked: np.ndarray, k2: int) -> sp.csr_matrix:
    if k2 <= 1:
        return v
    n = v.shape[0]
    rows = np.repeat(np.arange(n), k2)
    cols = ranked[:, :k2].reshape(-1)
    avg = sp.csr_matrix((np.full(len(rows), 1.0 / k2), (rows, cols)), shape=(n, n))
    return (avg @ v).tocsr()


def _jaccard(v: sp.csr_matrix, num_query: int) -> np.ndarray:
    """(Q, N) Jaccard distances 1 - m / (2 - m), m = sum_k min(V_ik, V_jk)."""
    n = v.shape[0]
    csc = v.tocsc()
    out = np.empty((num_query, n), dtype=np.float64)
    for i in range(num_query):
        row = v.getrow(i)
        cols, vals = row.indices, row.data
        starts, stops = csc.indptr[cols], csc.indptr[cols + 1]
        lens = stops - starts
        take = np.concatenate([np.arange(a, b) for a, b in zip(starts, stops, strict=True)])
        mins = np.minimum(csc.data[take], np.repeat(vals, lens))
        m = np.bincount(csc.indices[take], weights=mins, minlength=n)
        out[i] = 1.0 - m / (2.0 - m)
    return out


def k_reciprocal_rerank(
    queries: Tensor, gallery: Tensor, cfg: RerankConfig, distance: Distance = "euclidean"
) -> np.ndarray:
    """(Q, G) re-ranked distances (Zhong et al. CVPR 2017); see the module docstring."""
    num_query = len(queries)
    dist = _all_distances(torch.cat([queries, gallery]), distance)
    dist /= np.maximum(dist.max(axis=1, keepdims=True), np.finfo(np.float32).tiny)
    ranked = _nearest(dist, max(cfg.k1 + 1, cfg.k2))
    v = _encoding(dist, _expanded_sets(ranked, cfg.k1))
    v = _query_expansion(v, ranked, cfg.k2)
    jaccard = _jaccard(v, num_query)
    lam = cfg.lambda_value
    final = (1.0 - lam) * jaccard + lam * dist[:num_query].astype(np.float64)
    return final[:, num_query:]


def synthetic_reid(
    n_query: int,
    n_gallery: int,
    n_ids: int,
    n_distractors: int,
    dim: int,
    noise: float,
    seed: int = 0,
    other_camera: bool = True,
) -> dict[str, np.ndarray]:
    """Market-shaped evaluation data for benchmarks and the GPU check: gallery ids drawn from
    ``n_ids`` identities plus ``n_distractors`` distractors (id 0), 6 cameras, queries picked from
    the identity images (from another camera when ``other_camera``); features = the id's centre
    (standard normal) + ``noise`` x standard normal noise, float32. Noise 4 at Market size gives
    a recall@1 far from 1, so a wrong metric shows. Keys: qf, gf, q_pids, q_cams, g_pids, g_cams.
    """
    rng = np.random.default_rng(seed)
    n_id_images = n_gallery - n_distractors
    g_pids = np.concatenate(
        [rng.integers(1, n_ids + 1, size=n_id_images), np.zeros(n_distractors, np.int64)]
    )
    g_cams = rng.integers(0, 6, size=n_gallery)
    pick = rng.choice(n_id_images, size=n_query, replace=False)
    q_pids = g_pids[pick]
    q_cams = (g_cams[pick] + rng.integers(1 if other_camera else 0, 6, size=n_query)) % 6
    centres = rng.standard_normal((n_ids + 1, dim), dtype=np.float32)
    gf = rng.standard_normal((n_gallery, dim), dtype=np.float32)
    gf *= noise  # in place: no second gallery-sized array
    gf += centres[g_pids]
    qf = rng.standard_normal((n_query, dim), dtype=np.float32)
    qf *= noise
    qf += centres[q_pids]
    return {
        "qf": qf,
        "gf": gf,
        "q_pids": q_pids,
        "q_cams": q_cams,
        "g_pids": g_pids,
        "g_cams": g_cams,
    }
