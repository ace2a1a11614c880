"""Top-1 accuracy of classifier logits."""

from __future__ import annotations

from torch import Tensor


def top1_accuracy(logits: Tensor, labels: Tensor) -> float:
    """Fraction of rows whose arg-max logit equals the label. logits (N, C), labels (N,)."""
    return float((logits.argmax(dim=1) == labels).float().mean())
