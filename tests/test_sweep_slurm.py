"""Integration: a sweep submitted through submitit to a real local SLURM cluster.

The cluster is started by .ci/slurm-up.sh (slurmctld + slurmd + munge on localhost; root and
Debian's packages). If it cannot start, the test fails with the daemons' logs; it never skips.
Run with ``python -m pytest -m slurm`` (CI does).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from cirbench.cli import main
from cirbench.sweep import Cell, expand, run_sweep

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "slurm-up.sh"


@pytest.fixture(scope="module")
def slurm_cluster() -> None:
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"local SLURM cluster did not start:\n{done.stdout}\n{done.stderr}")


@pytest.mark.slurm
def test_sweep_on_slurm_writes_records_and_reports_failures(slurm_cluster, tmp_path: Path) -> None:
    cells = expand(["digits"], ["ce", "cir+triplet"], [0], "smoke", ["train.epochs=1"])
    bad = Cell("digits", "ce", 1, "smoke", ("ce.weight=abc", "train.epochs=1"))
    options = {"timeout_min": 10, "cpus_per_task": 1, "slurm_partition": "debug"}
    outcomes = run_sweep(
        [*cells, bad], tmp_path, launcher="slurm", max_parallel=2, slurm_options=options
    )
    status = {o.cell: o for o in outcomes}
    assert [status[c].status for c in cells] == ["done", "done"]
    assert status[bad].status == "failed" and status[bad].log is not None
    assert status[bad].log.exists()
    records = [json.loads(p.read_text()) for p in (tmp_path / "runs" / "digits").glob("*.json")]
    assert sorted(r["method"] for r in records) == ["ce", "cir+triplet"]
    again = run_sweep(cells, tmp_path, launcher="slurm", slurm_options=options)
    assert [o.status for o in again] == ["skipped", "skipped"]


@pytest.mark.slurm
def test_tune_workers_as_a_slurm_job_array_share_one_budget(slurm_cluster, tmp_path: Path) -> None:
    """`cirbench tune --workers 2 --launcher slurm`: two array tasks share a journal-file study;
    exactly the budget of trials runs, each once, and the best is re-run on test."""
    optuna = pytest.importorskip("optuna")
    out, journal = tmp_path / "out", tmp_path / "study.journal"
    argv = ["tune", "digits", "--method", "ce", "--profile", "smoke", "--seeds", "0"]
    argv += ["--trials", "3", "--storage", f"journal:{journal}", "--out", str(out)]
    slurm = ["--launcher", "slurm", "--partition", "debug", "--time", "10", "--cpus-per-job", "1"]
    assert main([*argv, "--workers", "2", *slurm]) == 0
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))
    )
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    used = [t for t in study.trials if t.user_attrs.get("counted")]
    records = [json.loads(p.read_text()) for p in (out / "runs" / "digits").glob("*.json")]
    val = sorted(r["origin"]["trial"] for r in records if r["split"] == "val")
    assert len(used) == 3 and val == sorted(t.number for t in used)
    test = [r for r in records if r["split"] == "test"]
    assert len(test) == 1 and test[0]["origin"]["trial"] == study.best_trial.number
