"""Exact-replay mode end to end: the committed exact baseline must be replayed bit for bit whatever
the caller's kernel, BLAS and thread settings, and a changed method must fail the gate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cirbench.cli import main

REPO = Path(__file__).resolve().parents[1]
BASELINES = REPO / "results" / "baselines"
SMOKE = ["--profile", "smoke", "--seeds", "0", "-q"]
NUMERIC_ENV = ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR", "OMP_NUM_THREADS")


def cirbench(
    args: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``cirbench ARGS`` in a fresh process (torch initialises there, as for a user)."""
    base = {k: v for k, v in os.environ.items() if k not in NUMERIC_ENV}
    return subprocess.run(
        [sys.executable, "-m", "cirbench", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )


def metrics(out: Path) -> dict[str, dict[str, float]]:
    found = {}
    for path in sorted((out / "runs" / "digits").glob("*.json")):
        rec = json.loads(path.read_text())
        found[rec["method"]] = rec["metrics"]
    return found


# Kernels (ATen), BLAS code path (MKL) and threads as a user's machine may have them; exact mode
# must override every one. avx512 asked for on a CPU without it falls back to avx2 in torch.
ENVS = {
    "avx512-AVX512-unset": {"ATEN_CPU_CAPABILITY": "avx512", "MKL_ENABLE_INSTRUCTIONS": "AVX512"},
    "avx2-AVX2-2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "OMP_NUM_THREADS": "2",
    },
    "default-AVX512-1": {
        "ATEN_CPU_CAPABILITY": "default",
        "MKL_ENABLE_INSTRUCTIONS": "AVX512",
        "OMP_NUM_THREADS": "1",
    },
}


def test_exact_gate_passes_under_every_kernel_and_thread_setting(tmp_path: Path) -> None:
    seen = {}
    for name, env in ENVS.items():
        out = tmp_path / name
        done = cirbench(
            ["run", "digits", "--method", "ls,cir+triplet", "--exact", "--out", str(out), *SMOKE],
            env,
        )
        assert done.returncode == 0, done.stderr
        gate = cirbench(
            ["check", "digits", "--exact", "--runs", str(out), "--baselines", str(BASELINES)]
        )
        assert gate.returncode == 0, gate.stdout + gate.stderr
        assert "OK: 2 checked (exact)" in gate.stdout
        seen[name] = metrics(out)
        repro = json.loads(next((out / "runs" / "digits").glob("ls__*.json")).read_text())
        assert repro["reproducibility"]["mode"] == "exact"
        assert repro["reproducibility"]["cpu_capability"] == "DEFAULT"
        assert repro["reproducibility"]["threads"] == 1
        assert repro["reproducibility"]["nnpack"] is False  # its blocking follows the caches
        assert repro["reproducibility"]["portable_kernels"] is True  # sqrt without MKL VML
    first = next(iter(seen.values()))
    assert all(m == first for m in seen.values())  # identical floats, every environment


def test_exact_gate_fails_on_a_changed_method(tmp_path: Path) -> None:
    done = cirbench(
        [
            "run",
            "digits",
            "--method",
            "cir+ce",
            "--set",
            "cir.p=0.9",
            "--exact",
            "--out",
            str(tmp_path),
            *SMOKE,
        ]
    )
    assert done.returncode == 0, done.stderr
    # As if the code's default had changed: the record claims the plain cir+ce config.
    path = next((tmp_path / "runs" / "digits").glob("*.json"))
    rec = json.loads(path.read_text())
    rec["overrides"] = []
    path.write_text(json.dumps(rec))
    gate = cirbench(
        ["check", "digits", "--exact", "--runs", str(tmp_path), "--baselines", str(BASELINES)]
    )
    assert gate.returncode == 1
    out = " ".join(gate.stdout.split())
    assert "| digits | cir+ce | smoke | — | 0 | exact | FAIL |" in out
    assert "bit for bit" in out


def test_exact_run_from_a_process_with_torch_loaded_relaunches(tmp_path: Path) -> None:
    mkldnn, threads = torch.backends.mkldnn.enabled, torch.get_num_threads()
    assert main(["run", "digits", "--method", "ce", "--exact", "--out", str(tmp_path), *SMOKE]) == 0
    rec = json.loads(next((tmp_path / "runs" / "digits").glob("*.json")).read_text())
    assert rec["reproducibility"]["mode"] == "exact"
    assert rec["config"]["mode"] == "exact"  # an exact and a default run are two records
    assert "--exact" in rec["provenance"]["command"]
    # this process was left as it was
    assert torch.backends.mkldnn.enabled == mkldnn and torch.get_num_threads() == threads


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--nproc", "2"], "drop --nproc"), (["--device", "cuda"], "drop --device cuda")],
)
def test_exact_refuses_what_it_cannot_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    args = ["run", "digits", "--exact", "--out", str(tmp_path), *SMOKE, *extra]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_default_mode_records_say_what_was_not_fixed(tmp_path: Path) -> None:
    assert main(["run", "digits", "--method", "ce", "--out", str(tmp_path), *SMOKE]) == 0
    rec = json.loads(next((tmp_path / "runs" / "digits").glob("*.json")).read_text())
    repro = rec["reproducibility"]
    assert repro["mode"] == "default" and "mode" not in rec["config"]
    assert repro["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert repro["threads"] == torch.get_num_threads()


def test_user_runs_go_to_an_ignored_folder_never_the_committed_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CIRBENCH_OUT", raising=False)
    assert main(["run", "digits", "--method", "ce", *SMOKE]) == 0
    assert list((tmp_path / "outputs" / "runs" / "digits").glob("ce__seed0__*.json"))
    assert not (tmp_path / "results").exists()
    monkeypatch.setenv("CIRBENCH_OUT", str(tmp_path / "mine"))
    assert main(["run", "digits", "--method", "ce", *SMOKE]) == 0
    assert list((tmp_path / "mine" / "runs" / "digits").glob("ce__seed0__*.json"))
    # `cirbench table` reads the same folder by default
    assert main(["table", "digits"]) == 0


def test_the_default_output_folder_is_git_ignored() -> None:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    probe = "outputs/runs/digits/ce__seed0__0123456789.json"
    done = subprocess.run(
        ["git", "check-ignore", "-q", probe], cwd=REPO, check=False, capture_output=True
    )
    assert done.returncode == 0, f"{probe} is not git-ignored"
