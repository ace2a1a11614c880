from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cirbench.results import (
    SCHEMA,
    config_hash,
    load_records,
    read_record,
    record_path,
    record_problem,
    write_record,
)


def record(task: str = "digits", method: str = "ce", seed: int = 0, **metrics: float) -> dict:
    return {
        "schema": 1,
        "task": task,
        "method": method,
        "seed": seed,
        "profile": "default",
        "overrides": [],
        "config_hash": "abc",
        "metrics": metrics or {"top1": 0.5},
        "wall_time_s": 1.0,
        "provenance": {"device": "cpu"},
    }


def test_config_hash_is_stable_and_sensitive() -> None:
    a = {"train": {"lr": 0.1, "epochs": 3}, "method": {"ce": {"weight": 1.0}}}
    b = {"method": {"ce": {"weight": 1.0}}, "train": {"epochs": 3, "lr": 0.1}}
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash({**a, "train": {"lr": 0.2, "epochs": 3}})


def test_write_then_load_records(tmp_path: Path) -> None:
    for seed, acc in [(0, 0.9), (1, 0.8)]:
        write_record(
            record_path(tmp_path, "digits", "ce", seed, "abc"), record(seed=seed, top1=acc)
        )
    df = load_records(tmp_path, "digits")
    assert sorted(df["seed"]) == [0, 1]
    assert sorted(df["top1"]) == [0.8, 0.9]
    assert list(tmp_path.glob("runs/digits/.*")) == []  # no temp files left behind


def test_foreign_and_corrupt_files_are_skipped_with_a_warning(tmp_path: Path, caplog) -> None:
    runs = tmp_path / "runs" / "digits"
    write_record(runs / "good.json", record())
    (runs / "truncated.json").write_text('{"task": "digits", "metr')
    (runs / "foreign.json").write_text(json.dumps({"hello": "world"}))
    (runs / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    with caplog.at_level(logging.WARNING):
        df = load_records(tmp_path)
    assert list(df["path"]) == [str(runs / "good.json")]
    for name in ("truncated.json", "foreign.json", "binary.json"):
        assert name in caplog.text
    assert read_record(runs / "foreign.json") is None


def test_schema_version_and_overrides_are_checked() -> None:
    assert record_problem(record()) is None
    newer = {**record(), "schema": SCHEMA + 1}
    assert "upgrade cirbench" in (record_problem(newer) or "")
    assert "schema" in (record_problem({**record(), "schema": "1"}) or "")
    bad = {**record(), "overrides": ["epochs=3"]}
    assert "SECTION.FIELD=VALUE" in (record_problem(bad) or "")


def test_overrides_column_is_the_canonical_form(tmp_path: Path) -> None:
    """Records written with --set in another order group with these (one Overrides form)."""
    rec = {**record(), "overrides": ["train.epochs=3", "cir.p=0.2"]}
    write_record(tmp_path / "runs" / "digits" / "a.json", rec)
    assert list(load_records(tmp_path)["overrides"]) == ["cir.p=0.2 train.epochs=3"]


WRITER = """
import sys
from pathlib import Path

import pytest
import torch
from cirbench.results import write_record
path = Path(sys.argv[1])
big = {"schema": 1, "task": "t", "method": "m", "seed": 0, "config_hash": "h",
       "metrics": {"x": 1.0}, "history": [{"loss": i * 0.5} for i in range(300_000)]}
print("ready", flush=True)
while True:
    write_record(path, big)
"""


def test_record_survives_sigkill_during_write(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "t" / "rec.json"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 60
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # the writer is now in the middle of another write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    data = json.loads(path.read_text())  # complete, valid JSON
    assert len(data["history"]) == 300_000
    assert [p.name for p in path.parent.glob("*.json")] == ["rec.json"]


@pytest.mark.parametrize(
    "failure",
    [FileNotFoundError(2, "No such file or directory: 'git'"), subprocess.TimeoutExpired("git", 5)],
    ids=["no-git", "slow-git"],
)
def test_provenance_without_git_is_unknown_not_a_crash(
    monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    from cirbench import results

    def broken(*args: object, **kwargs: object) -> None:
        raise failure

    monkeypatch.setattr(results.subprocess, "run", broken)
    assert results.git_commit() == {"commit": None, "dirty": None}
    assert results.provenance(torch.device("cpu"))["git"]["commit"] is None


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk mid-write (ENOSPC at fsync): the old README stays whole, nothing is left."""
    import errno
    import os

    from cirbench import results

    readme = tmp_path / "README.md"
    readme.write_text("old text\n" * 1000)

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results.os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        results.write_atomic(readme, "new text\n" * 2000)
    assert readme.read_text() == "old text\n" * 1000
    assert sorted(os.listdir(tmp_path)) == ["README.md"]


def test_a_record_names_the_commit_its_run_started_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit made while a run trains is not stamped on its record (the run kept executing
    the code it imported)."""
    from cirbench import results
    from cirbench.cli import main

    heads = iter(["a" * 40, "b" * 40])
    monkeypatch.setattr(results, "_CODE_VERSION", {})
    monkeypatch.setattr(results, "git_commit", lambda: {"commit": next(heads), "dirty": False})
    args = ["run", "digits", "--method", "ce,ls", "--profile", "smoke", "--seeds", "0", "-q"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    commits = {
        json.loads(p.read_text())["provenance"]["git"]["commit"]
        for p in (tmp_path / "runs" / "digits").glob("*.json")
    }
    assert commits == {"a" * 40}  # asked once, when the first run started
