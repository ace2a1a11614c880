"""Exact mode across CPU vendors: the same exact job natively and on an emulated Intel CPU
(``qemu-x86_64 -cpu Haswell-v4``: GenuineIntel, other caches and feature bits than most CI
hosts) must give the same bits. It fails on the code from before MKL VML's sqrt was replaced
(cirbench.portable).

Under qemu-user a child process would run natively, so the job gets exact mode's environment up
front and runs in the emulated process itself (no relaunch). About 100x slower than native:
one epoch of two methods (Adam, convolutions, triplet distances, CIR)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cirbench.exact import EXACT_ENV

REPO = Path(__file__).resolve().parents[1]
JOB = [
    "run",
    "digits",
    "--method",
    "ce,cir+triplet",
    "--profile",
    "smoke",
    "--set",
    "train.epochs=1",
    "--seeds",
    "0",
    "--exact",
    "-q",
]
CPU = "Haswell-v4"


def results(out: Path) -> dict[str, tuple[object, object]]:
    found = {}
    for path in sorted((out / "runs" / "digits").glob("*.json")):
        rec = json.loads(path.read_text())
        assert rec["reproducibility"]["mode"] == "exact"
        found[rec["method"]] = (rec["metrics"], [h["total"] for h in rec["history"]])
    return found


@pytest.mark.slow
def test_exact_job_gives_the_same_bits_on_an_emulated_intel_cpu(tmp_path: Path) -> None:
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        pytest.skip("qemu-user is not installed (Debian: apt-get install qemu-user)")
    env = {**os.environ, **EXACT_ENV}
    native = subprocess.run(
        [sys.executable, "-m", "cirbench", *JOB, "--out", str(tmp_path / "native")],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert native.returncode == 0, native.stderr
    emulated = subprocess.run(
        [
            qemu,
            "-cpu",
            CPU,
            sys.executable,
            "-m",
            "cirbench",
            *JOB,
            "--out",
            str(tmp_path / "qemu"),
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    assert emulated.returncode == 0, emulated.stderr[-3000:]
    assert "relaunching" not in emulated.stderr  # it ran inside the emulator
    a, b = results(tmp_path / "native"), results(tmp_path / "qemu")
    assert sorted(a) == ["ce", "cir+triplet"]
    assert a == b  # every metric and every epoch's loss, bit for bit
