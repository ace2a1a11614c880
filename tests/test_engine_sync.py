"""The training step reads nothing back from the device per step (issue 18).

On CUDA every ``float(tensor)``, ``bool(tensor)``, ``.item()`` or ``.tolist()`` waits for the
device to finish. The engine used to call ``float`` on every loss term and ``bool(isfinite)``
every step, and CIR ``bool(known.all())``; these tests count such calls during one epoch and
require the count not to grow with the number of steps (a handful per epoch remain: the
end-of-epoch read of the sums and the divergence check). Reads made inside ``torch.optim`` are
not counted: the optimizers' step counters (``state["step"]``, read by ``_get_value``) live on
the host even when the parameters are on CUDA, so reading them does not wait for the device.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from torch import Tensor

from cirbench import engine
from cirbench.engine import TrainConfig
from cirbench.methods import MethodContext, build_method
from cirbench.runner import RunSpec, prepare

CPU = torch.device("cpu")
HOST_READS = ("__float__", "__bool__", "__int__", "__index__", "item", "tolist")


@contextmanager
def counting_host_reads() -> Iterator[Counter[str]]:
    """Count calls of the Tensor methods that copy a value to the host (and so sync on CUDA)."""
    counts: Counter[str] = Counter()
    originals = {name: getattr(Tensor, name) for name in HOST_READS}

    def wrap(name: str):  # type: ignore[no-untyped-def]
        real = originals[name]

        def counted(self: Tensor, *args, **kwargs):  # type: ignore[no-untyped-def]
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if not caller.startswith("torch.optim"):
                counts[name] += 1
            return real(self, *args, **kwargs)

        return counted

    for name in HOST_READS:
        setattr(Tensor, name, wrap(name))
    try:
        yield counts
    finally:
        for name, real in originals.items():
            setattr(Tensor, name, real)


def epoch_reads(digits, spec: str, steps: int) -> Counter[str]:
    task, data = digits
    cfg = TrainConfig(epochs=1, batch_size=64, lr=1e-3)
    run = RunSpec(task, data, spec, 0, cfg, "test", {})
    model, method = prepare(run)
    batches = list(task.train_batches(data, cfg, torch.Generator().manual_seed(0)))[:steps]
    assert len(batches) == steps
    optimizers = [engine.make_optimizer(model, cfg), *method.auxiliary_optimizers()]
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    with counting_host_reads() as counts:
        engine.train_one_epoch(model, method, batches, optimizers, scaler, CPU, 0)
    return counts


@pytest.mark.parametrize("spec", ["cir+ce", "cir+triplet", "ls"])
def test_host_reads_do_not_grow_with_steps(digits, spec: str) -> None:
    few, many = epoch_reads(digits, spec, 2), epoch_reads(digits, spec, 6)
    assert many == few, f"per-step host reads: {few} (2 steps) vs {many} (6 steps)"
    assert sum(many.values()) <= 4


def test_cir_forward_reads_nothing_back() -> None:
    torch.manual_seed(0)
    for centroids in ("batch", "ema"):
        cir = build_method("cir+ce", MethodContext(5, 8), {"cir": {"centroids": centroids}})
        cir.train()
        features = torch.randn(12, 8)
        labels = torch.tensor([0, 1, 2, 3, 4, -1, 0, 1, 2, 3, 4, 7])
        perturb = cir.perturbations[0]
        with counting_host_reads() as counts:
            moved = perturb(features, labels)
        assert sum(counts.values()) == 0, counts
        unknown = torch.tensor([5, 11])
        assert torch.equal(moved[unknown], features[unknown])
