"""Sweeps: tasks x methods x seeds, each cell one ``cirbench run`` of one method and one seed;
and the workers of a distributed ``cirbench tune`` (:func:`run_workers`), on the same launchers.

A cell whose result record already exists is skipped, so a sweep can be re-run after a failure or
a kill and only redoes what is missing. Cells run on the ``local`` launcher (a bounded pool of
``python -m cirbench run`` processes on this machine) or on SLURM through submitit (job arrays,
``--max-parallel`` becomes the array's parallelism). Every cell writes its own log; failures are
collected with their log paths, never stop the other cells.
"""

from __future__ import annotations

import fcntl
import logging
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

from cirbench.config import Overrides, apply_overrides
from cirbench.entry import slurm_job
from cirbench.errors import CirbenchError
from cirbench.methods.base import (
    MethodSpec,
    check_requirements,
    check_sections,
    component_config,
)
from cirbench.results import read_record
from cirbench.tasks import TASKS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cell:
    """One run: a task, a canonical method spec, a seed, a profile and the ``--set`` items that
    concern this method (sections ``train`` or one of its components)."""

    task: str
    method: str
    seed: int
    profile: str
    sets: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.task}/{self.method}/seed{self.seed}"

    @property
    def stem(self) -> str:
        """The cell's file name stem, for its logs and its lock."""
        return f"{self.task}__{self.method}__seed{self.seed}"


@dataclass(frozen=True)
class Worker:
    """One ``cirbench tune`` worker process of a study shared through ``--storage``."""

    task: str
    index: int

    @property
    def name(self) -> str:
        return f"{self.task}/tune-worker{self.index}"

    @property
    def stem(self) -> str:
        return f"{self.task}__tune__worker{self.index}"


@dataclass(frozen=True)
class Outcome:
    cell: Cell | Worker
    status: str  # "done", "skipped" or "failed"
    log: Path | None = None
    detail: str = ""


def relevant_sets(method: str, sets: Sequence[str]) -> tuple[str, ...]:
    """The ``--set`` items for this method, written as its record will write them."""
    return tuple(Overrides.parse(sets).only({*MethodSpec.parse(method).keys, "train"}).as_list())


def expand(
    tasks: Sequence[str],
    methods: Sequence[str],
    seeds: Sequence[int],
    profile: str | None = None,
    sets: Sequence[str] = (),
) -> list[Cell]:
    """The grid in task, method, seed order; names and ``--set`` values (types, domains,
    sections) are validated before anything runs, not in a hundred jobs."""
    parsed = Overrides.parse(sets)
    specs = list(dict.fromkeys(MethodSpec.parse(m).name for m in methods))
    check_sections(parsed, specs)
    cells = []
    for task_name in tasks:
        task = TASKS.get(task_name)
        prof = profile or task.default_profile
        apply_overrides(task().profile(prof), parsed.section("train"), "train")
        for spec in specs:
            parsed_spec = MethodSpec.parse(spec)
            check_requirements(parsed_spec, task.provides, task_name)  # e.g. ce on omniglot
            for key in parsed_spec.keys:
                component_config(key, parsed, task.method_defaults)
            for seed in seeds:
                cells.append(Cell(task_name, spec, seed, prof, relevant_sets(spec, sets)))
    return cells


def completed(out: Path) -> set[Cell]:
    """Cells that have a readable record under ``out/runs`` (others are warned about and
    ignored by :func:`~cirbench.results.read_record`)."""
    done = set()
    for path in (out / "runs").glob("*/*.json"):
        rec = read_record(path)
        if rec is not None:
            sets = tuple(Overrides.parse(rec.get("overrides", [])).as_list())
            done.add(
                Cell(rec["task"], rec["method"], int(rec["seed"]), rec.get("profile", ""), sets)
            )
    return done


def cell_argv(cell: Cell, out: Path, data_root: str | None, device: str) -> list[str]:
    argv = ["run", cell.task, "--method", cell.method, "--seeds", str(cell.seed)]
    argv += ["--profile", cell.profile, "--out", str(out), "--device", device, "-q"]
    if data_root:
        argv += ["--data-root", data_root]
    if cell.sets:
        argv += ["--set", *cell.sets]
    return argv


def log_path(cell: Cell | Worker, logs: Path) -> Path:
    """A new log per attempt: ``<task>__<method>__seed<k>.<n>.log``, n = 1, 2, ..."""
    n = 1
    while (logs / f"{cell.stem}.{n}.log").exists():
        n += 1
    return logs / f"{cell.stem}.{n}.log"


class Children:
    """The cell processes running now, so that SIGTERM / SIGINT to the sweep reach them too."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: set[subprocess.Popen[bytes]] = set()
        self.stopping = False

    def start(self, cmd: list[str], log_file: IO[bytes]) -> subprocess.Popen[bytes] | None:
        with self.lock:
            if self.stopping:
                return None
            proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT)
            self.running.add(proc)
            return proc

    def done(self, proc: subprocess.Popen[bytes]) -> None:
        with self.lock:
            self.running.discard(proc)

    def stop(self, signum: int) -> None:
        with self.lock:
            self.stopping = True
            for proc in self.running:
                proc.send_signal(signum)


def cell_lock(cell: Cell | Worker, logs: Path) -> IO[bytes] | None:
    """An exclusive lock on the cell (``fcntl.flock``), or None when another sweep runs it."""
    handle = (logs / f"{cell.stem}.lock").open("ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def run_local_cell(cell: Cell | Worker, argv: list[str], logs: Path, children: Children) -> Outcome:
    lock = cell_lock(cell, logs)
    if lock is None:
        return Outcome(cell, "skipped", None, "running in another sweep")
    try:
        path = log_path(cell, logs)
        with path.open("wb") as fh:
            proc = children.start([sys.executable, "-m", "cirbench", *argv], fh)
            if proc is None:
                return Outcome(cell, "failed", path, "sweep stopped before this cell started")
            try:
                code = proc.wait()
            finally:
                children.done(proc)
    finally:
        lock.close()
    if code == 0:
        return Outcome(cell, "done", path)
    return Outcome(cell, "failed", path, f"exit status {code}")


@contextmanager
def forward_signals(children: Children) -> Iterator[None]:
    """While the block runs, SIGTERM / SIGINT stop every running cell too, then the sweep."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        children.stop(signum)
        raise KeyboardInterrupt if signum == signal.SIGINT else SystemExit(128 + signum)

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def run_local(
    cells: Sequence[Cell | Worker],
    argvs: Sequence[list[str]],
    logs: Path,
    max_parallel: int,
    report: Callable[[Outcome], None],
) -> list[Outcome]:
    outcomes = []
    children = Children()
    with forward_signals(children), ThreadPoolExecutor(max_workers=max_parallel) as pool:
        futures = [
            pool.submit(run_local_cell, c, a, logs, children)
            for c, a in zip(cells, argvs, strict=True)
        ]
        for future in as_completed(futures):
            outcome = future.result()
            report(outcome)
            outcomes.append(outcome)
    return outcomes


def run_slurm(
    cells: Sequence[Cell | Worker],
    argvs: Sequence[list[str]],
    logs: Path,
    options: dict[str, Any],
    report: Callable[[Outcome], None],
) -> list[Outcome]:
    try:
        import submitit  # optional: only the slurm launcher needs it
    except ImportError:
        raise CirbenchError(
            "--launcher slurm needs submitit: pip install 'cirbench[slurm]'"
        ) from None
    executor = submitit.AutoExecutor(folder=str(logs / "%j"), cluster="slurm")
    executor.update_parameters(**options)
    jobs = executor.map_array(slurm_job, list(argvs))
    outcomes = []
    for cell, job in zip(cells, jobs, strict=True):
        try:
            job.result()
            outcome = Outcome(cell, "done", Path(job.paths.stdout))
        except Exception as exc:  # a failed cell is reported, the others go on
            outcome = Outcome(cell, "failed", Path(job.paths.stderr), str(exc).splitlines()[-1])
        report(outcome)
        outcomes.append(outcome)
    return outcomes


def plan(cells: Sequence[Cell], out: Path) -> tuple[list[Cell], list[Cell]]:
    """Split the grid into (to run, already done)."""
    done = completed(out)
    todo = [c for c in cells if c not in done]
    return todo, [c for c in cells if c in done]


def run_sweep(
    cells: Sequence[Cell],
    out: Path,
    launcher: str = "local",
    max_parallel: int = 1,
    data_root: str | None = None,
    device: str = "auto",
    slurm_options: dict[str, Any] | None = None,
    report: Callable[[Outcome], None] = lambda o: None,
) -> list[Outcome]:
    """Run the cells that have no record yet; return one outcome per cell of the grid."""
    out = out.resolve()  # jobs may start in another working directory
    todo, done = plan(cells, out)
    skipped = [Outcome(c, "skipped") for c in done]
    for outcome in skipped:
        report(outcome)
    logs = out / "sweeps" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    argvs = [cell_argv(c, out, data_root, device) for c in todo]
    if launcher not in ("local", "slurm"):
        raise CirbenchError(f"unknown launcher {launcher!r}: use local or slurm")
    if not todo:
        return skipped
    if launcher == "local":
        ran = run_local(todo, argvs, logs, max_parallel, report)
    else:
        options = {"slurm_array_parallelism": max_parallel, **(slurm_options or {})}
        ran = run_slurm(todo, argvs, logs, options, report)
    return skipped + ran


def run_workers(
    task: str,
    argv: list[str],
    workers: int,
    out: Path,
    launcher: str = "local",
    slurm_options: dict[str, Any] | None = None,
    report: Callable[[Outcome], None] = lambda o: None,
) -> list[Outcome]:
    """Run ``workers`` copies of one ``cirbench tune`` command (``argv``, whose ``--storage``
    they share) at once, on this machine or as one SLURM job array; logs under
    ``out/tune/logs/``. Each worker runs trials until the budget is used; the last one to find
    no trial running makes the test runs (:mod:`cirbench.tune`)."""
    logs = out.resolve() / "tune" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    jobs = [Worker(task, i) for i in range(workers)]
    argvs = [list(argv) for _ in jobs]
    if launcher == "local":
        return run_local(jobs, argvs, logs, workers, report)
    if launcher == "slurm":
        options = {"slurm_array_parallelism": workers, **(slurm_options or {})}
        return run_slurm(jobs, argvs, logs, options, report)
    raise CirbenchError(f"unknown launcher {launcher!r}: use local or slurm")
