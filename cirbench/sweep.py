"""Sweeps: tasks x methods x seeds, each cell one ``cirbench run`` of one method and one seed.

A cell whose result record already exists is skipped, so a sweep can be re-run after a failure or
a kill and only redoes what is missing. Cells run on the ``local`` launcher (a bounded pool of
``python -m cirbench run`` processes on this machine) or on SLURM through submitit (job arrays,
``--max-parallel`` becomes the array's parallelism). Every cell writes its own log; failures are
collected with their log paths, never stop the other cells.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cirbench.config import parse_overrides
from cirbench.errors import CirbenchError
from cirbench.methods.base import canonical_name, split_spec
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


@dataclass(frozen=True)
class Outcome:
    cell: Cell
    status: str  # "done", "skipped" or "failed"
    log: Path | None = None
    detail: str = ""


def relevant_sets(method: str, sets: Sequence[str]) -> tuple[str, ...]:
    """The ``--set`` items for this method, written as its record will write them."""
    used = set(split_spec(method)) | {"train"}
    parsed = parse_overrides(sets)
    return tuple(
        sorted(f"{sec}.{k}={v}" for sec, kv in parsed.items() if sec in used for k, v in kv.items())
    )


def expand(
    tasks: Sequence[str],
    methods: Sequence[str],
    seeds: Sequence[int],
    profile: str | None = None,
    sets: Sequence[str] = (),
) -> list[Cell]:
    """The grid in task, method, seed order; names are validated before anything runs."""
    parse_overrides(sets)  # syntax errors now, not in a hundred jobs
    cells = []
    for task_name in tasks:
        task = TASKS.get(task_name)
        prof = profile or task.default_profile
        task().profile(prof)
        for spec in dict.fromkeys(canonical_name(m) for m in methods):
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
            sets = tuple(sorted(rec.get("overrides", [])))
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


def log_path(cell: Cell, logs: Path) -> Path:
    return logs / f"{cell.task}__{cell.method}__seed{cell.seed}.log"


def run_local_cell(cell: Cell, argv: list[str], logs: Path) -> Outcome:
    path = log_path(cell, logs)
    with path.open("w") as fh:
        code = subprocess.run(
            [sys.executable, "-m", "cirbench", *argv],
            stdout=fh,
            stderr=subprocess.STDOUT,
            check=False,
        ).returncode
    if code == 0:
        return Outcome(cell, "done", path)
    return Outcome(cell, "failed", path, f"exit status {code}")


def run_local(
    cells: Sequence[Cell],
    argvs: Sequence[list[str]],
    logs: Path,
    max_parallel: int,
    report: Callable[[Outcome], None],
) -> list[Outcome]:
    outcomes = []
    with ThreadPoolExecutor(max_workers=max_parallel) as pool:
        futures = [
            pool.submit(run_local_cell, c, a, logs) for c, a in zip(cells, argvs, strict=True)
        ]
        for future in as_completed(futures):
            outcome = future.result()
            report(outcome)
            outcomes.append(outcome)
    return outcomes


def slurm_job(argv: list[str]) -> int:
    """What a SLURM array task runs: one ``cirbench run`` in-process."""
    from cirbench.cli import main

    code = main(argv)
    if code != 0:
        raise RuntimeError(f"cirbench {' '.join(argv)} exited with status {code}")
    return code


def run_slurm(
    cells: Sequence[Cell],
    argvs: Sequence[list[str]],
    logs: Path,
    options: dict[str, Any],
    report: Callable[[Outcome], None],
) -> list[Outcome]:
    try:
        import submitit
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
