"""Training and evaluation: a flat loop, no hook framework.

``fit`` trains ``model`` with ``method`` for ``cfg.epochs`` epochs, writes a checkpoint after each
epoch (atomically), can resume from it bit-identically, then evaluates with the task's protocol.
On CUDA it uses automatic mixed precision and channels_last; on CPU it is deterministic: the same
seed gives the same metrics.

A model whose loss needs more than ``method(features, labels, head)`` (a detector with its own
losses, as in person search) defines ``training_step(x, y, method) -> dict[str, Tensor]`` that
returns every term and the ``"total"`` to minimise; the engine then calls it instead, with
``(x, y)`` moved to the device (tensors inside lists, tuples and dicts included).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from cirbench import distributed
from cirbench.config import FloatRange, SearchSpace
from cirbench.errors import CirbenchError, TrainingDivergedError
from cirbench.methods.base import LOGITS, Method
from cirbench.models import EmbeddingNet
from cirbench.results import atomic_file

log = logging.getLogger(__name__)

#: One epoch of (inputs, labels): tensors, or lists / tuples / dicts of tensors for a model
#: with its own ``training_step``.
Batches = Iterable[tuple[Any, Any]]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation schedule. Tasks give per-profile values; ``--set train.FIELD=...`` edits them.

    The learning rate follows ``warmup_epochs`` of linear warm-up from ``warmup_factor * lr``,
    then ``schedule``: constant, ``step`` (x ``gamma`` at each of ``milestones``), or ``cosine``
    (to 0 at the last epoch). The scheduler steps once per epoch.
    """

    epochs: int
    batch_size: int
    lr: float
    optimizer: Literal["adam", "sgd"] = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: Literal["constant", "step", "cosine"] = "constant"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_epochs: int = 0
    warmup_factor: float = 0.01
    amp: bool = True
    #: Tuning range (ours): the learning rate, log-uniform over three decades.
    search_space: ClassVar[SearchSpace] = {"lr": FloatRange(1e-4, 1e-1, log=True)}

    def validate(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if not self.lr > 0:  # also refuses NaN
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if not self.gamma > 0:
            raise ValueError(f"gamma must be > 0, got {self.gamma}")
        if self.warmup_epochs < 0 or not 0 < self.warmup_factor <= 1:
            raise ValueError("warmup_epochs must be >= 0 and warmup_factor in (0, 1]")
        if any(m < 1 for m in self.milestones):
            raise ValueError(f"milestones must be epochs >= 1, got {self.milestones}")


@dataclass
class Evaluation:
    """What a task's evaluation returns: scalar ``metrics`` (fractions, e.g. 0.93 for 93%) and
    optional JSON-ready ``details`` kept in the record (e.g. per-episode accuracies that allow
    paired tests between methods scored on the same episodes)."""

    metrics: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)


EvaluateFn = Callable[["EmbeddingNet", Method, torch.device], Evaluation]


@dataclass
class FitResult:
    evaluation: Evaluation
    history: list[dict[str, float]]
    wall_time_s: float
    resumed_at_epoch: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, float]:
        return self.evaluation.metrics


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=False
    )


def lr_factor(epoch: int, cfg: TrainConfig) -> float:
    """Multiplier of ``cfg.lr`` during ``epoch`` (0-based)."""
    if epoch < cfg.warmup_epochs:
        return cfg.warmup_factor + (1.0 - cfg.warmup_factor) * epoch / cfg.warmup_epochs
    if cfg.schedule == "step":
        return float(cfg.gamma ** sum(epoch >= m for m in cfg.milestones))
    if cfg.schedule == "cosine":
        span = max(1, cfg.epochs - cfg.warmup_epochs)
        return 0.5 * (1.0 + math.cos(math.pi * (epoch - cfg.warmup_epochs) / span))
    return 1.0


def to_device(x: Tensor, device: torch.device) -> Tensor:
    x = x.to(device, non_blocking=True)
    if device.type == "cuda" and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def batch_to_device(obj: Any, device: torch.device) -> Any:
    """:func:`to_device` applied to every tensor inside lists, tuples and dicts."""
    if isinstance(obj, Tensor):
        return to_device(obj, device)
    if isinstance(obj, list | tuple):
        return type(obj)(batch_to_device(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: batch_to_device(v, device) for k, v in obj.items()}
    return obj


#: Steps between two reads of the running loss for the progress bar (``progress=True`` only).
PROGRESS_EVERY = 25


class _EpochLosses:
    """Running sums of the loss terms and the first non-finite step, kept on the device.

    Nothing here reads a value back to the host during the epoch: each step adds the terms
    (as float64, so the per-epoch means are bit for bit what ``sum(float(v))`` gave before,
    Python floats being IEEE doubles added in the same order) and records, with
    ``torch.where``, the step and the values of the first step whose total was not finite.
    :meth:`result` reads everything once.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.keys: tuple[str, ...] = ()
        self.sums = torch.zeros(0, dtype=torch.float64, device=device)
        self.bad_step = torch.full((), -1, dtype=torch.int64, device=device)
        self.bad_values = self.sums

    def add(self, terms: dict[str, Tensor], step: int) -> None:
        keys = tuple(terms)
        if not self.keys:
            self.keys = keys
            self.sums = torch.zeros(len(keys), dtype=torch.float64, device=self.device)
            self.bad_values = self.sums.clone()
        if keys != self.keys:
            raise RuntimeError(f"loss terms changed within an epoch: {self.keys} -> {keys}")
        values = torch.stack([v.detach().to(torch.float64) for v in terms.values()])
        self.sums += values
        first = (self.bad_step < 0) & ~torch.isfinite(values[keys.index("total")])
        self.bad_step = torch.where(first, step, self.bad_step)
        self.bad_values = torch.where(first, values, self.bad_values)

    def total(self) -> float:
        """The running sum of ``total`` (one host read, for the progress bar)."""
        return float(self.sums[self.keys.index("total")])

    def check(self, epoch: int) -> None:
        """Raise :class:`TrainingDivergedError` if some step so far had a non-finite total."""
        step = int(self.bad_step)
        if step < 0:
            return
        values = dict(zip(self.keys, self.bad_values.tolist(), strict=True))
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        raise TrainingDivergedError(
            f"training diverged: loss {', '.join(bad)} became {values['total']} at epoch "
            f"{epoch + 1}, step {step + 1}. Lower the learning rate (--set train.lr=...) or the "
            "loss weights; no result record was written."
        )

    def means(self, steps: int) -> dict[str, float]:
        return {k: v / steps for k, v in zip(self.keys, self.sums.tolist(), strict=True)}


def train_one_epoch(
    model: nn.Module,
    method: Method,
    batches: Batches,
    optimizers: list[torch.optim.Optimizer],
    scaler: torch.amp.GradScaler,
    device: torch.device,
    epoch: int,
    progress: bool = False,
    total: int | None = None,
) -> dict[str, float]:
    """One pass over ``batches``; returns the mean of every loss term, the images/s (all ranks)
    and the number of ``steps``. ``total``: the steps expected, for the progress bar's ETA.

    ``model`` is an :class:`EmbeddingNet` or the DDP wrapper of one.

    The step does not wait for the device: loss terms are summed on it and read once at the end
    of the epoch (and every :data:`PROGRESS_EVERY` steps when the progress bar is on). A
    non-finite total is therefore reported when it is read, not at the step it happened: the
    error names the epoch and the first bad step (recorded on the device), but the steps after it
    have already run (with NaN weights on CPU; on CUDA the gradient scaler skips them).
    """
    model.train()
    method.train()
    head = unwrap(model).head
    method_params = [p for p in method.parameters() if p.requires_grad]
    world_size = distributed.world()[1]
    amp = scaler.is_enabled()
    losses = _EpochLosses(device)
    steps = images = 0
    start = time.perf_counter()
    bar = tqdm(batches, desc=f"epoch {epoch + 1}", total=total, leave=False, disable=not progress)
    custom_step = getattr(unwrap(model), "training_step", None)
    for step, (x, y) in enumerate(bar):
        x, y = batch_to_device(x, device), batch_to_device(y, device)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            terms = custom_step(x, y, method) if custom_step else method(model(x), y, head)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        scaler.scale(terms["total"]).backward()
        distributed.average_gradients(method_params)
        for opt in optimizers:
            scaler.step(opt)
        scaler.update()
        losses.add(terms, step)
        steps += 1
        images += len(y) * world_size
        if progress and steps % PROGRESS_EVERY == 0:
            losses.check(epoch)
            rate = images / (time.perf_counter() - start)
            bar.set_postfix(loss=f"{losses.total() / steps:.4f}", img_s=f"{rate:.0f}")
    if steps == 0:
        raise CirbenchError("the training set gave no batch: lower train.batch_size")
    losses.check(epoch)
    seconds = time.perf_counter() - start
    return {**losses.means(steps), "images_per_s": images / seconds, "steps": steps}


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically (:func:`cirbench.results.atomic_file`): a killed process or a full disk
    leaves the previous checkpoint intact and no temp file behind."""
    try:
        with atomic_file(path) as fh:
            torch.save(state, fh)
    except OSError as exc:
        had = "the previous epoch's checkpoint is intact" if path.exists() else "none was saved"
        raise CirbenchError(
            f"cannot write checkpoint {path}: {exc.strerror or exc}; {had}. Free space (or fix "
            "the folder), then rerun the same command with --resume"
        ) from None


def _numpy_state() -> dict[str, Any]:
    """numpy's global RNG state as tensors and numbers: a checkpoint must load with
    ``weights_only=True``, which refuses numpy arrays."""
    name, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    assert isinstance(keys, np.ndarray)
    return {
        "name": name,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "gauss": float(gauss),
    }


def _set_numpy_state(state: dict[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state((state["name"], keys, state["pos"], state["has_gauss"], state["gauss"]))


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
        "data": generator.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    random.setstate(state["python"])
    _set_numpy_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    generator.set_state(state["data"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class TrainState:
    """Everything a checkpoint holds, so that resuming is bit-identical."""

    model: nn.Module
    method: Method
    optimizers: list[torch.optim.Optimizer]
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    generator: torch.Generator
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0

    def state_dict(self, fingerprint: str, rng: list[dict[str, Any]]) -> dict[str, Any]:
        """``rng``: every rank's RNG state, in rank order."""
        return {
            "fingerprint": fingerprint,
            "world_size": len(rng),
            "epoch": len(self.history),
            "model": self.model.state_dict(),
            "method": self.method.state_dict(),
            "optimizers": [o.state_dict() for o in self.optimizers],
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "history": self.history,
            "train_seconds": self.train_seconds,
            "rng": rng,
        }

    def load(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.method.load_state_dict(ckpt["method"])
        for opt, saved in zip(self.optimizers, ckpt["optimizers"], strict=True):
            opt.load_state_dict(saved)
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.history = list(ckpt["history"])
        self.train_seconds = float(ckpt["train_seconds"])
        set_rng_state(ckpt["rng"][distributed.world()[0]], self.generator)


def load_checkpoint(path: Path, state: TrainState, fingerprint: str) -> int | None:
    """Restore ``state`` from ``path`` if it exists; return the epoch it resumes at."""
    if not path.exists():
        log.info("no checkpoint at %s: starting from scratch", path)
        return None
    try:
        # weights_only: tensors and plain containers only, no code runs from the file
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(ckpt, dict):
            raise TypeError(f"it holds a {type(ckpt).__name__}, not a checkpoint")
    except Exception as exc:  # truncated, empty, random bytes, a folder, a foreign pickle
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CirbenchError(
            f"checkpoint {path} is not readable ({type(exc).__name__}: {reason[:200]}); "
            "delete it, or run without --resume to start over"
        ) from None
    if ckpt.get("fingerprint") != fingerprint:
        raise CirbenchError(
            f"checkpoint {path} belongs to a different configuration; delete it or run "
            "without --resume"
        )
    if ckpt.get("world_size") != distributed.world()[1]:
        raise CirbenchError(
            f"checkpoint {path} was written by {ckpt.get('world_size')} processes; resume it "
            f"with --nproc {ckpt.get('world_size')}"
        )
    try:
        state.load(ckpt)
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
        raise CirbenchError(
            f"checkpoint {path} is incomplete ({type(exc).__name__}: {str(exc)[:200]}); "
            "delete it, or run without --resume to start over"
        ) from None
    return len(state.history)


@dataclass(frozen=True)
class EpochReport:
    """What :func:`fit` tells ``FitOptions.on_epoch`` after each epoch (rank 0 and others)."""

    epoch: int  # 1-based
    epochs: int
    history: tuple[dict[str, float], ...]  # every epoch so far, the last one is this epoch's
    seconds: float  # this epoch's training time
    eta_seconds: float  # the remaining epochs at the mean time per epoch of this process


@dataclass(frozen=True)
class FitOptions:
    """How :func:`fit` saves and reports, not what it computes: ``checkpoint`` (written after
    every epoch, None for none), ``resume`` from it, the config ``fingerprint`` a checkpoint must
    match, a ``progress`` bar, ``on_epoch`` called after every epoch (loggers, log lines), and
    ``compile``: ``torch.compile`` the model's forward for training (in place: checkpoints keep
    their keys; evaluation runs uncompiled). How a run computes, not what: it is not part of the
    config hash, and the record says whether it was on."""

    checkpoint: Path | None = None
    resume: bool = False
    fingerprint: str = ""
    progress: bool = False
    on_epoch: Callable[[EpochReport], None] | None = None
    compile: bool = False


def fit(
    model: EmbeddingNet,
    method: Method,
    train_batches: Callable[[torch.Generator], Batches],
    evaluate: EvaluateFn,
    cfg: TrainConfig,
    seed: int,
    device: torch.device,
    options: FitOptions = FitOptions(),
) -> FitResult:
    """Train, checkpointing every epoch, then evaluate. ``train_batches(generator)`` yields one
    epoch of (inputs, labels); all data order randomness must come from ``generator``.

    Examples:
        >>> result = fit(model, method, lambda g: task.train_batches(data, cfg, g),
        ...              lambda m, meth, dev: task.evaluate(EvalContext(m, meth, data, cfg, dev)),
        ...              cfg, seed=0, device=torch.device("cpu"))  # doctest: +SKIP
        >>> result.metrics["top1"]  # doctest: +SKIP
    """
    checkpoint, fingerprint = options.checkpoint, options.fingerprint
    model.to(device)
    method.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    if options.compile:
        model.compile()
    if model.head is not None and LOGITS not in method.requires:
        model.head.requires_grad_(False)  # unused by this method: not trained, not synced
    train_model = wrap_distributed(model, device)
    optimizers = [make_optimizer(model, cfg), *method.auxiliary_optimizers()]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizers[0], lambda e: lr_factor(e, cfg))
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp and device.type == "cuda")
    generator = torch.Generator().manual_seed(seed)
    state = TrainState(model, method, optimizers, scheduler, scaler, generator)
    resumed = None
    if options.resume and checkpoint is not None:
        resumed = load_checkpoint(checkpoint, state, fingerprint)
    steps: int | None = None  # of the previous epoch: the progress bar's total
    for epoch in range(len(state.history), cfg.epochs):
        start = time.perf_counter()
        lr = float(optimizers[0].param_groups[0]["lr"])
        terms = train_one_epoch(
            train_model,
            method,
            train_batches(generator),
            optimizers,
            scaler,
            device,
            epoch,
            options.progress,
            steps,
        )
        steps = int(terms.pop("steps"))
        scheduler.step()
        seconds = time.perf_counter() - start
        state.train_seconds += seconds
        state.history.append({"epoch": epoch + 1, "lr": lr, **terms})
        log.info(
            "epoch %d/%d: %s",
            epoch + 1,
            cfg.epochs,
            ", ".join(f"{k} {v:.4g}" for k, v in terms.items()),
        )
        if checkpoint is not None:
            rng = distributed.gather(rng_state(generator))
            if distributed.is_main():
                save_checkpoint(checkpoint, state.state_dict(fingerprint, rng))
        # after the checkpoint: logs hold exactly the epochs a --resume restores
        if options.on_epoch is not None:  # train_seconds includes a resumed run's earlier epochs
            eta = (cfg.epochs - epoch - 1) * state.train_seconds / (epoch + 1)
            options.on_epoch(EpochReport(epoch + 1, cfg.epochs, tuple(state.history), seconds, eta))
    start = time.perf_counter()
    evaluation = Evaluation({})
    if distributed.is_main():  # metrics are computed once, on rank 0
        evaluation = evaluate_model(model, method, evaluate, device)
    distributed.barrier()
    wall = state.train_seconds + time.perf_counter() - start
    extra = {"amp": scaler.is_enabled(), "compiled": options.compile}
    return FitResult(evaluation, state.history, wall, resumed, extra)


def unwrap(model: nn.Module) -> EmbeddingNet:
    inner = getattr(model, "module", model)
    assert isinstance(inner, EmbeddingNet)
    return inner


def wrap_distributed(model: EmbeddingNet, device: torch.device) -> nn.Module:
    """DistributedDataParallel when several processes train, else the model itself."""
    if distributed.world()[1] == 1:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def evaluate_model(
    model: EmbeddingNet,
    method: Method,
    evaluate: EvaluateFn,
    device: torch.device,
) -> Evaluation:
    """Run the task's evaluation with model and method in eval mode, without gradients."""
    model.eval()
    method.eval()
    with torch.inference_mode():
        return evaluate(model, method, device)
