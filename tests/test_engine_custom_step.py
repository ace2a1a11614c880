"""The engine's one hook for models with their own losses: ``model.training_step(x, y, method)``
is called instead of ``method(model(x), y, model.head)``, with nested batches moved to the
device, and its ``"total"`` is what gets minimised."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cirbench.engine import Evaluation, TrainConfig, batch_to_device, fit
from cirbench.methods import MethodContext, build_method
from cirbench.methods.base import Method
from cirbench.models import EmbeddingNet

CPU = torch.device("cpu")


class Detectorish(EmbeddingNet):
    """Inputs: a list of variable-size images; labels: a list of dicts (like detection)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, 4)
        self.box_bias = nn.Parameter(torch.zeros(()))
        self.embed_dim = 4
        self.head = None
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        raise AssertionError("the engine must call training_step, not forward")

    def training_step(
        self, images: list[Tensor], targets: list[dict[str, Tensor]], method: Method
    ) -> dict[str, Tensor]:
        self.calls += 1
        assert isinstance(images, list) and isinstance(targets, list)
        feats = torch.stack([self.proj(img.mean(dim=(1, 2))) for img in images])
        labels = torch.stack([t["pid"] for t in targets])
        terms = method(feats, labels, None)
        detector = (self.box_bias - 3.0) ** 2  # an extra loss only the model knows
        return {**terms, "detector": detector.detach(), "total": terms["total"] + detector}


def batches(generator: torch.Generator):
    for _ in range(4):
        sizes = torch.randint(4, 9, (3,), generator=generator).tolist()
        images = [torch.rand(3, s, s + 1, generator=generator) for s in sizes]
        targets = [{"pid": torch.tensor(i % 2), "boxes": torch.zeros(1, 4)} for i in range(3)]
        yield images, targets


def test_training_step_is_used_and_its_total_minimised() -> None:
    torch.manual_seed(0)
    model = Detectorish()
    method = build_method("triplet", MethodContext(2, 4))
    cfg = TrainConfig(epochs=3, batch_size=3, lr=0.1, optimizer="sgd", momentum=0.0)
    result = fit(
        model,
        method,
        batches,
        lambda m, meth, dev: Evaluation({"bias": float(m.box_bias)}),
        cfg,
        seed=0,
        device=CPU,
    )
    assert model.calls == 12
    assert [set(h) for h in result.history] == [
        {"epoch", "lr", "triplet", "detector", "total", "images_per_s"}
    ] * 3
    # plain SGD on (b - 3)^2 from 0: b <- b + 0.2 (3 - b) per step, 12 steps
    want = 3.0 * (1 - 0.8**12)
    assert abs(result.metrics["bias"] - want) < 1e-5
    assert result.history[0]["detector"] > result.history[-1]["detector"]


def test_batch_to_device_keeps_structure() -> None:
    batch = ([torch.zeros(2)], {"a": torch.ones(1), "b": (torch.zeros(1), 3)})
    moved = batch_to_device(batch, CPU)
    assert isinstance(moved, tuple) and isinstance(moved[0], list)
    assert isinstance(moved[1]["b"], tuple) and moved[1]["b"][1] == 3
    assert torch.equal(moved[1]["a"], torch.ones(1))
