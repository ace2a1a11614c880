"""Backbones and heads behind one small interface, :class:`EmbeddingNet`."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn


class EmbeddingNet(nn.Module):
    """A task model: ``forward`` gives the training features (N, ``embed_dim``), ``head`` maps
    features to logits (or is ``None`` for a task without classifier), ``embed`` gives the
    features used at evaluation (the same as ``forward`` unless a model says otherwise, e.g. the
    BNNeck of re-ID evaluates after its batch norm)."""

    embed_dim: int
    head: nn.Module | None
    #: The pretrained weights the backbone started from (``name``, ``file``, ``sha256``; see
    #: :mod:`cirbench.models.weights`), None for a random initialisation; records store it.
    pretrained_weights: dict[str, Any] | None = None

    def embed(self, x: Tensor) -> Tensor:
        out: Tensor = self(x)
        return out
