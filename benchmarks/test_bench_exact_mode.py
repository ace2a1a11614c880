"""What exact-replay mode costs: wall time of the digits smoke job (5 methods, seed 0, 2 epochs),
``cirbench run digits --profile smoke --seeds 0`` in default mode (ATen's best kernels for this
CPU, oneDNN, all cores) against the same command with ``--exact`` (portable kernels, MKL's
compatible path, no oneDNN, one thread; see :mod:`cirbench.exact`).

Each run is a fresh ``python -m cirbench`` process, since torch fixes its kernels when it starts;
wall time includes that start (about 3 s here), as a user sees it. The two modes alternate, which
goes first alternating too, ``ROUNDS`` times; ``extra_info`` holds both medians and the ratio
``exact_over_default`` for the whole command, and the same for the records' own ``wall_time_s``
(training and evaluation, no process start): ``runs_exact_over_default``. Timings go to the
benchmark report, never to pass/fail::

    pytest benchmarks/test_bench_exact_mode.py \
        --benchmark-json results/benchmarks/exact-mode-cpu.json
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pytest_benchmark.fixture import BenchmarkFixture

ROUNDS = 5
SMOKE = ["run", "digits", "--profile", "smoke", "--seeds", "0", "-q", "--device", "cpu"]


def smoke_job(exact: bool) -> tuple[float, float]:
    """(wall seconds of the command, summed ``wall_time_s`` of its 5 records: training and
    evaluation without process start) for one smoke job in a fresh process."""
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR")}
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "cirbench", *SMOKE, "--out", out, *(["--exact"] * exact)]
        start = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        wall = time.perf_counter() - start
        runs = sum(
            json.loads(p.read_text())["wall_time_s"] for p in Path(out).glob("runs/*/*.json")
        )
        return wall, runs


def test_exact_vs_default_smoke_job(benchmark: BenchmarkFixture) -> None:
    rounds = 1 if benchmark.disabled else ROUNDS
    times: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for i in range(rounds):  # interleaved, alternating which goes first
        for exact in (False, True) if i % 2 == 0 else (True, False):
            times[exact].append(smoke_job(exact))

    def median(exact: bool, part: int) -> float:
        return statistics.median(t[part] for t in times[exact])

    benchmark.group = "exact-mode"
    benchmark.extra_info.update(
        job="digits smoke, 5 methods, seed 0, fresh process each",
        rounds=rounds,
        default_s=median(False, 0),
        exact_s=median(True, 0),
        exact_over_default=median(True, 0) / median(False, 0),
        default_runs_s=median(False, 1),
        exact_runs_s=median(True, 1),
        runs_exact_over_default=median(True, 1) / median(False, 1),
        cpu_count=os.cpu_count(),
    )
    benchmark.pedantic(smoke_job, args=(True,), rounds=1, iterations=1)  # the exact job itself
