from __future__ import annotations

import pytest
import torch

from cirbench.eval.classification import top1_accuracy
from cirbench.eval.distances import cosine_distance
from cirbench.eval.retrieval import retrieval_metrics


def test_map_and_recall_by_hand() -> None:
    # Query 0 (id 1): ranking by distance = g2 (id 1), g0 (id 2), g1 (id 1), g3 (id 3)
    #   matches at ranks 1 and 3: AP = (1/1 + 2/3) / 2 = 5/6; rank-1 hit.
    # Query 1 (id 3): ranking = g0 (2), g1 (1), g3 (3), g2 (1): match at rank 3: AP = 1/3; miss.
    dist = torch.tensor([[0.2, 0.3, 0.1, 0.9], [0.1, 0.2, 0.3, 0.4]])
    dist[1, 2], dist[1, 3] = 0.4, 0.3
    q = torch.tensor([1, 3])
    g = torch.tensor([2, 1, 1, 3])
    out = retrieval_metrics(dist, q, g, ks=(1, 3))
    assert out["mAP"] == pytest.approx((5 / 6 + 1 / 3) / 2)
    assert out["recall@1"] == pytest.approx(0.5)
    assert out["recall@3"] == pytest.approx(1.0)


def test_invalid_entries_leave_the_ranking() -> None:
    # The nearest gallery entry of query 0 is masked (e.g. the query itself): it must neither
    # count as a match nor push the true match down.
    dist = torch.tensor([[0.0, 0.5, 0.2]])
    q = torch.tensor([7])
    g = torch.tensor([7, 7, 4])
    valid = torch.tensor([[False, True, True]])
    out = retrieval_metrics(dist, q, g, valid)
    assert out["mAP"] == pytest.approx(0.5)  # match at rank 2 of the remaining ranking
    assert out["recall@1"] == 0.0


def test_queries_without_match_are_left_out() -> None:
    dist = torch.tensor([[0.1, 0.2], [0.1, 0.2]])
    out = retrieval_metrics(dist, torch.tensor([1, 9]), torch.tensor([1, 2]))
    assert out["mAP"] == 1.0
    with pytest.raises(ValueError, match="no query"):
        retrieval_metrics(dist, torch.tensor([8, 9]), torch.tensor([1, 2]))


def test_cosine_distance_and_top1() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert torch.allclose(cosine_distance(a, a), torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    logits = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert top1_accuracy(logits, torch.tensor([1, 0, 0])) == pytest.approx(2 / 3)
