"""The regression gate: exact rows (bit for bit), statistical rows (Welch over seeds), reported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fixture_records import record, write, write_digits, write_reported

from cirbench.check import ALPHA, EXACT_TOLERANCE, SCHEMA, compare_samples
from cirbench.cli import main

REPO = Path(__file__).resolve().parents[1]
CIR_CE = "cir+ce__seed1__0123456789.json"


@pytest.fixture()
def runs(tmp_path: Path) -> Path:
    write_digits(tmp_path / "runs_root")
    return tmp_path / "runs_root"


def check(runs: Path, baselines: Path, *args: str) -> int:
    return main(["check", "--runs", str(runs), "--baselines", str(baselines), *args])


def move(path: Path, metric: str, delta: float) -> None:
    rec = json.loads(path.read_text())
    rec["metrics"][metric] += delta
    path.write_text(json.dumps(rec))


def out_of(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    return " ".join((captured.out + captured.err).split())


# --- the committed baselines ------------------------------------------------------------------


def test_committed_records_pass_their_baselines(capsys: pytest.CaptureFixture[str]) -> None:
    results = REPO / "results"
    assert check(results, results / "baselines", "digits") == 0
    out = out_of(capsys)
    assert "OK: 15 checked (exact)" in out


def test_committed_digits_baseline_is_exact_and_holds_the_smoke_profile_for_ci() -> None:
    data = json.loads((REPO / "results" / "baselines" / "digits.json").read_text())
    assert data["schema"] == SCHEMA and data["alpha"] == ALPHA
    smoke = [e for e in data["entries"] if e["profile"] == "smoke" and e["seed"] == 0]
    assert {e["method"] for e in smoke} == {"ce", "ls", "cir+ce", "triplet", "cir+triplet"}
    for entry in data["entries"]:
        assert entry["mode"] == "exact" and entry["tolerance"]["exact"] == EXACT_TOLERANCE
        # how it was produced: the command, its mode and the commit
        assert "--exact" in entry["command"] and len(entry["commit"]) == 40


# --- exact rows --------------------------------------------------------------------------------


def test_exact_records_against_an_exact_baseline_compare_bit_for_bit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, baselines = tmp_path / "runs_root", tmp_path / "baselines"
    write_digits(root, exact=True)
    assert check(root, baselines, "--update") == 0
    assert check(root, baselines, "--exact") == 0
    assert "OK: 12 checked (exact)" in out_of(capsys)
    move(root / "runs" / "digits" / CIR_CE, "mAP", 1e-12)  # one last-bit change
    assert check(root, baselines, "--exact") == 1
    out = out_of(capsys)
    assert "| digits | cir+ce | default | — | 1 | exact | FAIL |" in out
    assert "differs (tolerance 0: bit for bit)" in out


def test_exact_gate_refuses_default_mode_records(
    tmp_path: Path, runs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exact_root, baselines = tmp_path / "exact_root", tmp_path / "baselines"
    write_digits(exact_root, exact=True)
    assert check(exact_root, baselines, "--update") == 0
    capsys.readouterr()
    assert check(runs, baselines, "--exact") == 1
    assert "record not made with `cirbench run --exact`" in out_of(capsys)
    # without --exact the same records are compared statistically, and agree
    assert check(runs, baselines) == 0
    assert "(statistical)" in out_of(capsys)


def test_exact_row_names_another_torch_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, baselines = tmp_path / "runs_root", tmp_path / "baselines"
    path = write(root, record("digits", "ce", 0, {"top1": 0.5}, exact=True))
    assert check(root, baselines, "--update") == 0
    rec = json.loads(path.read_text())
    rec["reproducibility"]["torch"] = "9.9.9"
    rec["metrics"]["top1"] = 0.51
    path.write_text(json.dumps(rec))
    assert check(root, baselines, "--exact") == 1
    assert "torch 9.9.9 here vs 2.14.1 in the baseline" in out_of(capsys)


# --- statistical rows --------------------------------------------------------------------------


def test_update_then_check_statistical_passes_and_a_shifted_method_fails(
    runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baselines = tmp_path / "baselines"
    assert check(runs, baselines, "--update") == 0
    assert check(runs, baselines) == 0
    assert "OK: 12 checked (statistical)" in out_of(capsys)
    # one seed moved a little: still consistent
    move(runs / "runs" / "digits" / CIR_CE, "mAP", 0.004)
    assert check(runs, baselines) == 0
    capsys.readouterr()
    for seed in range(3):  # every seed of cir+ce 5 points worse: a real change
        move(runs / "runs" / "digits" / f"cir+ce__seed{seed}__0123456789.json", "top1", -0.05)
    assert check(runs, baselines) == 1
    out = out_of(capsys)
    assert "| digits | cir+ce | default | — | 0,1,2 | statistical | FAIL | top1:" in out
    assert "t=" in out and "< alpha 0.001" in out  # 0.01 over 10 comparisons (Bonferroni)


def test_the_stored_tolerance_is_the_one_used(
    runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baselines = tmp_path / "baselines"
    assert check(runs, baselines, "--update", "--tolerance", "0.1") == 0
    data = json.loads((baselines / "digits.json").read_text())
    assert {e["tolerance"]["statistical"] for e in data["entries"]} == {0.1}
    for seed in range(3):  # 5 points: significant, but under the stored 10-point tolerance
        move(runs / "runs" / "digits" / f"cir+ce__seed{seed}__0123456789.json", "top1", -0.05)
    assert check(runs, baselines) == 0


def test_a_missing_or_new_metric_fails(runs: Path, tmp_path: Path) -> None:
    baselines = tmp_path / "baselines"
    assert check(runs, baselines, "--update") == 0
    record_path = runs / "runs" / "digits" / "ce__seed0__0123456789.json"
    rec = json.loads(record_path.read_text())
    rec["metrics"]["mINP"] = 0.5
    record_path.write_text(json.dumps(rec))
    assert check(runs, baselines) == 1


def test_identical_samples_pass_and_a_clear_shift_fails() -> None:
    base = [0.90, 0.92, 0.94]
    assert compare_samples(base, base, 0.0, ALPHA).ok
    shifted = compare_samples(base, [v - 0.1 for v in base], 0.0, ALPHA)
    assert not shifted.ok and shifted.p is not None and shifted.p < ALPHA


def test_pooled_t_test_p_value_matches_scipy() -> None:
    from scipy import stats

    a, b = [0.90, 0.92, 0.94, 0.91], [0.95, 0.99, 0.97]
    expected = stats.ttest_ind(b, a, equal_var=True).pvalue
    assert compare_samples(a, b, 0.0, ALPHA).p == pytest.approx(expected, rel=1e-9)


def test_one_value_each_side_falls_back_to_the_tolerance() -> None:
    assert compare_samples([0.5], [0.505], 0.01, ALPHA).ok
    verdict = compare_samples([0.5], [0.52], 0.01, ALPHA)
    assert not verdict.ok and "one value each side" in verdict.reason


@pytest.mark.parametrize(("n_base", "n_new"), [(3, 3), (5, 2), (3, 1)])
def test_false_alarm_rate_stays_at_alpha(n_base: int, n_new: int) -> None:
    """Unchanged method: both samples from one normal distribution. With tolerance 0 the gate
    fails with probability alpha; 10,000 seeded draws give a binomial std of 0.1 points."""
    rng = np.random.default_rng(0)
    draws = 10_000
    alarms = sum(
        not compare_samples(
            list(rng.normal(0.8, 0.02, n_base)), list(rng.normal(0.8, 0.02, n_new)), 0.0, ALPHA
        ).ok
        for _ in range(draws)
    )
    assert 0.0075 <= alarms / draws <= 0.0125


def test_tolerance_only_lowers_the_false_alarm_rate() -> None:
    rng = np.random.default_rng(1)
    draws = [(list(rng.normal(0.8, 0.02, 3)), list(rng.normal(0.8, 0.02, 3))) for _ in range(5_000)]
    without = {i for i, (a, b) in enumerate(draws) if not compare_samples(a, b, 0.0, ALPHA).ok}
    with_tol = {i for i, (a, b) in enumerate(draws) if not compare_samples(a, b, 0.02, ALPHA).ok}
    assert with_tol < without  # a strict subset: the tolerance only removes alarms


def test_a_shift_of_three_sigma_is_found_with_five_seeds() -> None:
    rng = np.random.default_rng(2)
    found = sum(
        not compare_samples(
            list(rng.normal(0.8, 0.01, 5)), list(rng.normal(0.83, 0.01, 5)), 0.0, ALPHA
        ).ok
        for _ in range(1_000)
    )
    assert found / 1_000 > 0.7


# --- gate behaviour ----------------------------------------------------------------------------


def test_nothing_matched_fails_and_unmatched_records_are_named(
    runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check(runs, tmp_path / "no-baselines") == 1
    err = capsys.readouterr().err
    assert "has no baseline entry" in err and "FAIL: no record matched" in err


def test_a_corrupt_record_fails_the_gate_by_name(
    runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baselines = tmp_path / "baselines"
    assert check(runs, baselines, "--update") == 0
    capsys.readouterr()
    path = runs / "runs" / "digits" / "cir+ce__seed2__0123456789.json"
    path.write_text(path.read_text()[:50])  # truncated: a killed copy, a full disk
    assert check(runs, baselines) == 1
    err = capsys.readouterr().err
    assert f"FAIL: {path} is not a readable record" in err


def test_an_old_schema_baseline_is_refused_with_the_fix(
    runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baselines = tmp_path / "baselines"
    baselines.mkdir()
    (baselines / "digits.json").write_text(json.dumps({"schema": 1, "entries": []}))
    assert check(runs, baselines) == 2
    assert "has schema 1" in capsys.readouterr().err


def test_against_reported_fails_outside_tolerance(
    runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reported = write_reported(tmp_path)
    assert check(runs, tmp_path, "--against", "reported", "--reported", str(reported)) == 1
    lines = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]
    # ce mAP: ours 82.00 vs reported 80.00 +/- 1 -> outside; ce top1 92 vs 91 +/- 1.5 -> inside
    assert lines[3].startswith(
        "| digits | ce | — | mean of 3 | mAP | reported | 80.000000 | 82.000000 |"
    )
    assert len(lines) == 4


def test_against_reported_passes_on_the_committed_records(
    capsys: pytest.CaptureFixture[str],
) -> None:
    results = REPO / "results"
    assert check(results, results / "baselines", "digits", "--against", "reported") == 0
