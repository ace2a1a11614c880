"""Forward + backward time of every loss method on a re-ID sized batch.

A batch is P x K = 64 identities x 4 images of 2048-d float32 features (the strong re-ID
baseline's feature size), with a 2048 -> 64 linear head for the losses that read logits.
Runs on CUDA when available, else CPU. Run with ``pytest benchmarks/test_bench_losses.py``;
timings go to the benchmark report (``--benchmark-json`` keeps ``extra_info``), never to
pass/fail.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import pytest
import torch
from pytest_benchmark.fixture import BenchmarkFixture
from torch import nn

from cirbench.methods import Method, MethodContext, build_method
from cirbench.methods.base import LOGITS

P, K, DIM = 64, 4, 2048
SPECS = ["ce", "ls", "triplet", "circle", "center", "cir+ce", "cir+triplet", "cir+circle"]
OVERHEAD_ROUNDS = 30
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class Setup:
    method: Method
    head: nn.Linear | None
    features: torch.Tensor
    labels: torch.Tensor


def make_setup(spec: str) -> Setup:
    torch.manual_seed(0)
    method = build_method(spec, MethodContext(num_classes=P, feature_dim=DIM)).to(DEVICE)
    method.train()
    head = nn.Linear(DIM, P).to(DEVICE) if LOGITS in method.requires else None
    labels = torch.arange(P, device=DEVICE).repeat_interleave(K)
    features = torch.randn(P * K, DIM, device=DEVICE, requires_grad=True)
    return Setup(method, head, features, labels)


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def step(setup: Setup) -> None:
    setup.features.grad = None
    setup.method.zero_grad(set_to_none=True)
    if setup.head is not None:
        setup.head.zero_grad(set_to_none=True)
    setup.method(setup.features, setup.labels, setup.head)["total"].backward()
    sync()


def timed(setup: Setup) -> float:
    start = time.perf_counter()
    step(setup)
    return time.perf_counter() - start


@pytest.mark.parametrize("spec", SPECS, ids=SPECS)
def test_loss_forward_backward(benchmark: BenchmarkFixture, spec: str) -> None:
    benchmark.group = "losses"
    benchmark.extra_info["device"] = str(DEVICE)
    setup = make_setup(spec)
    benchmark(step, setup)
    assert setup.features.grad is not None


def interleaved_medians(plain: Setup, cir: Setup, rounds: int) -> tuple[float, float]:
    """Median step times of ``plain`` and ``cir``, alternating which runs first each round."""
    t_plain: list[float] = []
    t_cir: list[float] = []
    for i in range(rounds):
        if i % 2:
            t_cir.append(timed(cir))
            t_plain.append(timed(plain))
        else:
            t_plain.append(timed(plain))
            t_cir.append(timed(cir))
    return statistics.median(t_plain), statistics.median(t_cir)


@pytest.mark.parametrize("base", ["ce", "triplet", "circle"])
def test_cir_overhead(benchmark: BenchmarkFixture, base: str) -> None:
    plain, cir = make_setup(base), make_setup(f"cir+{base}")
    rounds = 2 if benchmark.disabled else OVERHEAD_ROUNDS
    for _ in range(3):
        step(plain)
        step(cir)
    base_s, cir_s = interleaved_medians(plain, cir, rounds)
    benchmark.group = "cir-overhead"
    benchmark.extra_info.update(
        device=str(DEVICE),
        base=base,
        rounds=rounds,
        base_median_s=base_s,
        cir_median_s=cir_s,
        cir_overhead_ratio=cir_s / base_s,
    )
    benchmark.pedantic(step, args=(cir,), rounds=rounds, iterations=1, warmup_rounds=1)
