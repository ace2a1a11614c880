"""Exact-replay mode (``cirbench run --exact``): the same metrics, bit for bit, on any x86-64 CPU.

Float results on CPU depend on more than the seed: ATen picks vectorised kernels by the CPU's
instruction set (``ATEN_CPU_CAPABILITY``: avx512, avx2 or default), oneDNN picks convolution
kernels by ISA and cache size, MKL picks BLAS code paths by CPU, and every multi-threaded reduction
splits its work by the thread count. Each choice changes the order of float additions, so the same
commit gave digits top-1 97.22% under avx512 and 96.48% under avx2 for one seed.

Exact mode fixes all of them:

- ``ATEN_CPU_CAPABILITY=default``: ATen's plain (non-AVX) kernels, the same on every x86-64 CPU.
  Torch reads it once, when it initialises, so it must be in the environment before
  ``import torch``: the ``cirbench`` entry point sets it for ``run --exact`` before importing
  anything else, and a process that already imported torch relaunches itself (:func:`relaunch`).
- ``MKL_CBWR=COMPATIBLE``: MKL's conditional numerical reproducibility, one code path whatever the
  CPU (Intel's documented switch for run-to-run and CPU-to-CPU identical BLAS results).
- oneDNN off (``torch.backends.mkldnn.enabled = False``) and NNPACK off: convolutions take ATen's
  im2col + BLAS. With oneDNN off, CPU convolutions still went to NNPACK, which sizes its blocks
  from the CPU's caches (cpuinfo) and is absent on CPUs without AVX2.
- portable ``sqrt`` (:mod:`cirbench.portable`): even with default kernels, ATen's CPU ``sqrt``
  calls MKL's vector math library, whose result differs between CPUs (and is not correctly
  rounded); exact mode swaps in the IEEE square root and refuses the four other such functions.
- one thread (``OMP_NUM_THREADS=MKL_NUM_THREADS=1`` and ``torch.set_num_threads(1)``).
- ``torch.use_deterministic_algorithms(True)``; CPU only, one process (no DDP).
- seeds, as in every run.

Checked here: the digits smoke job gave identical metrics (every bit) under ``ATEN_CPU_CAPABILITY``
avx512 / avx2 / default in the caller's environment, combined with ``MKL_ENABLE_INSTRUCTIONS`` AVX2
/ AVX512 and ``OMP_NUM_THREADS`` unset / 1 / 2 (tests/test_exact.py). That was on one Intel CPU and
did not catch the last two points: the baselines it wrote failed on an AMD EPYC (2026-12-01). Since
then exact mode is also checked across CPU vendors: the job runs under ``qemu-x86_64 -cpu
Haswell-v4`` (an emulated Intel CPU) and natively, and must agree bit for bit
(tests/test_exact_cross_cpu.py, when qemu-user is installed; `.ci/run` installs it). Cost on a
2-core AMD EPYC (medians of 5 interleaved runs, benchmarks/test_bench_exact_mode.py): the smoke
command 24.7 s vs 14.3 s (x1.7), its training and evaluation alone 13.6 s vs 3.2 s (x4.3). What
exact mode cannot fix: another torch build or another architecture (aarch64) may compute
differently; the record stores both so that the gate can say so. ``x ** 0.5`` (``pow`` with
exponent 0.5) bypasses the dispatcher's ``sqrt`` and stays CPU-dependent: write ``x.sqrt()``
(cirbench's own code does).

This module does not import torch at import time: the entry point uses it before torch loads.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

#: Environment that must be in force before ``import torch``.
EXACT_ENV = {
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_CBWR": "COMPATIBLE",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
THREADS = 1
EXACT = "exact"
DEFAULT = "default"


def wants_exact(argv: Sequence[str]) -> bool:
    """Does this command line ask for an exact-mode run (``run ... --exact``)?"""
    return "--exact" in argv and "run" in argv


def prepare_environment(argv: Sequence[str]) -> None:
    """Called by the entry point before torch is imported: set :data:`EXACT_ENV` when needed."""
    if wants_exact(argv):
        os.environ.update(EXACT_ENV)


def problems() -> list[str]:
    """What in this process prevents exact mode (settings torch read when it initialised)."""
    import torch

    found = []
    capability = torch.backends.cpu.get_cpu_capability()
    if capability != "DEFAULT":
        found.append(f"torch runs {capability} kernels (ATEN_CPU_CAPABILITY was not 'default')")
    for name, value in EXACT_ENV.items():
        if os.environ.get(name) != value:
            found.append(f"{name} is {os.environ.get(name)!r}, not {value!r}")
    return found


def relaunch(argv: Sequence[str]) -> int:
    """Run ``cirbench ARGV`` again in a fresh process with :data:`EXACT_ENV` set before torch
    loads; return its exit status."""
    env = {**os.environ, **EXACT_ENV}
    cmd = [sys.executable, "-m", "cirbench", *argv]
    return subprocess.run(cmd, env=env, check=False).returncode


def apply() -> None:
    """The settings that can be made inside a running process (after :func:`problems` is empty)."""
    import torch

    from cirbench import portable

    torch.backends.mkldnn.enabled = False  # type: ignore[assignment]
    torch.backends.nnpack.set_flags(False)  # type: ignore[no-untyped-call]
    portable.install()
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)


def describe(exact: bool) -> dict[str, Any]:
    """What fixed (or did not fix) the numerics of this run; stored in every record."""
    import torch

    from cirbench import portable

    return {
        "mode": EXACT if exact else DEFAULT,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "mkldnn": bool(torch.backends.mkldnn.enabled),
        "nnpack": bool(torch._C._get_nnpack_enabled()),
        "portable_kernels": portable.installed(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "env": {name: os.environ.get(name) for name in EXACT_ENV},
        "torch": torch.__version__,
        "machine": platform.machine(),
    }
