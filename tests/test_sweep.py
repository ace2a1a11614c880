from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cirbench.errors import CirbenchError
from cirbench.results import write_record
from cirbench.sweep import Cell, completed, expand, plan, run_sweep

FAST = ("train.epochs=1",)


def fake_record(out: Path, cell: Cell) -> None:
    rec = {
        "schema": 1,
        "task": cell.task,
        "method": cell.method,
        "seed": cell.seed,
        "profile": cell.profile,
        "overrides": list(cell.sets),
        "config_hash": "x",
        "metrics": {"top1": 1.0},
    }
    write_record(out / "runs" / cell.task / f"{cell.method}__seed{cell.seed}__x.json", rec)


def test_expand_is_the_validated_grid_in_order() -> None:
    cells = expand(
        ["digits"],
        ["triplet+cir", "ce", "cir+triplet"],
        [0, 1],
        "smoke",
        ["cir.p=0.3", "train.epochs=1", "triplet.margin=0.5"],
    )
    assert [(c.method, c.seed) for c in cells] == [
        ("cir+triplet", 0),
        ("cir+triplet", 1),
        ("ce", 0),
        ("ce", 1),
    ]
    assert cells[0].sets == ("cir.p=0.3", "train.epochs=1", "triplet.margin=0.5")
    assert cells[2].sets == ("train.epochs=1",)  # ce gets only the sections it uses
    assert expand(["digits"], ["ce"], [0])[0].profile == "default"
    with pytest.raises(CirbenchError, match="unknown task"):
        expand(["digitz"], ["ce"], [0])
    with pytest.raises(CirbenchError, match="unknown method"):
        expand(["digits"], ["tripplet"], [0])
    with pytest.raises(CirbenchError, match="has no profile 'nope'"):
        expand(["digits"], ["ce"], [0], profile="nope")


def test_a_cell_its_task_cannot_train_is_refused_before_any_launch() -> None:
    """ce needs a classifier; omniglot's model has none: the whole sweep is refused at once."""
    with pytest.raises(CirbenchError, match=r"loss 'ce' needs a classifier.*'omniglot'"):
        expand(["digits", "omniglot"], ["triplet", "ce"], [0])
    assert len(expand(["digits", "omniglot"], ["triplet"], [0, 1])) == 4


def test_cells_with_a_record_are_skipped(tmp_path: Path) -> None:
    cells = expand(["digits"], ["ce", "ls"], [0, 1], "smoke", FAST)
    fake_record(tmp_path, cells[1])
    (tmp_path / "runs" / "digits" / "junk.json").write_text("{not json")
    todo, done = plan(cells, tmp_path)
    assert done == [cells[1]]
    assert todo == [cells[0], cells[2], cells[3]]
    assert cells[1] in completed(tmp_path)


def test_a_failing_cell_is_reported_and_the_rest_finish(tmp_path: Path) -> None:
    good = expand(["digits"], ["ce"], [0, 1], "smoke", FAST)
    bad = Cell("digits", "ce", 2, "smoke", ("ce.weight=abc", *FAST))
    seen: list[str] = []
    outcomes = run_sweep(
        [*good, bad], tmp_path, max_parallel=2, report=lambda o: seen.append(o.status)
    )
    status = {o.cell: o for o in outcomes}
    assert [status[c].status for c in good] == ["done", "done"]
    assert status[bad].status == "failed" and status[bad].log is not None
    assert "expected float" in status[bad].log.read_text()
    assert sorted(seen) == ["done", "done", "failed"]
    again = run_sweep([*good, bad], tmp_path)
    assert [o.status for o in again] == ["skipped", "skipped", "failed"]


SWEEP = """
import sys
from pathlib import Path
from cirbench.sweep import expand, run_sweep
cells = expand(["digits"], ["ce"], [0, 1, 2], "smoke", ["train.epochs=1"])
run_sweep(cells, Path(sys.argv[1]), max_parallel=1)
"""


@pytest.mark.slow
def test_killed_sweep_reruns_only_missing_cells(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", SWEEP, str(tmp_path)], start_new_session=True)
    runs = tmp_path / "runs" / "digits"
    deadline = time.monotonic() + 120
    while not list(runs.glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its running cell
    proc.wait()
    first = {p: p.stat().st_mtime_ns for p in runs.glob("*.json")}
    assert 1 <= len(first) < 3
    cells = expand(["digits"], ["ce"], [0, 1, 2], "smoke", ["train.epochs=1"])
    outcomes = run_sweep(cells, tmp_path)
    assert sorted(o.status for o in outcomes).count("skipped") == len(first)
    assert all(o.status in ("done", "skipped") for o in outcomes)
    records = [json.loads(p.read_text()) for p in runs.glob("*.json")]
    assert sorted(r["seed"] for r in records) == [0, 1, 2]
    for path, mtime in first.items():
        assert path.stat().st_mtime_ns == mtime  # finished cells were not redone


def test_bad_set_values_are_refused_before_any_cell_runs() -> None:
    with pytest.raises(CirbenchError, match="expected float"):
        expand(["digits"], ["ce"], [0], "smoke", ["ce.weight=abc"])
    with pytest.raises(CirbenchError, match="weight must be >= 0"):
        expand(["digits"], ["ce"], [0], "smoke", ["ce.weight=-1"])
    with pytest.raises(CirbenchError, match="lr must be > 0"):
        expand(["digits"], ["ce"], [0], "smoke", ["train.lr=0"])
    with pytest.raises(CirbenchError, match="not part of any method"):
        expand(["digits"], ["ce"], [0], "smoke", ["triplet.margin=0.5"])


def test_a_cell_locked_by_another_sweep_is_not_run_twice(tmp_path: Path) -> None:
    from cirbench.sweep import cell_lock

    cells = expand(["digits"], ["ce"], [0], "smoke", FAST)
    logs = tmp_path / "sweeps" / "logs"
    logs.mkdir(parents=True)
    held = cell_lock(cells[0], logs)  # as if another sweep were running it
    assert held is not None
    outcomes = run_sweep(cells, tmp_path)
    assert [(o.status, o.detail) for o in outcomes] == [("skipped", "running in another sweep")]
    assert not list(tmp_path.glob("runs/*/*.json"))
    held.close()


def test_each_attempt_keeps_its_own_log(tmp_path: Path) -> None:
    bad = Cell("digits", "ce", 2, "smoke", ("ce.weight=abc", *FAST))
    first = run_sweep([bad], tmp_path)[0].log
    second = run_sweep([bad], tmp_path)[0].log
    assert first is not None and second is not None
    assert (first.name, second.name) == ("digits__ce__seed2.1.log", "digits__ce__seed2.2.log")
    assert first.read_text() and second.read_text()


LONG_SWEEP = """
import sys
from pathlib import Path
from cirbench.sweep import expand, run_sweep
cells = expand(["digits"], ["ce"], [0], "default", ["train.epochs=200"])
run_sweep(cells, Path(sys.argv[1]), max_parallel=1)
"""


def test_sigterm_to_a_sweep_stops_its_running_cells(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", LONG_SWEEP, str(tmp_path)])
    logs = tmp_path / "sweeps" / "logs"
    deadline = time.monotonic() + 60
    while not list(logs.glob("*.log")) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # the cell process has started

    def cells_running() -> bool:
        found = subprocess.run(["pgrep", "-f", "--", f"out {tmp_path}"], capture_output=True)
        return found.returncode == 0

    assert cells_running()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) != 0
    deadline = time.monotonic() + 15
    while cells_running() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not cells_running()
