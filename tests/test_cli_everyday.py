"""Everyday commands: --config files, `cirbench config`, `cirbench clean`, Ctrl-C, metric order."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

import cirbench.cli as cli
from cirbench.cli import INTERRUPTED, main
from cirbench.reporting import format_table


def resolved(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main(["config", "digits", *argv]) == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_config_prints_the_resolved_profile_and_method_configs(capsys) -> None:
    out = resolved(capsys, "--method", "triplet+cir", "--profile", "smoke")
    assert out["task"] == "digits" and out["profile"] == "smoke"
    assert out["train"]["epochs"] == 2 and out["train"]["lr"] == 3e-3
    assert out["methods"]["cir+triplet"]["cir"]["p"] == 0.5
    assert set(out["methods"]["cir+triplet"]) == {"cir", "triplet"}


def test_config_file_then_set_flags_the_flag_wins(tmp_path: Path, capsys) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("train: {epochs: 7, milestones: [3, 5]}\ncir: {p: 0.2, target: random}\n")
    out = resolved(capsys, "--method", "cir+ce", "--config", str(path), "--set", "cir.p=0.3")
    assert out["train"]["epochs"] == 7 and out["train"]["milestones"] == [3, 5]
    assert out["methods"]["cir+ce"]["cir"]["p"] == 0.3  # --set after the file
    assert out["methods"]["cir+ce"]["cir"]["target"] == "random"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train: [1, 2]", "expected sections of fields"),
        ("train: {epochs: abc}", "--set train.epochs='abc': expected int"),
        ("cir: {p: 2.0}", "--set cir"),
        ("train: {epochs: {a: 1}}", "is a mapping"),
        ("train: {epochs: 3", "not YAML"),
    ],
)
def test_bad_config_files_exit_2_with_one_line(tmp_path: Path, capsys, text, message) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["config", "digits", "--method", "cir+ce", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_missing_config_file_exits_2(tmp_path: Path, capsys) -> None:
    assert main(["config", "digits", "--config", str(tmp_path / "none.yaml")]) == 2
    assert "cannot read it" in capsys.readouterr().err


def test_clean_removes_checkpoints_of_finished_runs_only(tmp_path: Path, capsys) -> None:
    done = tmp_path / "checkpoints" / "digits" / "ce__seed0__abc.pt"
    unfinished = tmp_path / "checkpoints" / "digits" / "ce__seed1__abc.pt"
    for path in (done, unfinished):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"0" * 1024)
    record = tmp_path / "runs" / "digits" / "ce__seed0__abc.json"
    record.parent.mkdir(parents=True)
    record.write_text("{}")
    assert main(["clean", "--out", str(tmp_path)]) == 0
    assert not done.exists() and unfinished.exists()
    assert "removed 1 checkpoint(s)" in capsys.readouterr().err
    assert main(["clean", "--out", str(tmp_path), "--all"]) == 0
    assert not unfinished.exists() and record.exists()


def test_ctrl_c_says_how_to_resume_and_exits_130(tmp_path: Path, monkeypatch, capsys) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "train_and_record", interrupted)
    code = main(["run", "digits", "--method", "ce", "--seeds", "0", "--out", str(tmp_path)])
    assert code == INTERRUPTED == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err


def test_tables_order_metrics_naturally_recall_5_before_10() -> None:
    rows = [
        {"task": "other", "method": "m", "seed": s, "profile": "", "overrides": "", "path": str(s)}
        | {"recall@10": 0.9, "recall@5": 0.8, "recall@1": 0.5}
        for s in range(2)
    ]
    header = format_table(pd.DataFrame(rows)).splitlines()[0]
    assert header.index("recall@1 ") < header.index("recall@5 ") < header.index("recall@10 ")


def test_without_a_terminal_each_epoch_is_a_line_before_the_run_ends(tmp_path: Path) -> None:
    """As in a SLURM or nohup log: 'run k of N', then one flushed line per epoch."""
    import subprocess
    import sys

    argv = ["run", "digits", "--method", "ce", "--seeds", "0", "--profile", "smoke"]
    argv += ["--set", "train.epochs=3", "--out", str(tmp_path)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cirbench", *argv],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()
    epoch1 = proc.stderr.readline()
    # the record is written only after the last epoch: the line came while training
    assert not list(tmp_path.glob("runs/digits/*.json"))
    rest = proc.stderr.read()
    assert proc.wait() == 0
    assert first.startswith("run 1/1: digits ce seed 0")
    assert epoch1.startswith("digits ce seed 0: epoch 1/3 loss ") and "ETA" in epoch1
    assert "epoch 3/3" in rest and "done in" in rest
    log = (tmp_path / "logs" / "digits").glob("ce__seed0__*.csv")
    rows = next(log).read_text().splitlines()
    assert rows[0].startswith("epoch,lr,ce,total,images_per_s") and len(rows) == 4


def test_tensorboard_logger(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    argv = ["run", "digits", "--method", "ce", "--seeds", "0", "--profile", "smoke", "-q"]
    assert main([*argv, "--logger", "tensorboard", "--out", str(tmp_path)]) == 0
    events = list((tmp_path / "tensorboard" / "digits").glob("ce__seed0__*/events.out.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize(
    ("argv", "verbose"),
    [(["run", "digits"], False), (["-v", "run", "digits"], True), (["run", "digits", "-v"], True)],
)
def test_verbose_before_or_after_the_subcommand(argv: list[str], verbose: bool) -> None:
    assert cli.build_parser().parse_args(argv).verbose is verbose


def test_compile_flag_compiles_the_model_and_says_so_in_the_record(
    tmp_path: Path, monkeypatch
) -> None:
    """``--compile`` changes how a run computes, not what: same record name, flag recorded."""
    import json

    from cirbench.models import EmbeddingNet

    calls: list[str] = []
    monkeypatch.setattr(EmbeddingNet, "compile", lambda self: calls.append(type(self).__name__))
    argv = ["run", "digits", "--method", "ce", "--seeds", "0", "--profile", "smoke", "-q"]
    assert main([*argv, "--compile", "--out", str(tmp_path / "a")]) == 0
    assert main([*argv, "--out", str(tmp_path / "b")]) == 0
    (a,) = (tmp_path / "a" / "runs" / "digits").glob("*.json")
    (b,) = (tmp_path / "b" / "runs" / "digits").glob("*.json")
    assert calls == ["SmallCNN"] and a.name == b.name
    assert json.loads(a.read_text())["compiled"] is True
    assert json.loads(b.read_text())["compiled"] is False


def test_eval_every_logs_a_validation_curve_without_changing_the_run(tmp_path: Path) -> None:
    """Evaluating every epoch restores every random state: the final metrics and the training
    losses are the same bits as without it."""
    import json

    argv = ["run", "digits", "--method", "cir+ce", "--seeds", "0", "--profile", "smoke", "-q"]
    argv += ["--split", "val"]
    assert main([*argv, "--eval-every", "1", "--out", str(tmp_path / "a")]) == 0
    assert main([*argv, "--out", str(tmp_path / "b")]) == 0
    (a,) = (tmp_path / "a" / "runs" / "digits").glob("*.json")
    (b,) = (tmp_path / "b" / "runs" / "digits").glob("*.json")
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())

    def losses(r: dict) -> list[dict]:  # images/s is a timing, not a result
        return [{k: v for k, v in e.items() if k != "images_per_s"} for e in r["history"]]

    assert ra["metrics"] == rb["metrics"] and losses(ra) == losses(rb)
    assert [e["epoch"] for e in ra["eval_history"]] == [1, 2] and "eval_history" not in rb
    assert ra["eval_history"][-1]["top1"] == ra["metrics"]["top1"]  # the last one is the final
    (log,) = (tmp_path / "a" / "logs" / "digits").glob("*.csv")
    assert "val_top1" in log.read_text().splitlines()[0]


def test_eval_every_refuses_the_test_split(tmp_path: Path, capsys) -> None:
    argv = ["run", "digits", "--method", "ce", "--seeds", "0", "--profile", "smoke"]
    assert main([*argv, "--eval-every", "1", "--out", str(tmp_path)]) == 2
    assert "use it with --split val" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_closed_output_pipe_exits_141_without_a_traceback(tmp_path: Path) -> None:
    import subprocess
    import sys

    from fixture_records import write_digits

    write_digits(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cirbench", "table", "digits", "--runs", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # like `| head` that already left
    err = proc.stderr.read().decode()
    assert proc.wait() == 141, err
    assert "Traceback" not in err
