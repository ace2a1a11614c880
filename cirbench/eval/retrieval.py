"""Retrieval metrics: CMC recall@k and mean average precision (mAP).

For each query row, gallery entries are ranked by increasing distance; entries masked out by
``valid`` (e.g. the query itself, or same-id-same-camera pictures in re-ID) are removed from the
ranking. Queries with no valid match are left out of every metric, as in the Market-1501 protocol.
AP of a query = mean over its matches of precision at the match's rank.
"""

from __future__ import annotations

import torch
from torch import Tensor


def retrieval_metrics(
    dist: Tensor,
    query_ids: Tensor,
    gallery_ids: Tensor,
    valid: Tensor | None = None,
    ks: tuple[int, ...] = (1,),
) -> dict[str, float]:
    """``recall@k`` for each k and ``mAP`` from a (Q, G) distance matrix."""
    if valid is not None:
        dist = dist.masked_fill(~valid, float("inf"))
    order = torch.sort(dist, dim=1, stable=True).indices
    matches = gallery_ids[order] == query_ids.unsqueeze(1)
    if valid is not None:
        matches &= torch.gather(valid, 1, order)
    has_match = matches.any(dim=1)
    matches = matches[has_match].float()
    if len(matches) == 0:
        raise ValueError("no query has a valid match in the gallery")
    first = matches.argmax(dim=1)
    ranks = torch.arange(1, matches.shape[1] + 1, device=matches.device)
    precision = matches.cumsum(dim=1) / ranks
    ap = (precision * matches).sum(dim=1) / matches.sum(dim=1)
    out = {f"recall@{k}": float((first < k).float().mean()) for k in ks}
    out["mAP"] = float(ap.mean())
    return out
