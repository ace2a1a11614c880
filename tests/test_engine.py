from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
from torch import Tensor

from cirbench import engine
from cirbench.engine import Evaluation, FitOptions, FitResult, TrainConfig, fit, lr_factor
from cirbench.errors import CirbenchError, TrainingDivergedError
from cirbench.methods import MethodContext
from cirbench.methods.base import FEATURES, Loss, LossConfig, Method, MethodSpec
from cirbench.runner import RunSpec, prepare, train

CPU = torch.device("cpu")


def run(
    digits, cfg: TrainConfig, spec: str, seed: int, **kwargs
) -> tuple[FitResult, torch.nn.Module]:
    task, data = digits
    spec_ = RunSpec(task, data, spec, seed, cfg, "test", {})
    model, method = prepare(spec_)
    return train(spec_, model, method, CPU, FitOptions(**kwargs)), model


def strip_speed(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in h.items() if k != "images_per_s"} for h in history]


def test_lr_schedule_by_hand() -> None:
    cfg = TrainConfig(
        epochs=120,
        batch_size=1,
        lr=1.0,
        schedule="step",
        milestones=(40, 70),
        warmup_epochs=10,
        warmup_factor=0.01,
    )
    assert lr_factor(0, cfg) == pytest.approx(0.01)
    assert lr_factor(5, cfg) == pytest.approx(0.01 + 0.99 * 0.5)
    assert lr_factor(10, cfg) == 1.0
    assert lr_factor(39, cfg) == 1.0
    assert lr_factor(40, cfg) == pytest.approx(0.1)
    assert lr_factor(70, cfg) == pytest.approx(0.01)
    cos = TrainConfig(epochs=10, batch_size=1, lr=1.0, schedule="cosine")
    assert lr_factor(0, cos) == 1.0
    assert lr_factor(5, cos) == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))


def test_same_seed_same_metrics_and_losses(digits, tiny_cfg) -> None:
    a, _ = run(digits, tiny_cfg, "cir+triplet", seed=1)
    b, _ = run(digits, tiny_cfg, "cir+triplet", seed=1)
    c, _ = run(digits, tiny_cfg, "cir+triplet", seed=2)
    assert a.metrics == b.metrics
    assert strip_speed(a.history) == strip_speed(b.history)
    assert strip_speed(a.history) != strip_speed(c.history)


def test_resume_after_interruption_is_bit_identical(
    digits, tiny_cfg, tmp_path, monkeypatch
) -> None:
    spec = "cir+center+ce"  # covers the global RNG (CIR), buffers and an auxiliary optimizer
    full, full_model = run(digits, tiny_cfg, spec, seed=0, checkpoint=tmp_path / "a.pt")

    real = engine.train_one_epoch

    def crash_in_epoch_3(*args, **kwargs):
        if args[6] == 2:  # epoch index
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "train_one_epoch", crash_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        run(digits, tiny_cfg, spec, seed=0, checkpoint=tmp_path / "b.pt")
    monkeypatch.setattr(engine, "train_one_epoch", real)
    assert torch.load(tmp_path / "b.pt", weights_only=False)["epoch"] == 2

    resumed, resumed_model = run(
        digits, tiny_cfg, spec, seed=0, checkpoint=tmp_path / "b.pt", resume=True
    )
    assert resumed.resumed_at_epoch == 2
    assert resumed.metrics == full.metrics
    assert strip_speed(resumed.history) == strip_speed(full.history)
    for (name, p), q in zip(
        full_model.state_dict().items(), resumed_model.state_dict().values(), strict=True
    ):
        assert torch.equal(p, q), name


def test_resume_refuses_a_checkpoint_of_another_config(digits, tiny_cfg, tmp_path) -> None:
    run(digits, tiny_cfg, "ce", seed=0, checkpoint=tmp_path / "c.pt", fingerprint="one")
    with pytest.raises(CirbenchError, match="different configuration"):
        run(
            digits,
            tiny_cfg,
            "ce",
            seed=0,
            checkpoint=tmp_path / "c.pt",
            resume=True,
            fingerprint="two",
        )


def test_resume_without_checkpoint_starts_fresh(digits, tiny_cfg, tmp_path) -> None:
    result, _ = run(digits, tiny_cfg, "ce", seed=0, checkpoint=tmp_path / "none.pt", resume=True)
    assert result.resumed_at_epoch is None
    assert len(result.history) == tiny_cfg.epochs


class NanAfterFirstStep(Loss):
    key = "nan"
    Config = LossConfig
    requires = frozenset({FEATURES})
    calls = 0

    def forward(self, features: Tensor, logits: Tensor | None, labels: Tensor) -> Tensor:
        NanAfterFirstStep.calls += 1
        scale = float("nan") if NanAfterFirstStep.calls > 1 else 1.0
        return features.pow(2).mean() * scale


def test_non_finite_loss_stops_with_a_clear_message(digits, tiny_cfg, tmp_path) -> None:
    task, data = digits
    model = task.build_model(data, tiny_cfg)
    method = Method(
        MethodSpec((), ("nan",)), [], [NanAfterFirstStep(LossConfig(), MethodContext(10, 64))]
    )
    with pytest.raises(
        TrainingDivergedError, match=r"loss nan, total became nan at epoch 1, step 2"
    ):
        fit(
            model,
            method,
            lambda g: task.train_batches(data, tiny_cfg, g),
            lambda m, meth, dev: Evaluation({}),
            tiny_cfg,
            0,
            CPU,
            FitOptions(checkpoint=tmp_path / "x.pt"),
        )
    assert not (tmp_path / "x.pt").exists()


def test_checkpoint_write_is_atomic(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "ck.pt"
    engine.save_checkpoint(path, {"epoch": 1})

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)  # the rename of the atomic write
    with pytest.raises(KeyboardInterrupt):
        engine.save_checkpoint(path, {"epoch": 2})
    assert torch.load(path, weights_only=False) == {"epoch": 1}
