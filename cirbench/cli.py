"""Command line: ``cirbench list|run|tune|sweep|config|clean|table|report|check|datasets|weights``.
Only this module prints.

User errors (unknown names, bad ``--set``, missing data) end with one message on stderr and exit
status 2 and write no result record; programming errors keep their traceback.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from statistics import mean
from typing import Any

import torch
import yaml
from tabulate import tabulate

from cirbench import __version__, check, distributed, exact
from cirbench.check import ALPHA, STATISTICAL_TOLERANCE
from cirbench.config import Overrides, apply_overrides, to_dict
from cirbench.data.catalog import (
    check_dataset,
    explain,
    format_status_table,
    load_catalog,
    resolve_data_root,
)
from cirbench.engine import EpochReport, TrainConfig
from cirbench.epochlog import LOGGERS
from cirbench.errors import CirbenchError, did_you_mean
from cirbench.gpucheck import gpu_check, markdown
from cirbench.methods import METHODS, MethodSpec
from cirbench.methods.base import check_sections, component_config
from cirbench.models import weights as w
from cirbench.plugins import load_plugins
from cirbench.reported import load_reported
from cirbench.reporting import (
    RecordSet,
    collect_records,
    csv_table,
    format_table,
    latex_table,
    markdown_table,
    statuses,
    write_report,
)
from cirbench.reporting.tuned import collect_studies
from cirbench.results import COMMITTED, MAX_SEED, SPLITS, default_out, load_records
from cirbench.runner import (
    RunSpec,
    build_checked,
    check_eval_every,
    method_context,
    train_and_record,
)
from cirbench.space import check_space_sections, method_space, narrow, parse_space
from cirbench.sweep import Outcome, expand, run_sweep, run_workers
from cirbench.tasks import TASKS, AnyTask, TaskData
from cirbench.tune import (
    Progress,
    TuneSettings,
    choose_metric,
    describe,
    safe_url,
    storage_url,
    tune,
)

log = logging.getLogger("cirbench")

INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C


MAX_SEEDS = 10_000  # more runs than any sweep here needs; a typo like 0-10000000 stops at once


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` or ``"0-4"`` (inclusive) or a mix: ``"0-2,7"``. Ranges are checked (bounds,
    count, overlaps) before any list is built."""
    bad = f"bad --seeds {text!r}"
    ranges: list[range] = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            if not part.isascii():
                raise ValueError(part)
            lo, dash, hi = part.partition("-")
            ranges.append(range(int(lo), int(hi) + 1) if dash else range(int(part), int(part) + 1))
    except ValueError:
        raise CirbenchError(f"{bad}: expected e.g. 0,1,2 or 0-4") from None
    if any(r.start < 0 or r.stop - 1 > MAX_SEED for r in ranges):
        raise CirbenchError(f"{bad}: seeds must be in 0..{MAX_SEED} (numpy's range)")
    if not ranges or any(len(r) == 0 for r in ranges):
        raise CirbenchError(f"{bad}: give distinct seeds, e.g. 0,1,2 (a range runs low-high)")
    if sum(len(r) for r in ranges) > MAX_SEEDS:
        raise CirbenchError(f"{bad}: more than {MAX_SEEDS} seeds")
    seeds = [seed for r in ranges for seed in r]
    if len(set(seeds)) != len(seeds):
        raise CirbenchError(f"{bad}: give distinct seeds, e.g. 0,1,2")
    return seeds


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CirbenchError("--device cuda: no CUDA GPU is visible to torch; use --device cpu")
    return torch.device(name)


def setup_exact(args: argparse.Namespace) -> int | None:
    """Exact mode: refuse what it cannot fix, relaunch when torch started without its
    environment (return the child's exit status), else fix the in-process settings (None)."""
    if args.nproc > 1 or distributed.launched_by_torchrun():
        raise CirbenchError("--exact runs in one process; drop --nproc (DDP is not bit-exact)")
    if args.device == "cuda":
        raise CirbenchError("--exact replays CPU results only; drop --device cuda")
    args.device = "cpu"
    if exact.problems():
        log.info("exact mode: relaunching with %s", exact.EXACT_ENV)
        return exact.relaunch(args.argv)
    exact.apply()
    return None


def check_run_args(args: argparse.Namespace) -> None:
    """Command-line values that no config check sees, refused before anything starts."""
    if not str(args.out).strip():
        raise CirbenchError("--out '': give a folder, e.g. --out outputs")
    if args.nproc < 1:
        raise CirbenchError(f"--nproc {args.nproc}: give 1 or more processes")
    # before any data loads; `tune` shares these checks but has no --eval-every
    check_eval_every(getattr(args, "eval_every", 0), getattr(args, "split", "test"))
    if args.method is not None and not all(s.strip() for s in args.method.split(",")):
        raise CirbenchError(
            f"--method {args.method!r}: an empty method name; give e.g. --method ce,cir+ce, "
            "or leave --method out for the task's defaults"
        )


def checkpoint_bytes(model: torch.nn.Module) -> int:
    """About what one checkpoint takes: weights, two optimizer moments, and slack."""
    tensors = [*model.parameters(), *model.buffers()]
    return 3 * sum(t.numel() * t.element_size() for t in tensors) + 2**20


def check_output_folder(out: Path, checkpoint: int) -> None:
    """The output folder exists or can be made, takes a file, and has room for a checkpoint
    twice over (the old one stays until the new one is complete): refused before training."""
    where = f"--out {out}"
    if out.exists() and not out.is_dir():
        raise CirbenchError(f"{where} is a file, not a folder; give a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out) as probe:
            probe.write(b"0")
        free = shutil.disk_usage(out).free
    except OSError as exc:
        raise CirbenchError(f"{where}: cannot write there ({exc.strerror or exc})") from None
    if free < 2 * checkpoint:
        raise CirbenchError(
            f"{where}: {free / 2**20:.0f} MiB free, a run needs about "
            f"{2 * checkpoint / 2**20:.0f} MiB for its checkpoints; free space or choose --out"
        )


def command_specs(args: argparse.Namespace, task: AnyTask) -> list[str]:
    """``--method`` as canonical specs, each once, in order (default: the task's methods)."""
    specs = [MethodSpec.parse(s).name for s in args.method.split(",")] if args.method else []
    return list(dict.fromkeys(specs or task.default_methods))


def command_overrides(args: argparse.Namespace) -> Overrides:
    """``--config FILE`` first, then every ``--set`` (a field in both: the flag wins)."""
    flags = Overrides.parse(args.set or [])
    return Overrides.from_yaml(Path(args.config)).then(flags) if args.config else flags


def command_setup(
    args: argparse.Namespace, task: AnyTask
) -> tuple[list[str], Overrides, str, TrainConfig]:
    """What `run` and `tune` resolve before loading data: the method specs, the overrides (every
    section used by some method), the profile and its training config after the overrides."""
    specs = command_specs(args, task)
    overrides = command_overrides(args)
    check_sections(overrides, specs)
    profile = args.profile or task.default_profile
    cfg = apply_overrides(task.profile(profile), overrides.section("train"), "train")
    return specs, overrides, profile, cfg


def refuse_before_training(
    task: AnyTask,
    data: TaskData,
    cfg: TrainConfig,
    specs: Sequence[str],
    overrides: Overrides,
    out: Path,
) -> None:
    """Everything that would fail later, refused now: room for the checkpoints under ``out``
    and every method against the task (its outputs, its component configs)."""
    model = task.build_model(data, cfg)
    check_output_folder(out, checkpoint_bytes(model))
    ctx = method_context(data, model)
    for spec in specs:  # every method is valid before anything trains
        build_checked(task, spec, ctx, overrides)


def resolved_yaml(
    task: AnyTask, specs: Sequence[str], profile: str, cfg: TrainConfig, overrides: Overrides
) -> str:
    """What a run would use: the profile's training config ``cfg`` (after overrides) and each
    method component's config (paper defaults, then the task's, then overrides)."""
    methods = {
        spec: {
            key: to_dict(component_config(key, overrides, task.method_defaults))
            for key in MethodSpec.parse(spec).keys
        }
        for spec in specs
    }
    resolved = {"task": task.name, "profile": profile, "train": to_dict(cfg), "methods": methods}
    return str(yaml.safe_dump(resolved, sort_keys=False, default_flow_style=None))


def cmd_config(args: argparse.Namespace) -> int:
    task = TASKS.get(args.task)()
    specs, overrides, profile, cfg = command_setup(args, task)
    print(resolved_yaml(task, specs, profile, cfg, overrides), end="")
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    """Delete checkpoints: those of finished runs (their record exists), or all with --all."""
    out = Path(args.out)
    removed, freed = 0, 0
    for ckpt in sorted((out / "checkpoints").glob("*/*.pt")):
        record = out / "runs" / ckpt.parent.name / ckpt.with_suffix(".json").name
        if args.all or record.is_file():
            freed += ckpt.stat().st_size
            ckpt.unlink()
            removed += 1
    kept = len(list((out / "checkpoints").glob("*/*.pt")))
    print(
        f"removed {removed} checkpoint(s), {freed / 2**20:.1f} MiB, under {out / 'checkpoints'}; "
        f"{kept} kept (runs without a record: resume them with --resume, or use --all)",
        file=sys.stderr,
    )
    return 0


def say(line: str) -> None:
    """One progress line on stderr, flushed: it reaches a log file (nohup, SLURM) at once."""
    print(line, file=sys.stderr, flush=True)


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def epoch_line(name: str) -> Callable[[EpochReport], None]:
    """The per-epoch line of a run whose stderr is not a terminal (no progress bar there)."""

    def report(r: EpochReport) -> None:
        row = r.history[-1]
        say(
            f"{name}: epoch {r.epoch}/{r.epochs} loss {row.get('total', float('nan')):.4f}, "
            f"{row.get('images_per_s', 0.0):.0f} images/s, {r.seconds:.1f} s; "
            f"ETA {duration(r.eta_seconds)}"
        )

    return report


def cmd_run(args: argparse.Namespace) -> int:
    check_run_args(args)
    if args.exact and (code := setup_exact(args)) is not None:
        return code
    if args.nproc > 1 and not distributed.launched_by_torchrun():
        return relaunch_with_torchrun(args.argv, args.nproc)
    task = TASKS.get(args.task)()
    seeds = parse_seeds(args.seeds)
    specs, overrides, profile, cfg = command_setup(args, task)
    device = distributed.init_from_env(resolve_device(args.device))
    clean = False
    try:
        code = run_runs(args, task, seeds, specs, overrides, profile, cfg, device)
        clean = True
        return code
    finally:
        distributed.shutdown(clean)


def run_runs(
    args: argparse.Namespace,
    task: AnyTask,
    seeds: list[int],
    specs: list[str],
    overrides: Overrides,
    profile: str,
    cfg: TrainConfig,
    device: torch.device,
) -> int:
    """Every method x seed of ``cirbench run``, in this process (one rank of several, maybe)."""
    data = task.load(resolve_root(args.data_root))
    if args.split == "val":
        data = task.validation(data, cfg)
    task.check(data, cfg)
    refuse_before_training(task, data, cfg, specs, overrides, Path(args.out))
    main_rank = distributed.is_main()
    talk = main_rank and not args.quiet
    progress = talk and sys.stderr.isatty()  # bars on a terminal, one line per epoch elsewhere
    runs = [(spec, seed) for spec in specs for seed in seeds]
    written: list[str] = []
    durations: list[float] = []
    for k, (spec, seed) in enumerate(runs, start=1):
        name = f"{task.name} {spec} seed {seed}"
        if talk:
            eta = f", ETA {duration(mean(durations) * (len(runs) - k + 1))}" if durations else ""
            say(f"run {k}/{len(runs)}: {name}{eta}")
        start = time.perf_counter()
        run = RunSpec(task, data, spec, seed, cfg, profile, overrides, args.exact, args.split)
        path = train_and_record(
            run,
            Path(args.out),
            device,
            args.resume,
            progress,
            command=args.argv,
            logger=args.logger,
            compile_model=args.compile,
            eval_every=args.eval_every,
            on_epoch=epoch_line(name) if talk and not progress else None,
        )
        durations.append(time.perf_counter() - start)
        if path is not None:
            written.append(str(path))
            say(f"{name}: done in {durations[-1]:.1f} s -> {path}")
    if main_rank:
        df = load_records(args.out, task.name, args.split)
        print(format_table(df[df["path"].isin(written)], args.format, task.default_methods))
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    """Equal-budget search per method on the validation split, then the best configs on test."""
    if args.trials < 1:
        raise CirbenchError(f"--trials {args.trials}: give 1 or more trials per method")
    check_run_args(args)
    task = TASKS.get(args.task)()
    seeds = parse_seeds(args.seeds)
    specs, overrides, profile, cfg = command_setup(args, task)
    items = parse_space(args.space or [])
    check_space_sections(items, specs)
    metric, direction = choose_metric(task, args.metric)
    spaces = {s: narrow(method_space(task, s, cfg), items, task, s, cfg) for s in specs}
    check_eval_every(args.prune, "val", "--prune")
    if args.workers < 1:
        raise CirbenchError(f"--workers {args.workers}: give 1 or more")
    if args.workers > 1:
        if not args.storage:
            raise CirbenchError(
                f"--workers {args.workers} share one study: give --storage journal:PATH (a "
                "file every worker can reach) or a database URL such as "
                "postgresql+psycopg2://user@host/db (the SQLite default is for one process)"
            )
        return start_tune_workers(args, task.name)
    device = resolve_device(args.device)
    data = task.load(resolve_root(args.data_root))
    val = task.validation(data, cfg)
    task.check(val, cfg)
    task.check(data, cfg)
    refuse_before_training(task, data, cfg, specs, overrides, Path(args.out))
    settings = TuneSettings(
        task, profile, overrides, spaces, args.trials, metric, direction, tuple(seeds),
        args.sampler_seed, command=tuple(args.argv), storage=args.storage,
        prune_every=args.prune,
    )  # fmt: skip
    total = args.trials * len(specs)
    storage = safe_url(storage_url(Path(args.out), args.storage))
    print(
        f"tune {task.name}: {args.trials} trials x {len(specs)} methods on the validation split "
        f"({direction} {metric}), then seeds {args.seeds} on test; storage {storage}",
        file=sys.stderr,
    )

    def show(p: Progress) -> None:
        value = (p.note or "failed") if p.value is None else f"{p.value:.4f}"
        if p.phase == "test":
            print(
                f"  {p.spec}: best trial #{p.trial} on test, seed {p.done}/{p.total}: "
                f"{metric} {value}; ETA {p.eta_s:.0f} s",
                file=sys.stderr,
            )
            return
        best = "n/a" if p.best is None else f"{p.best:.4f}"
        print(
            f"  {p.spec}: trial {p.done}/{p.total} (#{p.trial}) {metric} {value}, best {best}; "
            f"ETA {p.eta_s:.0f} s ({total} trials in all)",
            file=sys.stderr,
        )

    outcomes = tune(settings, val, data, Path(args.out), device, show)
    if not outcomes:
        print(
            "trials of other workers are still running: the last worker to finish makes the "
            "test runs (or rerun this command once they are done)",
            file=sys.stderr,
        )
        return 0
    print(tabulate(describe(outcomes), headers="keys", tablefmt="github"))
    written = {str(p) for o in outcomes for p in o.test_records}
    df = load_records(args.out, task.name)
    print(format_table(df[df["path"].isin(written)], args.format, task.default_methods))
    return 0


def without_options(argv: Sequence[str], names: Sequence[str]) -> list[str]:
    """``argv`` without the options ``names`` (each takes one value: ``--x V`` or ``--x=V``)."""
    out: list[str] = []
    skip = False
    for item in argv:
        if skip:
            skip = False
        elif item in names:
            skip = True
        elif not any(item.startswith(f"{n}=") for n in names):
            out.append(item)
    return out


def without_nproc(argv: Sequence[str]) -> list[str]:
    return without_options(argv, ["--nproc"])


#: What only the command that starts tune workers reads (the workers run without them).
WORKER_OPTIONS = (
    "--workers",
    "--launcher",
    "--partition",
    "--gpus-per-job",
    "--cpus-per-job",
    "--time",
)


def slurm_options(args: argparse.Namespace) -> dict[str, Any]:
    """submitit's parameters from ``--partition/--gpus-per-job/--time/--cpus-per-job``."""
    slurm = {
        "slurm_partition": args.partition,
        "gpus_per_node": args.gpus_per_job,
        "timeout_min": args.time,
        "cpus_per_task": args.cpus_per_job,
    }
    return {k: v for k, v in slurm.items() if v is not None}


def start_tune_workers(args: argparse.Namespace, task: str) -> int:
    """``--workers N``: N copies of this command (without the worker options) at once, sharing
    ``--storage``; exit 1 if any failed."""
    storage = storage_url(Path(args.out), args.storage)
    argv = [*without_options(args.argv, WORKER_OPTIONS), "--storage", storage]
    print(
        f"tune {task}: {args.workers} workers ({args.launcher}) share {safe_url(storage)}; "
        f"logs in {Path(args.out) / 'tune' / 'logs'}",
        file=sys.stderr,
    )

    def show(o: Outcome) -> None:
        extra = f"  {o.detail}" if o.status == "failed" else ""
        print(f"  {o.status:8s} {o.cell.name}  log: {o.log}{extra}", file=sys.stderr)

    outcomes = run_workers(
        task, argv, args.workers, Path(args.out), args.launcher, slurm_options(args), show
    )
    failed = [o for o in outcomes if o.status != "done"]
    print(
        f"tune {task}: {len(outcomes) - len(failed)} of {len(outcomes)} workers done; records "
        f"in {Path(args.out) / 'runs' / task}; `cirbench report --runs {args.out} --tuned "
        f"{args.out}` tabulates the study",
        file=sys.stderr,
    )
    return 1 if failed else 0


def relaunch_with_torchrun(argv: Sequence[str], nproc: int) -> int:
    """Run this same command in ``nproc`` processes under torchrun (one node)."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "cirbench",
        *without_nproc(argv),
    ]
    return subprocess.run(cmd, check=False).returncode


def cmd_sweep(args: argparse.Namespace) -> int:
    if args.max_parallel < 1:
        raise CirbenchError(f"--max-parallel {args.max_parallel}: give 1 or more")
    cells = expand(
        args.tasks.split(","),
        args.methods.split(","),
        parse_seeds(args.seeds),
        args.profile,
        command_overrides(args).as_list(),
    )
    slurm = slurm_options(args)
    print(f"sweep: {len(cells)} cells ({args.launcher})", file=sys.stderr)

    def show(o: Outcome) -> None:
        extra = f"  {o.detail}  log: {o.log}" if o.status == "failed" else ""
        print(f"  {o.status:8s} {o.cell.name}{extra}", file=sys.stderr)

    outcomes = run_sweep(
        cells,
        Path(args.out),
        args.launcher,
        args.max_parallel,
        args.data_root,
        args.device,
        slurm,
        show,
    )
    failed = [o for o in outcomes if o.status == "failed"]
    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "failed")}
    print(tabulate([counts], headers="keys", tablefmt="github"))
    for o in failed:
        print(f"failed: {o.cell.name} ({o.detail}); log: {o.log}")
    return 1 if failed else 0


def cmd_table(args: argparse.Namespace) -> int:
    order = TASKS.get(args.task).default_methods if args.task in TASKS else ()
    df = load_records(args.runs, args.task)
    if df.empty:
        print(
            f"no result records for {args.task!r} under {Path(args.runs) / 'runs'}; "
            f"run `cirbench run {args.task}` first (the committed ones: --runs {COMMITTED})",
            file=sys.stderr,
        )
        return 1
    print(format_table(df, args.format, order))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    if args.what == "tasks":
        for name in TASKS.names(args.pattern):
            task = TASKS.get(name)
            print(f"{name:16s} dataset={task.dataset:16s} profiles={','.join(task.profiles)}")
    else:
        for name in METHODS.names(args.pattern):
            doc = (
                METHODS.get(name).__module__ and sys.modules[METHODS.get(name).__module__].__doc__
            ) or ""
            print(f"{name:10s} {doc.strip().splitlines()[0] if doc.strip() else ''}")
    return 0


def runs_root(value: str) -> Path:
    """A results folder holding ``runs/`` (``cirbench run --out``); a ``runs`` folder works too."""
    path = Path(value)
    if not (path / "runs").is_dir() and path.name == "runs":
        return path.parent
    if not path.is_dir():
        raise CirbenchError(
            f"--runs {value}: no such folder; give the --out folder of `cirbench run`"
        )
    return path


def warn_skipped(records: RecordSet) -> None:
    for path, reason in records.skipped:
        print(f"cirbench: warning: skipped {path}: {reason} (not counted)", file=sys.stderr)


def report_tasks(names: Sequence[str], records: RecordSet, root: Path) -> list[str]:
    """The tasks to report: those named (each must have records), else every task with records."""
    for name in names:
        if name not in records.tasks:
            if name not in TASKS:
                TASKS.get(name)  # raises "unknown task ... did you mean"
            raise CirbenchError(
                f"no result records for {name!r} under {root / 'runs'}; "
                f"run `cirbench run {name}` first"
            )
    return list(dict.fromkeys(names)) or records.tasks


def cmd_report(args: argparse.Namespace) -> int:
    committed = args.runs is None and args.out is None  # regenerating the committed report
    out = Path(args.out) if args.out else None
    root = runs_root(args.runs) if args.runs else out or Path(COMMITTED)
    out = out or root
    if args.readme is None and not committed:
        args.readme = "none"
    reported = load_reported(args.reported)
    records = collect_records(root)
    warn_skipped(records)
    tasks = report_tasks(args.tasks, records, root)
    if not tasks:
        raise CirbenchError(
            f"no result records under {root / 'runs'}; run `cirbench run TASK` first"
        )
    readme = (
        None if args.readme == "none" else Path(args.readme or out.resolve().parent / "README.md")
    )
    studies = [] if args.tuned == "none" else collect_studies(Path(args.tuned or root / "tuned"))
    if args.tasks:
        studies = [s for s in studies if s.task in args.tasks]
    files = write_report(
        out, records, reported, tasks, readme, plots=not args.no_plots, studies=studies
    )
    render = {"md": markdown_table, "latex": latex_table, "csv": csv_table}[args.format]
    print("\n\n".join(f"{t.task}\n\n{render(t)}" for t in files.tables))
    print(f"wrote {len(files.written)} files under {out}", file=sys.stderr)
    if readme is not None:
        state = "updated" if files.readme_updated else "not found, not updated"
        print(f"README status section: {readme} {state}", file=sys.stderr)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    root = runs_root(args.runs)
    records = collect_records(root)
    warn_skipped(records)
    tasks = report_tasks(args.tasks, records, root)
    folder = Path(args.baselines)
    if args.update:
        written = check.update_baseline(
            records, folder, tasks, args.argv, args.tolerance, args.alpha
        )
        for path in written:
            print(f"wrote {path}", file=sys.stderr)
        return 0
    mode: check.Mode = "exact" if args.exact else args.mode
    if args.against == "baseline":
        result = check.check_baseline(records, folder, tasks, mode)
        scale, what = 100.0, f"records under {root / 'runs'} against {folder}, in percent"
        if result.rows:
            print(check.format_rows(result.rows))
    else:
        result = check.check_reported(statuses(load_reported(args.reported), records.df), tasks)
        scale, what = 1.0, "record means against cirbench/reported.yaml, in percent"
    for name in result.unchecked:
        print(f"cirbench: warning: {name} has no baseline entry (not checked)", file=sys.stderr)
    for line in result.notes:
        print(f"note: {line}", file=sys.stderr)
    if result.not_run:
        print(
            f"note: {len(result.not_run)} baseline entries have no record under {root / 'runs'} "
            f"(not run there, e.g. {result.not_run[0]}); fine for a partial run",
            file=sys.stderr,
        )
    failed_rows = [r for r in result.rows if not r.ok]
    # A corrupt record in a checked task's folder is a failed run, not "not run".
    corrupt = [(p, why) for p, why in records.skipped if Path(p).parent.name in tasks]
    for bad, why in corrupt:
        print(f"FAIL: {bad} is not a readable record ({why}); rerun it", file=sys.stderr)
    if result.deviations or failed_rows:
        count = len(result.deviations) or len(failed_rows)
        print(f"FAIL: {count} metric(s) or record(s) outside tolerance, {what}:")
        if result.deviations:
            print(check.format_deviations(result.deviations, scale))
    if corrupt or result.deviations or failed_rows:
        return 1
    if not result.checked and args.against == "baseline":
        # A gate that compared nothing must not pass: e.g. a renamed profile or method.
        print(f"FAIL: no record matched a baseline entry ({what})", file=sys.stderr)
        return 1
    kinds = sorted({r.kind for r in result.rows}) or ["reported"]
    print(
        f"OK: {result.checked} checked ({', '.join(kinds)}), every metric within tolerance ({what})"
    )
    return 0


def resolve_root(value: str | None) -> Path:
    return resolve_data_root(value)


def cmd_datasets(args: argparse.Namespace) -> int:
    catalog = load_catalog()
    root = resolve_root(args.data_root)
    if args.action == "list":
        statuses = [check_dataset(e, root, checksums=args.checksums) for e in catalog.values()]
        print(f"data root: {root}")
        print(format_status_table(statuses))
        return 0
    if args.name not in catalog:
        hint = did_you_mean(args.name, catalog, n=2)
        raise CirbenchError(f"unknown dataset {args.name!r}.{hint} Known: {', '.join(catalog)}.")
    status = check_dataset(catalog[args.name], root, checksums=True)
    print(explain(status))
    return 0 if status.state == "found" else 1


def add_config_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="FILE.yaml",
        help="overrides as 'section: {field: value}' YAML, checked like --set; --set wins",
    )


def cmd_weights(args: argparse.Namespace) -> int:
    catalog = w.load_weights_catalog()
    if args.action == "list":
        rows = []
        for entry in catalog.values():
            status = w.verify(entry) if args.checksums else None
            cached = w.cached_file(entry)
            state = status.state if status else ("cached" if cached else "missing")
            source = (
                entry.url if entry.source == "torchvision" else f"hf://{entry.hub}/{entry.file}"
            )
            used = ", ".join(entry.used_by) or "-"
            rows.append([entry.name, entry.architecture, state, used, source, cached or "-"])
        headers = ["weights", "architecture", "state", "used by", "source", "cached file"]
        print(tabulate(rows, headers=headers, tablefmt="simple"))
        return 0
    entry = w.get_entry(args.name, catalog)
    if args.action == "fetch":
        path = w.fetch(entry)
        print(f"fetched {entry.name} -> {path}", file=sys.stderr)
    status = w.verify(entry)
    if status.state == "missing":
        print(w.missing_message(entry))
        return 1
    if status.state == "corrupt":
        print(f"CORRUPT: {entry.name} at {status.path}: {status.problem}")
        return 1
    note = (
        f" ({status.problem})" if status.problem else f" (matches {entry.sha256 or 'the hub id'})"
    )
    print(f"OK: {entry.name} at {status.path}, sha256 {status.sha256}{note}")
    return 0


def cmd_gpu_check(args: argparse.Namespace) -> int:
    tasks = tuple(t for t in args.tasks.split(",") if t) if args.tasks else None
    device = resolve_device(args.device)
    report = gpu_check(Path(args.out), device, args.tiny, args.compile, tasks)
    print(markdown(report), end="")
    print(f"written: {Path(args.out) / 'gpu-check.json'} and gpu-check.md")
    return 0 if report["ok"] else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cirbench", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"cirbench {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each epoch")
    # -v also after the subcommand (cirbench run digits -v); SUPPRESS keeps the one given first
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[verbose], **kwargs)

    p = add("list", help="list registered tasks or methods")
    p.add_argument("what", choices=["tasks", "methods"])
    p.add_argument("pattern", nargs="?", default="*", help="glob, e.g. 'ci*'")
    p.set_defaults(func=cmd_list)

    p = add("run", help="train and evaluate methods on a task, one record per seed")
    p.add_argument("task")
    p.add_argument("--method", help="comma-separated specs, e.g. ce,cir+ce (default: the task's)")
    p.add_argument("--seeds", default="0,1,2", help="e.g. 0,1,2 or 0-4 (default 0,1,2)")
    p.add_argument(
        "--set",
        nargs="*",
        action="extend",
        metavar="SECTION.FIELD=VALUE",
        help="override a config field, e.g. triplet.margin=0.5 train.epochs=3 (repeatable)",
    )
    add_config_argument(p)
    p.add_argument("--profile", help="training profile of the task, e.g. smoke or paper")
    p.add_argument(
        "--split",
        choices=list(SPLITS),
        default="test",
        help="evaluate on the test split (default) or on the task's validation hold-out of "
        "training data (val records never enter tables, reports or checks)",
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument(
        "--exact",
        action="store_true",
        help="exact-replay mode: bit-identical metrics on any x86-64 CPU (CPU, 1 thread, "
        "portable kernels; training about 7x slower); see cirbench/exact.py",
    )
    p.add_argument(
        "--out",
        default=default_out(),
        help="output folder (default $CIRBENCH_OUT or outputs/, git-ignored; the committed "
        "records under results/ are never written unless named here)",
    )
    p.add_argument(
        "--data-root", help="datasets folder (default $CIRBENCH_DATA or ~/cirbench-data)"
    )
    p.add_argument("--format", choices=["md", "latex", "csv"], default="md")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or lines")
    p.add_argument(
        "--eval-every",
        type=int,
        default=0,
        metavar="E",
        help="with --split val: also evaluate every E epochs (val_* columns of the epoch log)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the model for training (faster on GPUs after a compile pause; "
        "not part of the config, noted in the record)",
    )
    p.add_argument(
        "--logger",
        choices=LOGGERS,
        default="csv",
        help="per-epoch log beside the record: csv (default; <out>/logs/), tensorboard "
        "(<out>/tensorboard/), none",
    )
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="train each run in N processes (DDP; NCCL on CUDA, gloo on CPU)",
    )
    p.set_defaults(func=cmd_run)

    p = add(
        "tune",
        help="equal-budget Optuna search per method on the validation split, then the best "
        "configuration of each on the test split",
    )
    p.add_argument("task")
    p.add_argument("--method", help="comma-separated specs (default: the task's)")
    p.add_argument("--trials", type=int, required=True, help="trials per method (the budget)")
    p.add_argument("--metric", help="validation metric to optimise (default: the task's first)")
    p.add_argument("--seeds", default="0,1,2", help="test seeds of each best config (0,1,2)")
    p.add_argument(
        "--space",
        nargs="*",
        action="extend",
        metavar="SECTION.FIELD=SPEC",
        help="narrow or widen a search dimension: LOW:HIGH[:log] or A,B,... "
        "(e.g. cir.p=0.1:0.9 cir.target=mean)",
    )
    p.add_argument("--sampler-seed", type=int, default=0, help="TPE sampler seed (default 0)")
    p.add_argument(
        "--storage",
        help="study storage shared by several workers: an Optuna RDB URL, e.g. "
        "postgresql+psycopg2://user@host/db, or journal:PATH (a journal file on a shared file "
        "system) (default: OUT/tune/optuna.sqlite3)",
    )
    p.add_argument(
        "--prune",
        type=int,
        default=0,
        metavar="E",
        help="validate every E epochs and let Optuna's median pruner stop unpromising trials "
        "(a pruned trial uses budget; default: no pruning)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes sharing the study (needs --storage); each runs this command",
    )
    p.add_argument("--launcher", choices=["local", "slurm"], default="local", help="for --workers")
    p.add_argument("--partition", help="slurm partition (--launcher slurm)")
    p.add_argument("--gpus-per-job", type=int, help="slurm GPUs per worker")
    p.add_argument("--cpus-per-job", type=int, help="slurm CPUs per worker")
    p.add_argument("--time", type=int, help="slurm time limit per worker, minutes")
    p.add_argument("--set", nargs="*", action="extend", metavar="SECTION.FIELD=VALUE")
    add_config_argument(p)
    p.add_argument("--profile")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--out", default=default_out(), help="as `run --out`; the study: OUT/tune/")
    p.add_argument("--data-root")
    p.add_argument("--format", choices=["md", "latex", "csv"], default="md")
    p.set_defaults(func=cmd_tune, nproc=1)

    p = add("sweep", help="tasks x methods x seeds; skips cells that have a record")
    p.add_argument("--tasks", required=True, help="comma-separated task names")
    p.add_argument("--methods", required=True, help="comma-separated method specs")
    p.add_argument("--seeds", default="0,1,2", help="e.g. 0-4 (default 0,1,2)")
    p.add_argument("--profile")
    p.add_argument("--set", nargs="*", action="extend", metavar="SECTION.FIELD=VALUE")
    add_config_argument(p)
    p.add_argument("--launcher", choices=["local", "slurm"], default="local")
    p.add_argument("--max-parallel", type=int, default=1, help="cells running at once")
    p.add_argument("--partition", help="slurm partition")
    p.add_argument("--gpus-per-job", type=int, help="slurm GPUs per cell")
    p.add_argument("--cpus-per-job", type=int, help="slurm CPUs per cell")
    p.add_argument("--time", type=int, help="slurm time limit per cell, minutes")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--out", default=default_out(), help="as `run --out` (default outputs/)")
    p.add_argument("--data-root")
    p.set_defaults(func=cmd_sweep)

    p = add("config", help="print the resolved configuration a run would use")
    p.add_argument("task")
    p.add_argument("--method", help="comma-separated specs (default: the task's)")
    p.add_argument("--profile")
    p.add_argument("--set", nargs="*", action="extend", metavar="SECTION.FIELD=VALUE")
    add_config_argument(p)
    p.set_defaults(func=cmd_config)

    p = add("clean", help="delete checkpoints of finished runs (--all: every one)")
    p.add_argument("--out", default=default_out(), help="as `run --out` (default outputs/)")
    p.add_argument("--all", action="store_true", help="also checkpoints of unfinished runs")
    p.set_defaults(func=cmd_clean)

    p = add("table", help="mean ± std over seeds of a task's records")
    p.add_argument("task")
    p.add_argument("--format", choices=["md", "latex", "csv"], default="md")
    p.add_argument(
        "--runs",
        "--out",
        dest="runs",
        default=default_out(),
        help="folder holding runs/ (default: where `cirbench run` writes, $CIRBENCH_OUT or "
        f"outputs/; the committed records: --runs {COMMITTED})",
    )
    p.set_defaults(func=cmd_table)

    p = add(
        "report",
        help="tables (md, LaTeX, CSV), plots, REPORT.md and the README status: ours vs reported",
    )
    p.add_argument("tasks", nargs="*", metavar="TASK", help="default: every task with records")
    p.add_argument(
        "--format",
        choices=["md", "latex", "csv"],
        default="md",
        help="what to print; all three are written to OUT/tables/",
    )
    p.add_argument(
        "--runs",
        help=f"folder whose runs/ to read (default: --out, else the committed records, "
        f"{COMMITTED}/; e.g. outputs for your own runs)",
    )
    p.add_argument("--out", help="where REPORT.md, tables/, plots/ go (default: the --runs folder)")
    p.add_argument("--reported", help="reported numbers YAML (default: cirbench/reported.yaml)")
    p.add_argument(
        "--readme",
        help="README whose status section to rewrite (default: README.md beside results/ when "
        "neither --runs nor --out is given, else none; 'none' never)",
    )
    p.add_argument(
        "--tuned",
        help="folder of `cirbench tune --out` records for the tuned-vs-default section "
        "(default: RUNS/tuned; 'none' to leave it out)",
    )
    p.add_argument("--no-plots", action="store_true", help="skip the PNG/PDF plots")
    p.set_defaults(func=cmd_report)

    p = add("check", help="CI gate: exit 1 when a record's metric leaves its tolerance")
    p.add_argument("tasks", nargs="*", metavar="TASK", help="default: every task with records")
    p.add_argument("--against", choices=["baseline", "reported"], default="baseline")
    p.add_argument(
        "--runs",
        default=COMMITTED,
        help=f"folder holding runs/, as `cirbench run --out` (default: the committed {COMMITTED}/)",
    )
    p.add_argument(
        "--baselines", default=f"{COMMITTED}/baselines", help="baseline folder (results/baselines)"
    )
    p.add_argument(
        "--mode",
        choices=["auto", "exact", "statistical"],
        default="auto",
        help="auto: exact where record and baseline are both exact-mode, else statistical; "
        "exact: every record must replay its exact baseline bit for bit (CI); statistical: "
        "pooled t-test over seeds for every record (see cirbench/check.py)",
    )
    p.add_argument("--exact", action="store_true", help="same as --mode exact")
    p.add_argument(
        "--tolerance",
        type=float,
        default=STATISTICAL_TOLERANCE,
        help="--update: smallest shift (fraction) a statistical row fails on (default 0.01)",
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=ALPHA,
        help="--update: false-alarm rate of the statistical test (default 0.01)",
    )
    p.add_argument("--reported", help="reported numbers YAML (default: cirbench/reported.yaml)")
    p.add_argument(
        "--update",
        action="store_true",
        help="write the baselines from the records under --runs (after an intended change)",
    )
    p.set_defaults(func=cmd_check)

    p = add("datasets", help="check datasets on disk against datasets.yaml")
    p.add_argument("action", choices=["list", "verify"])
    p.add_argument("name", nargs="?")
    p.add_argument(
        "--data-root", help="datasets folder (default $CIRBENCH_DATA or ~/cirbench-data)"
    )
    p.add_argument("--checksums", action="store_true", help="list: also verify md5 sums")
    p.set_defaults(func=cmd_datasets)

    p = add("weights", help="pretrained backbone weights of weights.yaml: list, fetch, verify")
    p.add_argument("action", choices=["list", "fetch", "verify"])
    p.add_argument("name", nargs="?")
    p.add_argument("--checksums", action="store_true", help="list: also verify sha256 sums")
    p.set_defaults(func=cmd_weights)

    p = add(
        "gpu-check",
        help="one prepared check of a GPU machine: smoke runs, throughput, CIR cost, evaluation",
    )
    p.add_argument("--out", required=True, help="folder for gpu-check.json / .md and its data")
    p.add_argument("--device", default="auto", help="auto (default), cuda, cuda:N or cpu")
    p.add_argument("--tiny", action="store_true", help="toy sizes (the CPU test of this command)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile of the model")
    p.add_argument("--tasks", help="comma-separated smoke runs to do (default: every task)")
    p.set_defaults(func=cmd_gpu_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.command == "datasets" and args.action == "verify" and not args.name:
        parser.error("datasets verify needs a dataset NAME")
    if args.command == "weights" and args.action != "list" and not args.name:
        parser.error(f"weights {args.action} needs a weights NAME (see `cirbench weights list`)")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        load_plugins()
        code: int = args.func(args)
    except CirbenchError as exc:
        print(f"cirbench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        hint = (
            "; the last finished epoch is checkpointed: rerun the same command with --resume"
            if args.command == "run"
            else ""
        )
        print(f"cirbench: interrupted{hint}", file=sys.stderr)
        return INTERRUPTED
    return code
