"""Bad command-line values are refused up front: exit 2, one line, no record, nothing trained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cirbench.cli import MAX_SEED, main, parse_seeds
from cirbench.errors import CirbenchError

SMOKE = ["--profile", "smoke", "--seeds", "0", "-q"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "train.lr=nan"], "expected a finite number"),
        (["--set", "train.lr=inf"], "expected a finite number"),
        (["--set", "train.lr=0"], "lr must be > 0"),
        (["--set", "train.weight_decay=-1"], "weight_decay must be >= 0"),
        (["--set", "train.weight_decay=nan"], "expected a finite number"),
        (["--set", "train.momentum=1.5"], "momentum must be in [0, 1)"),
        (["--set", "train.epochs=\u0662"], "expected int"),  # Arabic-Indic digit two
        (["--method", "ce", "--set", "ce.weight=-1"], "weight must be >= 0"),
        (["--method", "triplet", "--set", "triplet.margin=nan"], "expected a finite number"),
        (["--method", ""], "an empty method name"),
        (["--method", "ce,"], "an empty method name"),
        (["--nproc", "0"], "give 1 or more processes"),
        (["--out", ""], "give a folder"),
    ],
)
def test_refused_up_front(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    argv = ["run", "digits", *SMOKE, *args]
    if "--out" not in args:
        argv += ["--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("cirbench: error: ") and message in err and "Traceback" not in err
    assert not list(tmp_path.rglob("*.json"))


def test_repeated_set_flags_all_apply(tmp_path: Path) -> None:
    argv = ["run", "digits", "--method", "cir+ce", *SMOKE, "--out", str(tmp_path)]
    assert main([*argv, "--set", "train.epochs=1", "--set", "cir.p=0.2"]) == 0
    rec = json.loads(next(tmp_path.rglob("*.json")).read_text())
    assert sorted(rec["overrides"]) == ["cir.p=0.2", "train.epochs=1"]
    assert len(rec["history"]) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"{MAX_SEED + 1}", "seeds must be in 0.."),
        ("0-10000000", "more than 10000 seeds"),
        ("5-2", "a range runs low-high"),
        ("0-2,1", "give distinct seeds"),
        ("\u0661", "expected e.g."),
    ],
)
def test_bad_seeds(text: str, message: str) -> None:
    with pytest.raises(CirbenchError, match=message):
        parse_seeds(text)


def test_seed_ranges_are_checked_before_they_are_built() -> None:
    assert parse_seeds("0-2,7") == [0, 1, 2, 7]
    assert parse_seeds(f"{MAX_SEED}") == [MAX_SEED]
    with pytest.raises(CirbenchError, match="more than"):
        parse_seeds(f"0-{MAX_SEED}")  # would be 4 billion ints if built first


def test_sweep_max_parallel_zero_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["sweep", "--tasks", "digits", "--methods", "ce", "--max-parallel", "0"]
    assert main(argv) == 2
    assert "--max-parallel 0" in capsys.readouterr().err
