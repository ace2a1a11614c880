from __future__ import annotations

import numpy as np
import pytest
import torch

from cirbench.eval import reid
from cirbench.eval.reid import (
    RerankConfig,
    evaluate_distances,
    evaluate_reid,
    k_reciprocal_rerank,
    row_sq_norms,
)

KS = (1, 5, 10)


def reference_loop(
    dist: np.ndarray,
    q_pids: np.ndarray,
    q_cams: np.ndarray,
    g_pids: np.ndarray,
    g_cams: np.ndarray,
) -> tuple[dict[str, float], list[int]]:
    """Straightforward per-query loop over a full stable ranking (the Market-1501 protocol)."""
    firsts, aps, inps, invalid = [], [], [], []
    for i in range(len(q_pids)):
        order = np.argsort(dist[i], kind="stable")
        keep = (g_pids[order] != -1) & ~(
            (g_pids[order] == q_pids[i]) & (g_cams[order] == q_cams[i])
        )
        hits = g_pids[order][keep] == q_pids[i]
        if not hits.any():
            invalid.append(i)
            continue
        ranks = np.flatnonzero(hits) + 1
        firsts.append(ranks[0])
        aps.append(np.mean(np.arange(1, len(ranks) + 1) / ranks))
        inps.append(len(ranks) / ranks[-1])
    metrics = {f"recall@{k}": float(np.mean(np.asarray(firsts) <= k)) for k in KS}
    metrics["mAP"] = float(np.mean(aps))
    metrics["mINP"] = float(np.mean(inps))
    return metrics, invalid


def market_like(seed: int, n_ids: int = 40, dim: int = 16) -> dict[str, np.ndarray]:
    """Ids with 1-12 gallery images over 6 cameras, queries one per (id, camera) drawn from
    them, distractors (id 0) and junk (id -1); features = id centre + noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids + 1, dim))
    g_pids, g_cams, q_pids, q_cams = [], [], [], []
    for pid in range(1, n_ids + 1):
        cams = rng.integers(0, 6, size=rng.integers(1, 13))
        g_pids += [pid] * len(cams)
        g_cams += cams.tolist()
        for cam in np.unique(cams)[: rng.integers(1, 4)]:
            q_pids.append(pid)
            q_cams.append(int(cam))
    n_distract, n_junk = 30, 20
    g_pids += [0] * n_distract + [-1] * n_junk
    g_cams += rng.integers(0, 6, size=n_distract + n_junk).tolist()
    g_pids_a, q_pids_a = np.asarray(g_pids), np.asarray(q_pids)
    gf = centres[np.maximum(g_pids_a, 0)] + 0.9 * rng.normal(size=(len(g_pids), dim))
    qf = centres[q_pids_a] + 0.9 * rng.normal(size=(len(q_pids), dim))
    return {
        "qf": qf,
        "gf": gf,
        "q_pids": q_pids_a,
        "q_cams": np.asarray(q_cams),
        "g_pids": g_pids_a,
        "g_cams": np.asarray(g_cams),
    }


def sq_euclidean(qf: np.ndarray, gf: np.ndarray) -> np.ndarray:
    return ((qf[:, None, :] - gf[None, :, :]) ** 2).sum(axis=2)


def ids(d: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    return d["q_pids"], d["q_cams"], d["g_pids"], d["g_cams"]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("chunk", [7, 256])
def test_equal_to_reference_loop_euclidean(seed: int, chunk: int) -> None:
    d = market_like(seed)
    expected, invalid = reference_loop(sq_euclidean(d["qf"], d["gf"]), *ids(d))
    got = evaluate_reid(d["qf"], d["gf"], *ids(d), chunk_size=chunk)
    assert set(got.metrics) == {"recall@1", "recall@5", "recall@10", "mAP", "mINP"}
    for key, value in expected.items():
        assert got.metrics[key] == pytest.approx(value, abs=1e-6), key
    assert got.invalid_queries == invalid
    assert got.num_gallery == int(np.sum(d["g_pids"] != -1))


def test_equal_to_reference_loop_cosine() -> None:
    d = market_like(3)
    qn = d["qf"] / np.linalg.norm(d["qf"], axis=1, keepdims=True)
    gn = d["gf"] / np.linalg.norm(d["gf"], axis=1, keepdims=True)
    expected, _ = reference_loop(1.0 - qn @ gn.T, *ids(d))
    got = evaluate_reid(d["qf"], d["gf"], *ids(d), distance="cosine", chunk_size=16)
    for key, value in expected.items():
        assert got.metrics[key] == pytest.approx(value, abs=1e-6), key


def test_float32_torch_inputs_agree_with_float64() -> None:
    d = market_like(4)
    f64 = evaluate_reid(d["qf"], d["gf"], *ids(d)).metrics
    f32 = evaluate_reid(
        torch.from_numpy(d["qf"]).float(), torch.from_numpy(d["gf"]).float(), *ids(d)
    ).metrics
    for key in f64:
        assert f32[key] == pytest.approx(f64[key], abs=1e-3)


def test_ties_are_broken_by_gallery_index_like_a_stable_sort() -> None:
    # Integer features: all distances exact, many exact ties.
    rng = np.random.default_rng(5)
    g_pids = rng.integers(1, 6, size=60)
    g_cams = rng.integers(0, 6, size=60)
    q_pids = np.arange(1, 6)
    q_cams = np.zeros(5, dtype=np.int64)
    gf = rng.integers(0, 2, size=(60, 3)).astype(np.float64)
    qf = rng.integers(0, 2, size=(5, 3)).astype(np.float64)
    expected, _ = reference_loop(sq_euclidean(qf, gf), q_pids, q_cams, g_pids, g_cams)
    got = evaluate_reid(qf, gf, q_pids, q_cams, g_pids, g_cams, chunk_size=2)
    for key, value in expected.items():
        assert got.metrics[key] == pytest.approx(value, abs=1e-12), key


def test_hand_computed_case() -> None:
    # Query id 1, camera 0. Gallery in distance order:
    #   g0 id 1 cam 0 (same id, same camera: removed)
    #   g1 id 0 (distractor, a non-match), g2 id 1 cam 2 (match), g3 id -1 (junk: removed),
    #   g4 id 2, g5 id 1 cam 3 (match).
    dist = np.array([[0.1, 0.2, 0.3, 0.35, 0.4, 0.5]])
    g_pids = np.array([1, 0, 1, -1, 2, 1])
    g_cams = np.array([0, 1, 2, 4, 1, 3])
    got = evaluate_distances(dist, np.array([1]), np.array([0]), g_pids, g_cams)
    # Kept ranking: g1 g2 g4 g5 -> matches at ranks 2 and 4.
    assert got.metrics["recall@1"] == 0.0
    assert got.metrics["recall@5"] == 1.0
    assert got.metrics["mAP"] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert got.metrics["mINP"] == pytest.approx(2 / 4)
    assert got.num_gallery == 5


def test_query_whose_only_match_is_same_camera_is_left_out() -> None:
    # Query 0 (id 1, cam 0): its only gallery image is from cam 0 -> no valid match.
    # Query 1 (id 2, cam 0): one match at rank 1.
    dist = np.array([[0.1, 0.9], [0.5, 0.2]])
    got = evaluate_distances(
        dist, np.array([1, 2]), np.array([0, 0]), np.array([1, 2]), np.array([0, 3])
    )
    assert got.invalid_queries == [0]
    assert got.num_valid_queries == 1
    assert got.metrics == {
        "recall@1": 1.0,
        "recall@5": 1.0,
        "recall@10": 1.0,
        "mAP": 1.0,
        "mINP": 1.0,
    }


def test_query_id_absent_from_gallery_is_counted_not_scored() -> None:
    dist = np.array([[0.3, 0.1], [0.2, 0.4]])
    got = evaluate_distances(
        dist, np.array([7, 2]), np.array([0, 0]), np.array([0, 2]), np.array([1, 3])
    )
    assert got.invalid_queries == [0]
    # Query 1: the distractor (0.2) comes before its match (0.4).
    assert got.metrics["recall@1"] == 0.0 and got.metrics["mAP"] == 0.5


def test_no_valid_query_is_an_error() -> None:
    with pytest.raises(ValueError, match="no query has a valid match"):
        evaluate_distances(
            np.array([[0.1]]), np.array([1]), np.array([0]), np.array([1]), np.array([0])
        )


def test_distractors_count_as_non_matches_and_junk_is_invisible() -> None:
    d = market_like(6)
    base = evaluate_reid(d["qf"], d["gf"], *ids(d)).metrics
    no_junk = d["g_pids"] != -1
    without = evaluate_reid(
        d["qf"],
        d["gf"][no_junk],
        d["q_pids"],
        d["q_cams"],
        d["g_pids"][no_junk],
        d["g_cams"][no_junk],
    ).metrics
    assert without == base  # junk never changes anything
    # Distractors placed on top of every query push every match down: metrics drop.
    on_top = np.concatenate([d["gf"], d["qf"]])
    extra = len(d["qf"])
    worse = evaluate_reid(
        d["qf"],
        on_top,
        d["q_pids"],
        d["q_cams"],
        np.concatenate([d["g_pids"], np.zeros(extra, dtype=np.int64)]),
        np.concatenate([d["g_cams"], d["q_cams"]]),
    ).metrics
    assert worse["recall@1"] == 0.0 and worse["mAP"] < base["mAP"]


def test_junk_query_is_rejected() -> None:
    with pytest.raises(ValueError, match="junk"):
        evaluate_distances(
            np.zeros((1, 1)), np.array([-1]), np.array([0]), np.array([1]), np.array([0])
        )


# --- re-ranking ------------------------------------------------------------------------------


def dense_rerank(x: np.ndarray, num_query: int, k1: int, k2: int, lam: float) -> np.ndarray:
    """The k-reciprocal equations of Zhong et al. 2017, dense, for tiny inputs."""
    n = len(x)
    d = sq_euclidean(x, x)
    d = d / d.max(axis=1, keepdims=True)
    rank = np.argsort(d, axis=1, kind="stable")

    def recip(i: int, k: int) -> set[int]:
        return {int(j) for j in rank[i, : k + 1] if i in rank[j, : k + 1]}

    v = np.zeros((n, n))
    for i in range(n):
        r = recip(i, k1)
        expanded = set(r)
        for c in r:
            rc = recip(c, round(k1 / 2))
            if len(rc & r) > 2 / 3 * len(rc):
                expanded |= rc
        cols = sorted(expanded)
        w = np.exp(-d[i, cols])
        v[i, cols] = w / w.sum()
    if k2 > 1:
        v = np.stack([v[rank[i, :k2]].mean(axis=0) for i in range(n)])
    jac = np.array(
        [
            [1 - np.minimum(v[i], v[j]).sum() / np.maximum(v[i], v[j]).sum() for j in range(n)]
            for i in range(num_query)
        ]
    )
    return ((1 - lam) * jac + lam * d[:num_query])[:, num_query:]


def test_rerank_matches_dense_equations() -> None:
    d = market_like(7, n_ids=10, dim=8)
    no_junk = d["g_pids"] != -1
    q, g = d["qf"][:12], d["gf"][no_junk][:60]
    cfg = RerankConfig(k1=6, k2=3, lambda_value=0.3)
    got = k_reciprocal_rerank(torch.from_numpy(q), torch.from_numpy(g), cfg)
    want = dense_rerank(np.concatenate([q, g]), len(q), 6, 3, 0.3)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_rerank_with_lambda_one_keeps_the_ranking() -> None:
    d = market_like(8)
    plain = evaluate_reid(d["qf"], d["gf"], *ids(d)).metrics
    rr = evaluate_reid(d["qf"], d["gf"], *ids(d), rerank=RerankConfig(lambda_value=1.0)).metrics
    for key in plain:
        assert rr[key] == pytest.approx(plain[key], abs=1e-9)


def test_rerank_default_runs_and_helps_on_clustered_data() -> None:
    d = market_like(9)
    plain = evaluate_reid(d["qf"], d["gf"], *ids(d)).metrics
    rr = evaluate_reid(d["qf"], d["gf"], *ids(d), rerank=RerankConfig()).metrics
    assert 0.0 < rr["mAP"] <= 1.0
    assert rr["mAP"] > plain["mAP"] - 0.05


@pytest.mark.parametrize("chunk", [1, 7, 1024])
def test_row_chunked_squared_norms_have_the_same_bits(chunk: int) -> None:
    x = torch.randn(3000, 2048, generator=torch.Generator().manual_seed(0))
    assert torch.equal(row_sq_norms(x, chunk), x.pow(2).sum(dim=1))


def test_gallery_without_junk_is_not_copied(monkeypatch) -> None:
    d = market_like(6)
    keep = d["g_pids"] != -1
    gf = torch.from_numpy(d["gf"][keep]).float().contiguous()
    seen: list[int] = []
    real = reid.distance_block

    def spy(q, g, g_sq, distance):  # type: ignore[no-untyped-def]
        seen.append(g.data_ptr())
        return real(q, g, g_sq, distance)

    monkeypatch.setattr(reid, "distance_block", spy)
    q_pids, q_cams, g_pids, g_cams = ids(d)
    qf = torch.from_numpy(d["qf"]).float()
    got = evaluate_reid(qf, gf, q_pids, q_cams, g_pids[keep], g_cams[keep], chunk_size=8)
    assert seen and set(seen) == {gf.data_ptr()}
    on_cpu = evaluate_reid(qf, gf, q_pids, q_cams, g_pids[keep], g_cams[keep], device="cpu")
    assert on_cpu.metrics == got.metrics


def test_many_exact_ties_follow_the_stable_rule_in_float32() -> None:
    # Features on a coarse grid: float32 distances are exact integers with many exact ties,
    # across chunk boundaries and between own-id entries, distractors and other ids.
    d = market_like(7, n_ids=30, dim=4)
    qf = np.round(d["qf"]).astype(np.float32)
    gf = np.round(d["gf"]).astype(np.float32)
    dist = sq_euclidean(qf.astype(np.float64), gf.astype(np.float64))
    assert sum(len(np.unique(r)) < len(r) for r in dist) == len(dist)  # every row has ties
    expected, invalid = reference_loop(dist, *ids(d))
    got = evaluate_reid(qf, gf, *ids(d), chunk_size=5)
    for key, value in expected.items():
        assert got.metrics[key] == pytest.approx(value, abs=1e-12), key
    assert got.invalid_queries == invalid
