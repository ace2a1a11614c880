from __future__ import annotations

import json
from pathlib import Path

import pytest

from cirbench.cli import main, parse_seeds
from cirbench.errors import CirbenchError

SMOKE = ["--profile", "smoke", "--seeds", "0", "-q"]


def run(tmp_path: Path, *args: str) -> int:
    return main(["run", *args, "--out", str(tmp_path)])


def records(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "runs").glob("*/*.json"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["digitz"], "unknown task 'digitz'. Did you mean 'digits'"),
        (["digits", "--method", "tripplet"], "unknown method 'tripplet'. Did you mean 'triplet'"),
        (["digits", "--method", "cir"], "has no loss"),
        (["digits", "--method", "ce+ce"], "ce given twice"),
        (["digits", "--method", "triplet", "--set", "triplet.margn=0.5"], "has no field 'margn'"),
        (["digits", "--method", "triplet", "--set", "triplet.margin=abc"], "expected float"),
        (["digits", "--method", "ce", "--set", "triplet.margin=0.5"], "not part of any method"),
        (["digits", "--set", "trian.epochs=2"], "unknown section"),
        (["digits", "--set", "train.epochs=two"], "expected int"),
        (["digits", "--set", "cir.target=median"], "must be one of mean, random"),
        (["digits", "--profile", "paper"], "has no profile 'paper'"),
        (["digits", "--seeds", "a,b"], "bad --seeds"),
    ],
)
def test_user_errors_exit_2_with_one_message_and_no_record(
    tmp_path: Path, capsys, args: list[str], message: str
) -> None:
    assert run(tmp_path, *args, "-q") == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith("cirbench: error: ") and "Traceback" not in err
    assert records(tmp_path) == []


def test_run_writes_one_record_per_method_and_seed(tmp_path: Path, capsys) -> None:
    assert run(tmp_path, "digits", "--method", "triplet+cir,ce", *SMOKE) == 0
    paths = records(tmp_path)
    assert [p.name.split("__")[0] for p in paths] == ["cir+triplet", "ce"][::-1]
    rec = json.loads(paths[0].read_text())
    assert rec["task"] == "digits" and rec["seed"] == 0
    assert set(rec["metrics"]) == {"top1", "recall@1", "mAP"}
    assert len(rec["history"]) == 2 and {"total", "ce", "lr", "images_per_s"} <= set(
        rec["history"][0]
    )
    prov = rec["provenance"]
    assert {"git", "packages", "device", "python"} <= set(prov)
    assert prov["packages"]["torch"]
    assert rec["dataset"]["fingerprint"].startswith("sklearn-digits:sha256:")
    assert rec["config"]["train"]["epochs"] == 2
    out = capsys.readouterr().out
    assert "| ce " in out and "| cir+triplet " in out


def test_set_overrides_reach_the_record(tmp_path: Path) -> None:
    args = ["--set", "cir.p=0.25", "train.epochs=1", "triplet.margin=0.5"]
    assert run(tmp_path, "digits", "--method", "cir+triplet", *SMOKE, *args) == 0
    rec = json.loads(records(tmp_path)[0].read_text())
    assert rec["config"]["method"]["cir"]["p"] == 0.25
    assert rec["config"]["method"]["triplet"]["margin"] == 0.5
    assert rec["config"]["train"]["epochs"] == 1
    assert sorted(rec["overrides"]) == ["cir.p=0.25", "train.epochs=1", "triplet.margin=0.5"]


def test_same_seed_same_metrics_through_the_cli(tmp_path: Path) -> None:
    for sub in ("a", "b"):
        assert run(tmp_path / sub, "digits", "--method", "cir+ce", *SMOKE) == 0
    a, b = (json.loads(records(tmp_path / s)[0].read_text()) for s in ("a", "b"))
    assert a["metrics"] == b["metrics"]
    assert a["config_hash"] == b["config_hash"]


def test_resume_of_a_finished_run_trains_nothing_and_agrees(tmp_path: Path) -> None:
    assert run(tmp_path, "digits", "--method", "ce", *SMOKE) == 0
    first = json.loads(records(tmp_path)[0].read_text())
    assert run(tmp_path, "digits", "--method", "ce", *SMOKE, "--resume") == 0
    again = json.loads(records(tmp_path)[0].read_text())
    assert again["resumed_at_epoch"] == 2
    assert again["metrics"] == first["metrics"]


def test_table_formats(tmp_path: Path, capsys) -> None:
    assert (
        run(tmp_path, "digits", "--method", "ce", "--profile", "smoke", "--seeds", "0,1", "-q") == 0
    )
    capsys.readouterr()
    assert main(["table", "digits", "--out", str(tmp_path)]) == 0
    md = capsys.readouterr().out
    assert "| ce " in md and " ± " in md and "| 2 " in md
    assert main(["table", "digits", "--out", str(tmp_path), "--format", "latex"]) == 0
    assert "\\toprule" in capsys.readouterr().out
    assert main(["table", "digits", "--out", str(tmp_path), "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("method,")
    assert main(["table", "digits", "--out", str(tmp_path / "empty")]) == 1


def test_list(capsys) -> None:
    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    for key in ("ce", "ls", "triplet", "circle", "center", "cir"):
        assert f"\n{key} " in f"\n{out}"
    assert main(["list", "methods", "ci*"]) == 0
    assert capsys.readouterr().out.split()[0] == "cir"
    assert main(["list", "tasks"]) == 0
    assert "digits" in capsys.readouterr().out


def test_datasets_verify(tmp_path: Path, capsys, shared_data: Path) -> None:
    assert main(["datasets", "verify", "cifar10-subset", "--data-root", str(shared_data)]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["datasets", "verify", "cifar10", "--data-root", str(tmp_path)]) == 1
    assert str(tmp_path / "cifar-10-batches-py") in capsys.readouterr().out
    assert main(["datasets", "verify", "cifar11", "--data-root", str(tmp_path)]) == 2
    assert main(["datasets", "list", "--data-root", str(shared_data)]) == 0
    assert "omniglot" in capsys.readouterr().out


def test_parse_seeds() -> None:
    assert parse_seeds("0,1,2") == [0, 1, 2]
    assert parse_seeds("0-2,7") == [0, 1, 2, 7]
    with pytest.raises(CirbenchError):
        parse_seeds("1,1")
