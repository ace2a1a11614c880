from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixture_records import write_digits, write_reported

from cirbench.check import BASELINE_ATOL
from cirbench.cli import main

REPO = Path(__file__).resolve().parents[1]


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


def test_committed_records_pass_their_baselines(capsys: pytest.CaptureFixture[str]) -> None:
    results = REPO / "results"
    assert check(results, results / "baselines", "digits") == 0
    assert "OK: 15 checked" in capsys.readouterr().out


def test_baseline_holds_the_smoke_profile_for_ci() -> None:
    data = json.loads((REPO / "results" / "baselines" / "digits.json").read_text())
    smoke = {e["method"] for e in data["entries"] if e["profile"] == "smoke" and e["seed"] == 0}
    assert smoke == {"ce", "ls", "cir+ce", "triplet", "cir+triplet"}
    assert data["tolerance_abs"] == BASELINE_ATOL


def test_update_then_check_passes_and_a_moved_record_fails(
    runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baselines = tmp_path / "baselines"
    assert check(runs, baselines, "--update") == 0
    assert check(runs, baselines) == 0
    assert "OK: 12 checked" in capsys.readouterr().out
    record = runs / "runs" / "digits" / "cir+ce__seed1__0123456789.json"
    move(record, "mAP", BASELINE_ATOL / 2)  # inside the band
    assert check(runs, baselines) == 0
    move(record, "mAP", 1e-3)  # one flipped retrieval: outside
    capsys.readouterr()
    assert check(runs, baselines) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "FAIL: 1 metric(s) outside tolerance" in out
    # percent: expected, got, diff, tolerance
    assert (
        "| digits | cir+ce | default | 1 | mAP | 83.000000 | 83.105000 | +0.105000 | 0.01 |" in out
    )
    assert str(record) in out


def test_a_missing_or_new_metric_fails(runs: Path, tmp_path: Path) -> None:
    baselines = tmp_path / "baselines"
    assert check(runs, baselines, "--update") == 0
    record = runs / "runs" / "digits" / "ce__seed0__0123456789.json"
    rec = json.loads(record.read_text())
    rec["metrics"]["mINP"] = 0.5
    record.write_text(json.dumps(rec))
    assert check(runs, baselines) == 1


def test_nothing_matched_fails_and_unmatched_records_are_named(
    runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check(runs, tmp_path / "no-baselines") == 1
    err = capsys.readouterr().err
    assert "has no baseline entry" in err and "FAIL: no record matched" in err


def test_corrupt_record_is_skipped_by_name_and_never_counts(
    runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baselines = tmp_path / "baselines"
    assert check(runs, baselines, "--update") == 0
    (runs / "runs" / "digits" / "broken.json").write_text("{not json")
    assert check(runs, baselines) == 0
    captured = capsys.readouterr()
    assert "broken.json" in captured.err and "OK: 12 checked" in captured.out


def test_against_reported_fails_outside_tolerance(
    runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reported = write_reported(tmp_path)
    assert check(runs, tmp_path, "--against", "reported", "--reported", str(reported)) == 1
    lines = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]
    # ce mAP: ours 82.00 vs reported 80.00 +/- 1 -> outside; ce top1 92 vs 91 +/- 1.5 -> inside
    assert lines[3].startswith("| digits | ce | — | mean of 3 | mAP | 80.000000 | 82.000000 |")
    assert len(lines) == 4


def test_against_reported_passes_on_the_committed_records(
    capsys: pytest.CaptureFixture[str],
) -> None:
    results = REPO / "results"
    assert check(results, results / "baselines", "digits", "--against", "reported") == 0
