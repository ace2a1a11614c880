"""``cirbench gpu-check --tiny`` on the CPU: the GPU machine check runs end to end, so it never
rots between the rare occasions a GPU is lent (issue 18)."""

from __future__ import annotations

import json
from pathlib import Path

from cirbench import gpucheck
from cirbench.cli import main


def test_tiny_gpu_check_runs_on_cpu_and_writes_json_and_markdown(tmp_path: Path, capsys) -> None:
    out = tmp_path / "check"
    argv = ["gpu-check", "--out", str(out), "--tiny", "--device", "cpu"]
    assert main([*argv, "--tasks", "market1501,omniglot"]) == 0
    report = json.loads((out / "gpu-check.json").read_text())
    assert report["ok"] and report["tiny"]
    assert [s["task"] for s in report["smoke"]] == ["market1501", "omniglot"]
    for smoke in report["smoke"]:
        assert smoke["loss_finite"] and smoke["amp"] is False  # no AMP on the CPU
    t = report["throughput"]
    assert t["a_median"] > 0 and t["b_median"] > 0 and t["c_pipeline_images_per_s"] > 0
    assert t["b_over_a"] == t["b_median"] / t["a_median"]
    assert t["peak_mib_a_b"] is None  # no device memory figure on the CPU: n/a, not 0
    assert report["cir_overhead"]["step_s_cir_ls_triplet"] > 0
    assert 0.0 < report["reid_eval"]["cpu"]["metrics"]["recall@1"] < 1.0
    assert report["syncs"]["syncs_per_step"] is None
    summary = (out / "gpu-check.md").read_text()
    assert "b/a" in summary and "c/a" in summary and "CIR overhead" in summary
    assert summary in capsys.readouterr().out


def test_a_failing_item_is_recorded_not_raised() -> None:
    def broken() -> dict[str, object]:
        raise RuntimeError("CUDA error: out of memory")

    result = gpucheck.run_item("reid_eval", broken)
    assert result["ok"] is False and "out of memory" in str(result["error"])


def test_unknown_smoke_task_is_a_user_error(tmp_path: Path, capsys) -> None:
    argv = ["gpu-check", "--out", str(tmp_path), "--tiny", "--device", "cpu"]
    assert main([*argv, "--tasks", "marke1501"]) == 2
    assert "unknown marke1501" in capsys.readouterr().err
