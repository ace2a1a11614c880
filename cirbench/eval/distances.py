"""The one home of distances between feature vectors, for losses and for evaluation.

Two forms, on purpose, each with the numerics its users rely on (bit-exact replay depends on the
order of operations, so they are not merged into one formula):

- :func:`pairwise_distances` (losses: triplet): a batch against itself, **Euclidean** (the square
  root, clamped at 1e-12 before it so the gradient is finite at zero distance) or 1 - cosine.
- :func:`distance_block` (evaluation: re-ID, re-ranking): a block of queries against a gallery,
  **squared** Euclidean through one ``addmm`` with precomputed gallery norms
  (:func:`row_sq_norms`), or 1 - cosine of already normalised inputs; rankings are the same as
  with the root, and no G x D temporary is made.
- :func:`cosine_distance`: 1 - cosine of raw inputs (normalised here), for retrieval metrics.

:func:`working_precision` is the dtype every one of them computes in: float32, or float64 when
the features already are (tests compare against float64 references).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Distance = Literal["euclidean", "cosine"]


def working_precision(features: Tensor) -> Tensor:
    """``features`` in float32, or float64 when they already are."""
    return features if features.dtype == torch.float64 else features.float()


def pairwise_distances(x: Tensor, distance: str) -> Tensor:
    """(N, D) -> (N, N) Euclidean or cosine distances."""
    if distance == "cosine":
        x = F.normalize(x, dim=1)
        return 1.0 - x @ x.T
    sq = x.pow(2).sum(dim=1)
    squared = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    return squared.clamp(min=1e-12).sqrt()


def distance_block(q: Tensor, g: Tensor, g_sq: Tensor | None, distance: Distance) -> Tensor:
    """(C, D) x (G, D) -> (C, G): squared Euclidean, or 1 - cosine for normalised inputs."""
    if distance == "cosine":
        return 1.0 - q @ g.T
    assert g_sq is not None
    q_sq = q.pow(2).sum(dim=1, keepdim=True)
    return torch.addmm(g_sq.unsqueeze(0), q, g.T, alpha=-2.0).add_(q_sq)


def row_sq_norms(x: Tensor, chunk: int = 1024) -> Tensor:
    """``x.pow(2).sum(dim=1)`` computed ``chunk`` rows at a time: each row is reduced on its
    own, so the norms have the same bits, without an ``x``-sized temporary."""
    out = torch.empty(len(x), dtype=x.dtype, device=x.device)
    for start in range(0, len(x), chunk):
        out[start : start + chunk] = x[start : start + chunk].pow(2).sum(dim=1)
    return out


def cosine_distance(queries: Tensor, gallery: Tensor) -> Tensor:
    """1 - cosine similarity, (Q, D) x (G, D) -> (Q, G)."""
    return 1.0 - F.normalize(queries, dim=1) @ F.normalize(gallery, dim=1).T
