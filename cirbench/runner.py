"""One training run from a task and a method spec to a result record on disk.

Shared by ``cirbench run`` (and so by sweeps, whose cells are ``cirbench run`` processes). Under
several processes every rank trains; only rank 0 evaluates and writes the record.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic

import numpy as np
import torch

from cirbench import distributed, exact
from cirbench.config import Overrides, to_dict
from cirbench.engine import (
    EpochReport,
    FitOptions,
    FitResult,
    evaluate_model,
    fit,
    seed_everything,
)
from cirbench.epochlog import EpochLog, Logger
from cirbench.errors import CirbenchError
from cirbench.methods import MethodContext, build_method
from cirbench.methods.base import Method, check_requirements
from cirbench.models import EmbeddingNet
from cirbench.results import (
    SCHEMA,
    Split,
    code_version,
    config_hash,
    provenance,
    record_path,
    write_record,
)
from cirbench.tasks import AnyTask, EvalContext, Task, TaskData
from cirbench.tasks.base import ConfigT, DataT


def method_context(data: TaskData, model: EmbeddingNet) -> MethodContext:
    return MethodContext(num_classes=data.num_classes, feature_dim=model.embed_dim)


def build_checked(task: AnyTask, spec: str, ctx: MethodContext, overrides: Overrides) -> Method:
    """The method for ``spec`` (task defaults, then overrides), checked against the task."""
    method = build_method(spec, ctx, overrides, task.method_defaults)
    check_requirements(method.spec, task.provides, task.name)
    return method


@dataclass(frozen=True)
class RunSpec(Generic[ConfigT, DataT]):
    """One (task, method spec, seed) run with the task's loaded data and resolved config."""

    task: Task[ConfigT, DataT]
    data: DataT
    spec: str
    seed: int
    cfg: ConfigT
    profile: str
    overrides: Overrides
    exact: bool = False  # exact-replay mode (cirbench.exact), set up by the caller
    #: ``test`` or ``val``: which split ``data`` evaluates on (``Task.validation`` made it)
    split: Split = "test"
    #: Where the run's configuration came from beyond --set (e.g. a tuning study and trial)
    origin: Mapping[str, Any] | None = None


def prepare(run: RunSpec[ConfigT, DataT]) -> tuple[EmbeddingNet, Method]:
    """Seeded model and method: the same seed gives the same initial weights."""
    seed_everything(run.seed)
    model = run.task.build_model(run.data, run.cfg)
    return model, build_checked(run.task, run.spec, method_context(run.data, model), run.overrides)


def train(
    run: RunSpec[ConfigT, DataT],
    model: EmbeddingNet,
    method: Method,
    device: torch.device,
    options: FitOptions = FitOptions(),  # noqa: B008  (frozen)
) -> FitResult:
    task, data, cfg = run.task, run.data, run.cfg
    return fit(
        model,
        method,
        lambda g: task.train_batches(data, cfg, g),
        lambda m, meth, dev: task.evaluate(EvalContext(m, meth, data, cfg, dev)),
        cfg,
        run.seed,
        device,
        options,
    )


def resolved_config(run: RunSpec[ConfigT, DataT], method: Method) -> dict[str, Any]:
    """Everything the metrics depend on but the seed; its hash names the record. Exact mode is
    part of it (an exact and a default run of one config are two records), only when on, so that
    default-mode hashes stay what they were; so is a validation split (never one record with a
    test run)."""
    config = {
        "task": run.task.name,
        "profile": run.profile,
        "train": to_dict(run.cfg),
        "method": method.configs(),
        "dataset": run.data.fingerprint,
    }
    if run.split != "test":  # only then: test hashes stay what they were
        config["split"] = run.split
        if run.origin is not None:  # a tuning trial: one record per trial, even for equal values
            config["origin"] = {k: run.origin[k] for k in ("study", "trial") if k in run.origin}
    return {**config, "mode": exact.EXACT} if run.exact else config


def check_eval_every(eval_every: int, split: str, option: str = "--eval-every") -> None:
    """A validation curve only where it is one: E >= 1, on the validation split."""
    if eval_every < 0:
        raise CirbenchError(f"{option} {eval_every}: give E >= 1 (or leave it out)")
    if eval_every and split != "val":
        raise CirbenchError(
            "--eval-every evaluates during training, which on the test split would look at the "
            "test set while training: use it with --split val"
        )


def evaluate_during_training(
    run: RunSpec[ConfigT, DataT], model: EmbeddingNet, method: Method, device: torch.device
) -> dict[str, float]:
    """The task's evaluation of ``run.data`` now, in eval mode; every random state (torch CPU
    and CUDA, numpy, random) is restored after it, so training continues exactly as it would
    have without it (the next epoch puts model and method back in training mode)."""
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        evaluation = evaluate_model(
            model,
            method,
            lambda m, meth, dev: run.task.evaluate(EvalContext(m, meth, run.data, run.cfg, dev)),
            device,
        )
    np.random.set_state(np_state)
    random.setstate(py_state)
    return evaluation.metrics


def used_overrides(method: Method, overrides: Overrides) -> list[str]:
    """The ``--set`` items this method's run reads (its components' and ``train``)."""
    return overrides.only({*method.spec.keys, "train"}).as_list()


def train_and_record(
    run: RunSpec[ConfigT, DataT],
    out: Path,
    device: torch.device,
    resume: bool = False,
    progress: bool = False,
    command: Sequence[str] = (),
    logger: Logger = "csv",
    on_epoch: Callable[[EpochReport], None] | None = None,
    compile_model: bool = False,
    eval_every: int = 0,
) -> Path | None:
    """Train and evaluate one (method, seed) and write its record; return the record's path
    (``None`` on ranks other than 0, which write nothing). ``logger`` writes the per-epoch log
    beside it (:mod:`cirbench.epochlog`); ``on_epoch`` is called after every epoch as well.
    ``eval_every`` E > 0 (validation runs only): the run's validation split is also evaluated
    every E epochs; the values join the epoch log as ``val_<metric>`` and the record as
    ``eval_history``, without touching any random state the training draws from."""
    check_eval_every(eval_every, run.split)
    code = code_version()  # before training: the code this process runs, not a later HEAD
    model, method = prepare(run)
    config = resolved_config(run, method)
    chash = config_hash(config)
    path = record_path(out, run.task.name, method.name, run.seed, chash)
    checkpoint = out / "checkpoints" / run.task.name / path.with_suffix(".pt").name
    main = distributed.is_main()
    epoch_log = EpochLog(logger if main else "none", out, run.task.name, path.stem)

    eval_history: list[dict[str, float]] = []

    def after_epoch(report: EpochReport) -> None:
        if main and eval_every and report.epoch % eval_every == 0:
            values = evaluate_during_training(run, model, method, device)
            eval_history.append({"epoch": report.epoch, **values})
            rows = list(report.history)
            rows[-1] = {**rows[-1], **{f"val_{k}": v for k, v in values.items()}}
            report = dataclasses.replace(report, history=tuple(rows))
        epoch_log(report)
        if on_epoch is not None and main:
            on_epoch(report)

    options = FitOptions(checkpoint, resume, chash, progress, after_epoch, compile_model)
    try:
        result = train(run, model, method, device, options)
    finally:
        epoch_log.close()
    if not main:
        return None
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "task": run.task.name,
        "method": method.name,
        "seed": run.seed,
        "split": run.split,
        "profile": run.profile,
        "overrides": used_overrides(method, run.overrides),
        "config": config,
        "config_hash": chash,
        "metrics": result.metrics,
        "details": result.evaluation.details,
        "history": result.history,
        **({"eval_history": eval_history} if eval_every else {}),
        "wall_time_s": round(result.wall_time_s, 3),
        "resumed_at_epoch": result.resumed_at_epoch,
        "amp": result.extra["amp"],
        "compiled": result.extra["compiled"],
        "processes": distributed.world()[1],
        "dataset": {"name": run.task.dataset, "fingerprint": run.data.fingerprint},
        "weights": model.pretrained_weights,
        "backbone": run.task.backbone(run.cfg),
        "reproducibility": exact.describe(run.exact),
        "provenance": {**provenance(device, code), "command": ["cirbench", *command]},
    }
    if run.origin is not None:
        record["origin"] = dict(run.origin)
    try:
        write_record(path, record)
    except OSError as exc:
        raise CirbenchError(
            f"cannot write the record {path}: {exc.strerror or exc}. The trained model is in "
            f"the checkpoint {checkpoint}: free space (or fix the folder), then rerun the same "
            "command with --resume to write the record without training again"
        ) from None
    return path
