"""Equal-budget hyper-parameter search: ``cirbench tune TASK --method A,B --trials N``.

Why: many reported gains of metric-learning losses shrink once every method gets the same tuning
budget on a held-out validation split (Musgrave, Belongie, Lim, "A Metric Learning Reality
Check", ECCV 2020, arXiv:2003.08505). Here every method gets exactly ``trials`` trials of
Optuna's TPE sampler (Bergstra et al. 2011; ``optuna.samplers.TPESampler(seed=...)``, the same
sampler seed for every method) over its own search space (:mod:`cirbench.space`), each trial one
training run on the task's validation split (``Task.validation``: a hold-out of TRAINING data,
never the test split), scored by one metric. Then each method's best configuration is trained
again on the full training split and evaluated on the test split for the given seeds. Every
run, trial or test, writes an ordinary record; its ``origin`` names the study, the trial and
the storage it came from (val records stay out of tables and checks: ``results.records_frame``).

Storage: one SQLite file beside the records, ``<out>/tune/optuna.sqlite3``, or any Optuna RDB
URL given with ``--storage`` (e.g. a PostgreSQL server, ``postgresql+psycopg2://...``; the
``postgres`` extra installs the driver), which several ``cirbench tune`` workers share. A study
is named by task, method, profile and a hash of everything that defines its search (overrides,
space, metric, seeds of sampler and trials), so rerunning the same command resumes it. The
budget holds across workers: a trial runs only if fewer than ``trials`` trials numbered before
it are finished or running (the storage numbers trials atomically); one asked for beyond that
is dropped uncounted. A trial left RUNNING by a dead worker of this host (its pid is gone) is
marked failed and uncounted, so its place is run again; a dead worker on another host is not
detected (not done). A trial whose run fails (e.g. diverged training) counts as used budget, as
it would for any method, and is recorded as failed with its reason. The test runs are made by
the worker that finds no trial running.

Same sampler seed, one worker, same storage state -> the same sequence of trials. Optuna is an
optional dependency (``pip install 'cirbench[tune]'``).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cirbench.config import Choice, Domain, FloatRange, IntRange, Overrides, apply_overrides
from cirbench.engine import EpochReport
from cirbench.errors import CirbenchError
from cirbench.results import Split
from cirbench.runner import RunSpec, train_and_record
from cirbench.space import Space, space_json, to_overrides
from cirbench.tasks import AnyTask

if TYPE_CHECKING:
    import optuna

STORAGE_FILE = "optuna.sqlite3"
#: Trials finished before the median pruner may stop one (Optuna's MedianPruner default).
PRUNE_STARTUP = 5
COUNTED = "counted"  # user attribute of a trial that used budget (finished or failed in a run)


def load_optuna() -> Any:
    try:
        import optuna  # optional: only `cirbench tune` needs it
    except ImportError:
        raise CirbenchError("cirbench tune needs Optuna: pip install 'cirbench[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def storage_url(out: Path, url: str | None = None) -> str:
    """``url`` (any Optuna RDB URL, e.g. ``postgresql+psycopg2://user@host/db``, or
    ``journal:PATH``, made absolute), else the SQLite file under ``out/tune/`` (the folder is
    created)."""
    if url and url.startswith(JOURNAL):
        return JOURNAL + str(Path(url.removeprefix(JOURNAL)).expanduser().resolve())
    if url:
        return url
    folder = out / "tune"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(folder / STORAGE_FILE).resolve()}"


JOURNAL = "journal:"


def open_storage(lib: Any, url: str) -> Any:
    """What ``optuna.create_study(storage=...)`` takes for ``url``: an RDB URL as it is, or for
    ``journal:PATH`` Optuna's journal storage on that file (a file lock per write, so workers on
    one shared file system can share it without a database server)."""
    if not url.startswith(JOURNAL):
        return url
    path = Path(url.removeprefix(JOURNAL)).expanduser()
    if not path.parent.is_dir():
        raise CirbenchError(f"--storage {url}: folder {path.parent} does not exist")
    return lib.storages.JournalStorage(lib.storages.journal.JournalFileBackend(str(path)))


def safe_url(url: str) -> str:
    """``url`` without a password, as records store it."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"


def choose_metric(task: AnyTask, metric: str | None) -> tuple[str, str]:
    """``(metric, "maximize" | "minimize")``: the given one, or the task's first non-interval
    metric; a metric the task does not report is a user error."""
    ranked = [m for m in task.metrics if m not in task.intervals]
    name = metric or (ranked[0] if ranked else "")
    if name not in ranked:
        raise CirbenchError(
            f"--metric {name!r}: {task.name} reports {', '.join(ranked) or 'no metric'}"
        )
    return name, "minimize" if name in task.lower_is_better else "maximize"


@dataclass(frozen=True)
class TuneSettings:
    """One ``cirbench tune`` command: what is searched, with what budget, and how."""

    task: AnyTask
    profile: str
    overrides: Overrides
    spaces: Mapping[str, Space]  # method spec -> its (narrowed) space
    trials: int
    metric: str
    direction: str
    seeds: tuple[int, ...]
    sampler_seed: int = 0
    trial_seed: int = 0
    command: tuple[str, ...] = ()
    storage: str | None = None  # an Optuna RDB URL or journal:PATH; None: SQLite beside records
    prune_every: int = 0  # E > 0: validate every E epochs, Optuna's MedianPruner stops trials

    def study_name(self, spec: str) -> str:
        """``task:spec:profile:hash``; the hash covers what defines the search (not the budget,
        so a larger --trials extends a study)."""
        key = {
            "overrides": self.overrides.as_list(),
            "space": {k: repr(v) for k, v in self.spaces[spec].items()},
            "metric": self.metric,
            "sampler_seed": self.sampler_seed,
            "trial_seed": self.trial_seed,
            **({"prune_every": self.prune_every} if self.prune_every else {}),
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
        return f"{self.task.name}:{spec}:{self.profile}:{digest}"


@dataclass(frozen=True)
class Progress:
    """One finished trial (``phase`` ``val``) or test run of a best trial (``test``): what the
    CLI shows."""

    spec: str
    trial: int
    done: int  # val: trials of this method that used budget; test: seeds done
    total: int  # val: the budget per method; test: the number of seeds
    value: float | None  # None: the trial failed or was pruned
    best: float | None
    eta_s: float  # seconds left for all methods' trials and the test runs
    phase: str = "val"
    note: str = ""  # why value is None: "pruned at epoch 3", "failed: ..."


@dataclass
class Clock:
    """Runs left and the time runs took so far, for the ETA."""

    runs_left: int
    durations: list[float] = field(default_factory=list)

    def tick(self, start: float) -> float:
        """Count one run begun at ``start`` (perf_counter); the ETA in seconds."""
        self.durations.append(time.perf_counter() - start)
        self.runs_left -= 1
        return self.runs_left * sum(self.durations) / len(self.durations)


@dataclass(frozen=True)
class MethodOutcome:
    """A method's study and its best trial re-run on the test split."""

    spec: str
    study: str
    best_trial: int
    best_value: float
    best_params: Mapping[str, Any]
    overrides: Overrides
    failed_trials: int
    pruned_trials: int = 0
    test_records: tuple[Path, ...] = field(default=())


def suggest(trial: optuna.Trial, space: Mapping[str, Domain]) -> dict[str, Any]:
    """One value per dimension of ``space`` from ``trial``."""
    values: dict[str, Any] = {}
    for name, domain in space.items():
        if isinstance(domain, FloatRange):
            values[name] = trial.suggest_float(name, domain.low, domain.high, log=domain.log)
        elif isinstance(domain, IntRange):
            values[name] = trial.suggest_int(name, domain.low, domain.high, log=domain.log)
        else:
            assert isinstance(domain, Choice)
            values[name] = trial.suggest_categorical(name, list(domain.values))
    return values


def run_once(
    settings: TuneSettings,
    data: Any,
    spec: str,
    seed: int,
    overrides: Overrides,
    split: Split,
    origin: Mapping[str, Any],
    out: Path,
    device: torch.device,
    eval_every: int = 0,
    on_epoch: Callable[[EpochReport], None] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Train ``spec`` with ``overrides`` on ``data`` and write its record; return both."""
    task = settings.task
    cfg = apply_overrides(task.profile(settings.profile), overrides.section("train"), "train")
    task.check(data, cfg)
    run = RunSpec(
        task, data, spec, seed, cfg, settings.profile, overrides, split=split, origin=origin
    )
    path = train_and_record(
        run, out, device, command=settings.command, on_epoch=on_epoch, eval_every=eval_every
    )
    assert path is not None  # one process: rank 0
    record: dict[str, Any] = json.loads(path.read_text())
    return path, record


def counted(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(COUNTED)]


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def alive(worker: str) -> bool:
    """Whether the worker ``host:pid`` may still run: a process of this host that no longer
    exists is dead; workers of other hosts are assumed alive."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap(lib: Any, study: optuna.Study) -> None:
    """Trials left RUNNING by a dead worker of this host fail, uncounted: their budget is free
    again (a worker on another host that died is not detected)."""
    for t in study.get_trials(deepcopy=False, states=(lib.trial.TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker")
        if isinstance(worker, str) and not alive(worker):
            study.tell(t.number, state=lib.trial.TrialState.FAIL, skip_if_finished=True)


def within_budget(lib: Any, study: optuna.Study, number: int, budget: int) -> bool:
    """Whether trial ``number`` is one of the budget: fewer than ``budget`` trials before it are
    finished-and-counted or still running (trial numbers are given out atomically by the
    storage, so concurrent workers agree)."""
    running = lib.trial.TrialState.RUNNING
    before = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.number < number and (t.user_attrs.get(COUNTED) or t.state == running)
    ]
    return len(before) < budget


def sampler_seed(settings: TuneSettings, existing: int = 0) -> int:
    """The TPE seed: ``--sampler-seed`` on the default SQLite storage (one worker: the same
    sequence of trials every time), offset by the ``existing`` trials of a resumed study (a
    resumed sampler seeded as the first one would propose the first trials' values again: its
    first ``n_startup_trials`` are random draws from the seed); with ``--storage`` also offset by
    this process id, since workers seeded alike would propose the same values (their sequence
    is not reproducible)."""
    return settings.sampler_seed + existing + (os.getpid() if settings.storage else 0)


def open_study(lib: Any, settings: TuneSettings, spec: str, storage: str) -> optuna.Study:
    """Create or resume the study of ``spec`` (several workers may share it)."""
    pruner = (
        lib.pruners.MedianPruner(n_startup_trials=PRUNE_STARTUP)
        if settings.prune_every
        else lib.pruners.NopPruner()
    )
    study: optuna.Study = lib.create_study(
        storage=open_storage(lib, storage),
        study_name=settings.study_name(spec),
        direction=settings.direction,
        sampler=lib.samplers.TPESampler(seed=sampler_seed(settings)),
        pruner=pruner,
        load_if_exists=True,
    )
    existing = len(study.get_trials(deepcopy=False))
    if existing:  # resumed: a sampler seeded for this state, not the first one's draws again
        study.sampler = lib.samplers.TPESampler(seed=sampler_seed(settings, existing))
    reap(lib, study)
    return study


def next_trial(lib: Any, study: optuna.Study, budget: int) -> optuna.Trial | None:
    """A new trial of ``study`` within the budget, or None when the budget is used or taken by
    running trials (the trial asked for is then dropped, uncounted)."""
    reap(lib, study)
    if len(counted(study)) >= budget:
        return None
    trial = study.ask()
    trial.set_user_attr("worker", worker_id())
    if within_budget(lib, study, trial.number, budget):
        return trial
    trial.set_user_attr("over_budget", True)
    study.tell(trial, state=lib.trial.TrialState.FAIL)
    return None


def tune(
    settings: TuneSettings,
    val_data: Any,
    test_data: Any,
    out: Path,
    device: torch.device,
    report: Callable[[Progress], None] = lambda p: None,
) -> list[MethodOutcome]:
    """Run every method's budget of trials on ``val_data``, then each best configuration on
    ``test_data`` for every seed; return what was found and written."""
    lib = load_optuna()
    storage = storage_url(out, settings.storage)
    specs = list(settings.spaces)
    studies = {spec: open_study(lib, settings, spec, storage) for spec in specs}
    left = sum(max(0, settings.trials - len(counted(s))) for s in studies.values())
    clock = Clock(left + len(specs) * len(settings.seeds))
    for spec, study in studies.items():
        while (trial := next_trial(lib, study, settings.trials)) is not None:
            start = time.perf_counter()
            value, note = trial_value(settings, val_data, spec, study, trial, storage, out, device)
            eta = clock.tick(start)
            done = counted(study)
            complete = [t for t in done if t.state == lib.trial.TrialState.COMPLETE]
            best = study.best_value if complete else None
            n = len(done)
            report(Progress(spec, trial.number, n, settings.trials, value, best, eta, note=note))
    running = lib.trial.TrialState.RUNNING
    if any(s.get_trials(deepcopy=False, states=(running,)) for s in studies.values()):
        return []  # other workers still run trials: the last one to finish tests
    where = (test_data, storage, out, device)
    return [test_best(settings, spec, studies[spec], *where, clock, report) for spec in specs]


def study_facts(settings: TuneSettings, spec: str) -> dict[str, Any]:
    """What every record of a study states about the search: the metric, its direction, the
    budget and the space (so a report rebuilds the study's history from records alone)."""
    return {
        "metric": settings.metric,
        "direction": settings.direction,
        "budget": settings.trials,
        "sampler": f"TPE(seed={settings.sampler_seed})",
        "space": space_json(settings.spaces[spec]),
    }


class TrialPrunedError(Exception):
    """Raised from the epoch hook to stop a trial the pruner gave up on."""

    def __init__(self, epoch: int) -> None:
        super().__init__(f"pruned at epoch {epoch}")
        self.epoch = epoch


def trial_value(
    settings: TuneSettings,
    data: Any,
    spec: str,
    study: optuna.Study,
    trial: optuna.Trial,
    storage: str,
    out: Path,
    device: torch.device,
) -> tuple[float | None, str]:
    """Train one trial on the validation split and tell the study: (value, "") or, when it
    failed or was pruned (both use budget, as they would for any method), (None, why)."""
    lib = load_optuna()
    values = suggest(trial, settings.spaces[spec])
    overrides = to_overrides(settings.overrides, values)
    origin = {
        "study": study.study_name,
        "trial": trial.number,
        "storage": safe_url(storage),
        **study_facts(settings, spec),
    }
    key = f"val_{settings.metric}"

    def prune(report: EpochReport) -> None:
        """Every E epochs: the validation value so far to the pruner, which may stop the run."""
        value = report.history[-1].get(key) if report.history else None
        if value is None:
            return
        trial.report(float(value), step=report.epoch)
        if report.epoch < report.epochs and trial.should_prune():
            raise TrialPrunedError(report.epoch)

    every = settings.prune_every
    try:
        _, record = run_once(
            settings, data, spec, settings.trial_seed, overrides, "val", origin, out, device,
            eval_every=every, on_epoch=prune if every else None,
        )  # fmt: skip
    except TrialPrunedError as exc:
        trial.set_user_attr(COUNTED, True)
        trial.set_user_attr("pruned_at_epoch", exc.epoch)
        study.tell(trial, state=lib.trial.TrialState.PRUNED)
        return None, str(exc)
    except CirbenchError as exc:
        trial.set_user_attr(COUNTED, True)
        trial.set_user_attr("error", str(exc))
        study.tell(trial, state=lib.trial.TrialState.FAIL)
        return None, f"failed: {exc}"
    if settings.metric not in record["metrics"]:
        raise CirbenchError(
            f"tune {settings.task.name}: {spec} does not report {settings.metric!r} (it reports "
            f"{', '.join(record['metrics'])}); give a --metric every method tuned reports"
        )
    value = float(record["metrics"][settings.metric])
    trial.set_user_attr(COUNTED, True)
    study.tell(trial, value)
    return value, ""


def test_best(
    settings: TuneSettings,
    spec: str,
    study: optuna.Study,
    data: Any,
    storage: str,
    out: Path,
    device: torch.device,
    clock: Clock,
    report: Callable[[Progress], None],
) -> MethodOutcome:
    """The best trial of ``spec`` trained and evaluated on the test split, one record per seed."""
    done = counted(study)
    state = load_optuna().trial.TrialState
    complete = [t for t in done if t.state == state.COMPLETE]
    if not complete:
        raise CirbenchError(
            f"tune {settings.task.name} {spec}: all {len(done)} trials failed (first reason: "
            f"{done[0].user_attrs.get('error', 'unknown') if done else 'none ran'})"
        )
    best = study.best_trial
    pruned = [t for t in done if t.state == state.PRUNED]
    overrides = to_overrides(settings.overrides, best.params)
    origin = {
        "study": study.study_name,
        "trial": best.number,
        "storage": safe_url(storage),
        **study_facts(settings, spec),
        "val_value": best.value,
        "trials": len(done),
        "pruned": len(pruned),
    }
    paths = []
    for seed in settings.seeds:
        start = time.perf_counter()
        path, record = run_once(settings, data, spec, seed, overrides, "test", origin, out, device)
        paths.append(path)
        value = record["metrics"].get(settings.metric)
        eta = clock.tick(start)
        n_seeds = len(settings.seeds)
        report(Progress(spec, best.number, len(paths), n_seeds, value, None, eta, "test"))
    assert best.value is not None
    return MethodOutcome(
        spec,
        study.study_name,
        best.number,
        best.value,
        dict(best.params),
        overrides,
        len(done) - len(complete) - len(pruned),
        len(pruned),
        tuple(paths),
    )


def describe(outcomes: Sequence[MethodOutcome]) -> list[dict[str, Any]]:
    """One row per method for the CLI's summary table."""
    return [
        {
            "method": o.spec,
            "best trial": o.best_trial,
            "val value": round(o.best_value, 4),
            "failed": o.failed_trials,
            "pruned": o.pruned_trials,
            "best config": str(o.overrides) or "(defaults)",
            "study": o.study,
        }
        for o in outcomes
    ]
