"""The engine's training step against a bare loop on the CPU, side by side (issue 18).

Model and data as in the issue's earlier measurement: BoT (timm ResNet-18, last stride 1,
BNNeck) at 128x64, P x K = 8 x 4, ``ls+triplet``, Adam 3.5e-4, synthetic batches in memory.
(a) is the plainest loop (forward, loss, backward, optimizer step:
:func:`cirbench.gpucheck.bare_loop`), (b) :func:`cirbench.engine.train_one_epoch` over the
same batches with the same model, method and optimizer. Whole-step times on a shared machine
swing by several times, so the two run in paired rounds: each round times (a) and (b) over the
same ``STEPS`` batches back to back, the order flipped every round, and the figure is the median
over rounds of the per-round ratio b/a (images/s). Done at 1 thread and at the machine's thread
count; the load average at the start is recorded, since other processes share the CPUs.

Because those ratios are noisy on a loaded machine, the engine's own per-step bookkeeping (the
loss sums and the divergence record kept on the device, :class:`cirbench.engine._EpochLosses`)
is also timed alone, on four loss terms: a figure that does not swing with the load as much.

Run: ``pytest benchmarks/test_bench_engine_overhead.py -s --benchmark-json
results/benchmarks/engine-vs-bare-cpu.json``.
"""

from __future__ import annotations

import os
import statistics
import time

import torch
from pytest_benchmark.fixture import BenchmarkFixture

from cirbench import engine, gpucheck
from cirbench.gpucheck import Sizes

SIZES = Sizes("resnet18", 64, 128, 64, 8, 4, 4, 1, 9, 8, 4, (1, 1, 1), 1, None)
NUM_CLASSES = 751


def paired(threads: int, rounds: int) -> dict[str, object]:
    torch.set_num_threads(threads)
    b = gpucheck.make_bench("ls+triplet", SIZES, NUM_CLASSES, torch.device("cpu"))
    gpucheck.warm(b, SIZES)
    a_rates, b_rates = [], []
    for r in range(rounds):
        pair = [(a_rates, gpucheck.bare_loop), (b_rates, gpucheck.engine_loop)]
        for out, fn in pair if r % 2 == 0 else pair[::-1]:
            out.append(fn(b))
    ratios = [e / a for a, e in zip(a_rates, b_rates, strict=True)]
    return {
        "threads": threads,
        "rounds": rounds,
        "steps_per_round": SIZES.steps,
        "bare_images_per_s": a_rates,
        "engine_images_per_s": b_rates,
        "bare_median": statistics.median(a_rates),
        "engine_median": statistics.median(b_rates),
        "ratio_per_round": ratios,
        "ratio_median": statistics.median(ratios),
    }


def bookkeeping_us(repeats: int = 2000) -> float:
    """Median over 5 batches of the microseconds one ``_EpochLosses.add`` takes."""
    terms = {k: torch.rand((), requires_grad=True) * 2 for k in ("id", "triplet", "cir", "total")}
    per_call = []
    for _ in range(5):
        losses = engine._EpochLosses(torch.device("cpu"))
        start = time.perf_counter()
        for step in range(repeats):
            losses.add(terms, step)
        per_call.append((time.perf_counter() - start) / repeats * 1e6)
    return statistics.median(per_call)


def test_engine_vs_bare_loop_cpu(benchmark: BenchmarkFixture) -> None:
    rounds = 2 if benchmark.disabled else SIZES.rounds
    before = torch.get_num_threads()
    load = os.getloadavg()
    try:
        results = [paired(1, rounds), paired(os.cpu_count() or 1, rounds)]
    finally:
        torch.set_num_threads(before)
    torch.set_num_threads(1)
    try:
        per_step_us = bookkeeping_us()
    finally:
        torch.set_num_threads(before)
    info = {
        "model": "BoT resnet18 at 128x64, P x K 8 x 4, ls+triplet, Adam, synthetic batches",
        "load_average_at_start": load,
        "load_average_at_end": os.getloadavg(),
        "cpus": os.cpu_count(),
        "results": results,
        "engine_bookkeeping_us_per_step_1_thread": per_step_us,
    }
    benchmark.group = "engine-vs-bare"
    benchmark.extra_info.update(info)
    for r in results:
        print(
            f"\n{r['threads']} thread(s): bare {r['bare_median']:.1f} images/s, engine "
            f"{r['engine_median']:.1f} images/s, median paired ratio {r['ratio_median']:.3f}"
        )
    print(f"engine bookkeeping: {per_step_us:.1f} us per step (1 thread)")
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
