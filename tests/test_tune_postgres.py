"""``cirbench tune --storage`` on a real PostgreSQL server started for the test (Debian's
``postgresql`` package: initdb + pg_ctl on a free localhost port, trust auth, torn down after):
two workers share one study and run exactly the budget, each trial once; a worker killed in the
middle of a trial leaves its place to the other, which still runs exactly the budget.
Marked ``postgres`` (``.ci/run`` installs the package and runs ``pytest -m postgres``)."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.postgres
optuna = pytest.importorskip("optuna")
pytest.importorskip("psycopg2")

BUDGET = 4


def server_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")), "")
    if not found:
        pytest.skip(f"PostgreSQL's {name} not found: apt-get install postgresql")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def postgres() -> Iterator[str]:
    """A running server and an empty database; its URL."""
    initdb, pg_ctl, createdb = (server_bin(n) for n in ("initdb", "pg_ctl", "createdb"))
    base = Path(tempfile.mkdtemp(prefix="cirbench-pg-"))  # /tmp: reachable by user postgres
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(base, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = base / "data", free_port()
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True)  # noqa: E731
    run(initdb, "-D", str(data), "-A", "trust", "-U", "cirbench", "--no-sync")
    options = f"-p {port} -k {base} -c listen_addresses=localhost -c fsync=off"
    run(pg_ctl, "-D", str(data), "-l", str(base / "log"), "-o", options, "-w", "start")
    try:
        run(createdb, "-h", "localhost", "-p", str(port), "-U", "cirbench", "tune")
        yield f"postgresql+psycopg2://cirbench@localhost:{port}/tune"
    finally:
        run(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


def worker(url: str, out: Path) -> subprocess.Popen[bytes]:
    args = ["tune", "digits", "--method", "ce", "--profile", "smoke", "--seeds", "0"]
    cmd = [sys.executable, "-m", "cirbench", *args, "--trials", str(BUDGET)]
    return subprocess.Popen([*cmd, "--storage", url, "--out", str(out)], stderr=subprocess.PIPE)


def study_of(url: str) -> optuna.Study:
    (summary,) = optuna.get_all_study_summaries(url)
    return optuna.load_study(study_name=summary.study_name, storage=url)


def val_records(out: Path) -> list[dict]:
    recs = [json.loads(p.read_text()) for p in (out / "runs").glob("digits/*.json")]
    return [r for r in recs if r["split"] == "val"]


def check_budget(url: str, out: Path) -> None:
    trials = study_of(url).get_trials()
    used = [t for t in trials if t.user_attrs.get("counted")]
    assert len(used) == BUDGET and all(t.state.name == "COMPLETE" for t in used)
    numbers = [r["origin"]["trial"] for r in val_records(out)]
    assert len(numbers) == len(set(numbers))  # no trial run twice
    assert {t.number for t in used} <= set(numbers)  # every counted trial has its record
    tests = [json.loads(p.read_text()) for p in (out / "runs").glob("digits/*.json")]
    assert [r["seed"] for r in tests if r["split"] == "test"] == [0]


def test_two_workers_share_the_budget(postgres: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    workers = [worker(postgres, out), worker(postgres, out)]
    for w in workers:
        _, err = w.communicate(timeout=600)
        assert w.returncode == 0, err.decode()
    check_budget(postgres, out)


def test_a_killed_worker_leaves_its_trial_to_the_other(postgres: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = worker(postgres, out)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # kill it inside its first trial
        summaries = optuna.get_all_study_summaries(postgres)
        running = summaries and study_of(postgres).get_trials(
            states=(optuna.trial.TrialState.RUNNING,)
        )
        if running and running[0].user_attrs.get("worker"):
            break
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    second = worker(postgres, out)
    _, err = second.communicate(timeout=600)
    assert second.returncode == 0, err.decode()
    check_budget(postgres, out)
    failed = study_of(postgres).get_trials(states=(optuna.trial.TrialState.FAIL,))
    assert any(not t.user_attrs.get("counted") for t in failed)  # the killed one, uncounted
