"""What exact-replay mode costs: wall time of the digits smoke job (5 methods, seed 0, 2 epochs),
``cirbench run digits --profile smoke --seeds 0`` in default mode (ATen's best kernels for this
CPU, oneDNN, all cores) against the same command with ``--exact`` (portable kernels, MKL's
compatible path, no oneDNN, one thread; see :mod:`cirbench.exact`).

Each run is a fresh ``python -m cirbench`` process, since torch fixes its kernels when it starts;
wall time includes that start (about 3 s here), as a user sees it. The two modes alternate, which
goes first alternating too, ``ROUNDS`` times; ``extra_info`` holds both medians and the ratio
``exact_over_default``. Timings go to the benchmark report, never to pass/fail::

    pytest benchmarks/test_bench_exact_mode.py \
        --benchmark-json results/benchmarks/exact-mode-cpu.json
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

from pytest_benchmark.fixture import BenchmarkFixture

ROUNDS = 5
SMOKE = ["run", "digits", "--profile", "smoke", "--seeds", "0", "-q", "--device", "cpu"]


def smoke_job(exact: bool) -> float:
    """Seconds for one smoke job in a fresh process, records to a throw-away folder."""
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR")}
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "cirbench", *SMOKE, "--out", out, *(["--exact"] * exact)]
        start = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        return time.perf_counter() - start


def test_exact_vs_default_smoke_job(benchmark: BenchmarkFixture) -> None:
    rounds = 1 if benchmark.disabled else ROUNDS
    times: dict[bool, list[float]] = {False: [], True: []}
    for i in range(rounds):  # interleaved, alternating which goes first
        for exact in (False, True) if i % 2 == 0 else (True, False):
            times[exact].append(smoke_job(exact))
    default_s, exact_s = statistics.median(times[False]), statistics.median(times[True])
    benchmark.group = "exact-mode"
    benchmark.extra_info.update(
        job="digits smoke, 5 methods, seed 0, fresh process each",
        rounds=rounds,
        default_s=default_s,
        exact_s=exact_s,
        exact_over_default=exact_s / default_s,
        cpu_count=os.cpu_count(),
    )
    benchmark.pedantic(smoke_job, args=(True,), rounds=1, iterations=1)  # the exact job itself
