"""``cirbench tune`` on digits with tiny budgets: equal trials per method on the validation split,
the best configuration re-run on test with records naming study and trial, the SQLite study
resumed without new trials, and the same sampler seed giving the same sequence of trials."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from cirbench.cli import main
from cirbench.config import FloatRange, Overrides

optuna = pytest.importorskip("optuna")

METHODS = ("ce", "cir+ce")
ARGS = ["--method", ",".join(METHODS), "--profile", "smoke", "--seeds", "0"]


def tune(out: Path, *extra: str) -> int:
    return main(["tune", "digits", *ARGS, "--trials", "2", "--out", str(out), *extra])


def records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((out / "runs").glob("digits/*.json"))]


def trials_of(out: Path) -> dict[str, list[tuple[int, list[str]]]]:
    """Per method: (trial number, overrides) of each validation record, in trial order."""
    found: dict[str, list[tuple[int, list[str]]]] = {}
    for r in records(out):
        if r["split"] == "val":
            found.setdefault(r["method"], []).append((r["origin"]["trial"], r["overrides"]))
    return {m: sorted(v) for m, v in found.items()}


def test_equal_budget_then_best_on_test(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert tune(out, "--space", "train.lr=1e-3:1e-2") == 0
    err = capsys.readouterr().err
    assert "trial 2/2" in err and "best" in err and "ETA" in err
    assert "on test, seed 1/1" in err
    storage = out / "tune" / "optuna.sqlite3"
    assert storage.is_file()
    url = f"sqlite:///{storage.resolve()}"
    studies = optuna.get_all_study_summaries(url)
    assert sorted(s.study_name.split(":")[1] for s in studies) == sorted(METHODS)
    assert all(s.n_trials == 2 for s in studies)  # the same budget for every method
    recs = records(out)
    val = [r for r in recs if r["split"] == "val"]
    test = [r for r in recs if r["split"] == "test"]
    assert len(val) == 4 and len(test) == 2
    for r in test:
        study = optuna.load_study(study_name=r["origin"]["study"], storage=url)
        assert r["origin"]["trial"] == study.best_trial.number
        assert r["origin"]["val_value"] == study.best_value
        lr = study.best_trial.params["train.lr"]
        assert 1e-3 <= lr <= 1e-2 and f"train.lr={lr!r}" in r["overrides"]
        assert r["config"]["train"]["lr"] == lr
    for r in val:
        assert r["config"]["split"] == "val" and r["origin"]["study"].startswith("digits:")
    cir_trials = [o for m, t in trials_of(out).items() if m == "cir+ce" for _, o in t]
    assert all(any(i.startswith("cir.p=") for i in o) for o in cir_trials)

    # rerunning the same command resumes the studies: no trial is added or run twice
    assert tune(out, "--space", "train.lr=1e-3:1e-2") == 0
    assert all(s.n_trials == 2 for s in optuna.get_all_study_summaries(url))
    assert len([r for r in records(out) if r["split"] == "val"]) == 4

    # same sampler seed, one worker, fresh storage: the same sequence of trials
    again = tmp_path / "again"
    assert tune(again, "--space", "train.lr=1e-3:1e-2") == 0
    assert trials_of(again) == trials_of(out)


def test_bad_tune_arguments_exit_2(capsys) -> None:
    assert main(["tune", "digits", "--trials", "0"]) == 2
    assert "--trials 0" in capsys.readouterr().err
    assert main(["tune", "digits", "--trials", "1", "--metric", "acc"]) == 2
    assert "--metric 'acc': digits reports top1, recall@1, mAP" in capsys.readouterr().err


def test_a_metric_one_method_lacks_stops_with_one_line(tmp_path: Path, capsys) -> None:
    args = ["tune", "digits", "--method", "triplet", "--profile", "smoke", "--trials", "1"]
    assert main([*args, "--metric", "top1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "triplet does not report 'top1'" in err and "give a --metric" in err


def test_more_workers_need_a_shared_storage(capsys) -> None:
    assert main(["tune", "digits", "--trials", "2", "--workers", "2"]) == 2
    assert "give --storage journal:PATH" in capsys.readouterr().err
    assert main(["tune", "digits", "--trials", "2", "--prune", "-1"]) == 2
    assert "--prune -1: give E >= 1" in capsys.readouterr().err


def test_prune_reports_every_epoch_on_the_validation_split(tmp_path: Path) -> None:
    """--prune E: each trial reports its validation value every E epochs to the study (the
    pruner's input); the record keeps the same curve as eval_history."""
    out = tmp_path / "out"
    args = ["--method", "ce", "--profile", "smoke", "--seeds", "0", "--trials", "2"]
    assert main(["tune", "digits", *args, "--prune", "1", "--out", str(out)]) == 0
    url = f"sqlite:///{(out / 'tune' / 'optuna.sqlite3').resolve()}"
    (summary,) = optuna.get_all_study_summaries(url)
    study = optuna.load_study(study_name=summary.study_name, storage=url)
    val = {r["origin"]["trial"]: r for r in records(out) if r["split"] == "val"}
    for trial in study.trials:
        curve = {e["epoch"]: e["top1"] for e in val[trial.number]["eval_history"]}
        assert trial.intermediate_values == curve and sorted(curve) == [1, 2]
        assert trial.value == val[trial.number]["metrics"]["top1"]


def test_a_pruned_trial_uses_budget_and_writes_no_record(tmp_path: Path) -> None:
    from cirbench.tasks import TASKS
    from cirbench.tune import COUNTED, TuneSettings, trial_value

    class Always(optuna.pruners.BasePruner):
        def prune(self, study: Any, trial: Any) -> bool:
            return True

    task = TASKS.get("digits")()
    cfg = task.profile("smoke")
    data = task.validation(task.load(tmp_path), cfg)
    space = {"train.lr": FloatRange(1e-3, 1e-2, log=True)}
    settings = TuneSettings(
        task, "smoke", Overrides(), {"ce": space}, 1, "top1", "maximize", (0,), prune_every=1
    )
    study = optuna.create_study(direction="maximize", pruner=Always())
    trial = study.ask()
    cpu = torch.device("cpu")
    value, note = trial_value(settings, data, "ce", study, trial, "sqlite://", tmp_path, cpu)
    assert (value, note) == (None, "pruned at epoch 1")
    (frozen,) = study.trials
    assert frozen.state == optuna.trial.TrialState.PRUNED and frozen.user_attrs[COUNTED]
    assert list(frozen.intermediate_values) == [1]
    assert not list(tmp_path.glob("runs/digits/*.json"))


def test_journal_storage_and_two_local_workers_share_one_budget(tmp_path: Path) -> None:
    """Two worker processes on a journal file: exactly the budget of trials, each trial once
    (distinct numbers, one record each), the best re-run on test."""
    out = tmp_path / "out"
    journal = tmp_path / "study.journal"
    args = ["--method", "ce", "--profile", "smoke", "--seeds", "0", "--trials", "3"]
    argv = ["tune", "digits", *args, "--storage", f"journal:{journal}", "--out", str(out)]
    assert main([*argv, "--workers", "2"]) == 0
    assert sorted((out / "tune" / "logs").glob("digits__tune__worker*.log"))
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))
    )
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    used = [t for t in study.trials if t.user_attrs.get("counted")]
    assert len(used) == 3
    val = [r for r in records(out) if r["split"] == "val"]
    assert sorted(r["origin"]["trial"] for r in val) == sorted(t.number for t in used)
    test = [r for r in records(out) if r["split"] == "test"]
    assert len(test) == 1 and test[0]["origin"]["trial"] == study.best_trial.number
    # the same command again (one worker) resumes the study: nothing new runs
    assert main(argv) == 0
    assert len([r for r in records(out) if r["split"] == "val"]) == 3


def test_extending_a_study_draws_new_configurations(tmp_path: Path) -> None:
    """A resumed study (a larger --trials) must not re-propose the first trials' values: a
    sampler seeded as the first run's would repeat its random start-up draws."""
    out = tmp_path / "out"
    args = ["tune", "digits", "--method", "ce", "--profile", "smoke", "--seeds", "0"]
    assert main([*args, "--trials", "2", "--out", str(out)]) == 0
    assert main([*args, "--trials", "4", "--out", str(out)]) == 0
    (ce,) = trials_of(out).values()
    assert [n for n, _ in ce] == [0, 1, 2, 3]
    assert len({tuple(o) for _, o in ce}) == 4, ce
