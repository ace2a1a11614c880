"""``cirbench gpu-check --out DIR``: check a GPU machine in one command (issue 18).

GPU time, when lent, is short, so everything a GPU must confirm runs in one process, on data it
generates itself (nothing is downloaded), and lands in ``DIR/gpu-check.json`` plus a Markdown
summary ``DIR/gpu-check.md``. Items:

1. ``smoke``: every task's ``smoke`` profile (market1501, cuhk-sysu, tieredimagenet, cifar10,
   omniglot) on a tree generated in its canonical layout by the test suite's fixture writers
   (``tests/fixture_*.py``; a source checkout is needed) or, for Omniglot, by
   :func:`write_omniglot_tree`; through :func:`cirbench.runner.train_and_record`, so the item
   checks the record: it finished, every logged loss is finite, ``amp`` is true on CUDA.
2. ``throughput``: BoT (ResNet-50, last stride 1, BNNeck) at 256x128, P x K = 16 x 4,
   ``ls+triplet``, Adam, AMP on CUDA: images/s of (a) a bare loop on synthetic tensors already
   on the device (forward, loss, backward, optimizer step; CUDA events on a GPU),
   (b) :func:`cirbench.engine.train_one_epoch` on the same tensors, (c) the engine fed by the
   market1501 task's real JPEG pipeline (decode, flip, pad + crop, erasing, DataLoader workers)
   over one epoch of a generated Market-layout tree of 751 ids (about 13k JPEGs of 32x64
   pixels; the real images are 64x128, so decoding here is cheaper), loader start included.
   (a) and (b) alternate over ``rounds`` and their medians are reported; b/a and c/a with the
   issue's goals (>= 0.97, >= 0.90).
3. ``cir_overhead``: engine step time of ``cir+ls+triplet`` against ``ls+triplet`` on the same
   synthetic batches, alternating, medians; goal <= 3%.
4. ``compile`` (only with ``--compile``): ``torch.compile`` of the model in the bare loop: the
   first (compiling) step's time and the speed-up of the compiled loop over (a).
5. ``reid_eval``: :func:`cirbench.eval.reid.evaluate_reid` at Market size (3,368 x 15,913 x
   2048, noisy ids: recall@1 far from 1) with distance blocks on the device against the CPU;
   the two must give the same metrics (up to float rounding of the distances).
6. ``syncs``: on CUDA, host synchronisations per engine step, counted with
   ``torch.cuda.set_sync_debug_mode("warn")`` (the gradient scaler's inf check is one).

Peak device memory (``torch.cuda.max_memory_allocated``) is recorded per item; on the CPU it is
"n/a". ``--tiny`` shrinks every size (ResNet-18 at an eighth of the width, 32x16, 4 x 4, 3 steps,
a 300 x 1,500 x 128 evaluation, epoch 1 of each smoke profile) so the same code runs on a CPU in
the test suite. Every item catches its own failure and records it, so one broken item does not
hide the others; the command exits 1 if any item failed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import json
import logging
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from cirbench import engine
from cirbench.config import Overrides
from cirbench.data import omniglot
from cirbench.data.catalog import CATALOG_ENV
from cirbench.errors import CirbenchError
from cirbench.eval.reid import evaluate_reid, synthetic_reid
from cirbench.methods import MethodContext, build_method
from cirbench.methods.base import Method
from cirbench.models.bot import BoTNet
from cirbench.results import write_atomic
from cirbench.runner import RunSpec, train_and_record
from cirbench.tasks import TASKS
from cirbench.tasks.market import Market1501, MarketConfig, MarketTaskData, loader_options

log = logging.getLogger(__name__)

TESTS = Path(__file__).resolve().parents[1] / "tests"
GOALS = {"b_over_a": 0.97, "c_over_a": 0.90, "cir_overhead": 0.03}


@dataclass(frozen=True)
class Sizes:
    """Everything that ``--tiny`` shrinks."""

    backbone: str
    width: int
    height: int
    image_width: int
    p: int
    k: int
    steps: int
    warmup: int
    rounds: int
    market_ids: int
    market_per_id: int
    eval_shape: tuple[int, int, int]  # queries, gallery, dim
    eval_ids: int
    smoke_epochs: int | None  # None: the profile's own


FULL = Sizes("resnet50", 64, 256, 128, 16, 4, 30, 5, 3, 751, 16, (3368, 15913, 2048), 750, None)
TINY = Sizes("resnet18", 8, 32, 16, 4, 4, 3, 1, 2, 8, 4, (300, 1500, 128), 60, 1)


def peak_mib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def fixture_modules() -> Iterator[None]:
    """Make the test suite's fixture writers importable (they need a source checkout)."""
    if not (TESTS / "fixture_market.py").is_file():
        raise CirbenchError(
            f"gpu-check writes its data with the fixture code in {TESTS}, which is missing: "
            "run it from a source checkout of cirbench"
        )
    sys.path.insert(0, str(TESTS))
    try:
        yield
    finally:
        sys.path.remove(str(TESTS))


@contextlib.contextmanager
def environ(name: str, value: str | None) -> Iterator[None]:
    old = os.environ.get(name)
    if value is not None:
        os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def write_omniglot_tree(folder: Path, name: str, n_classes: int, drawers: int) -> None:
    """An Omniglot-layout set ``folder/name/<alphabet>/characterNN/<id>_<drawer>.png`` of
    105x105 1-bit images (random strokes; enough for the loader and one smoke run)."""
    rng = np.random.default_rng(len(name))
    for c in range(n_classes):
        char = folder / name / f"Script{c // 5}" / f"character{c % 5 + 1:02d}"
        char.mkdir(parents=True, exist_ok=True)
        for d in range(drawers):
            Image.fromarray(rng.random((105, 105)) > 0.1).save(char / f"{c:04d}_{d + 1:02d}.png")


# --- item 1: every task's smoke profile ----------------------------------------------------


@dataclass(frozen=True)
class SmokeCase:
    task: str
    method: str
    write: Callable[[Path], str | None]  # writes under the data root, returns a catalogue path
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    patch: dict[str, int] = dataclasses.field(default_factory=dict)  # omniglot set sizes


def _market(root: Path) -> str:
    return str(importlib.import_module("fixture_market").write_market_fixture(root).catalog)


def _cuhk(root: Path) -> None:
    importlib.import_module("fixture_cuhk").write_cuhk_fixture(root / "cuhk_sysu")


def _tiered(root: Path) -> None:
    fx = importlib.import_module("fixture_tiered")
    fx.make_tiered(root, "pkl", fx.FULL, {"train": 4, "val": 1, "test": 20}, size=8)


def _cifar(root: Path) -> str:
    fx = importlib.import_module("fixture_cifar")
    fx.write_cifar10(root / "cifar-10-batches-py", per_batch=20, test=30)
    return str(fx.catalog_for(root / "datasets.yaml", "cifar10", root, "cifar-10-batches-py"))


OMNIGLOT_SETS = {
    "images_background_small1": 4,
    "images_background_small2": 4,
    "images_evaluation": 6,
}


def _omniglot(root: Path) -> None:
    for name, classes in OMNIGLOT_SETS.items():
        write_omniglot_tree(root / "omniglot", name, classes, 8 if "background" in name else 6)


SMOKE_CASES = (
    SmokeCase("market1501", "cir+ls+triplet", _market),
    SmokeCase("cuhk-sysu", "cir+oim", _cuhk),
    SmokeCase("tieredimagenet", "proto", _tiered),
    SmokeCase("cifar10", "cir+ce", _cifar, {"batch_size": 20}),
    SmokeCase(
        "omniglot",
        "cir+triplet",
        _omniglot,
        {"ways": (2, 6), "shots": (1, 2), "n_query": 3, "batch_size": 8},
        OMNIGLOT_SETS,
    ),
)


@contextlib.contextmanager
def omniglot_sizes(patch: dict[str, int]) -> Iterator[None]:
    """The generated Omniglot sets are smaller than the real ones the reader expects."""
    old = dict(omniglot.SET_CLASSES)
    omniglot.SET_CLASSES.update(patch)
    try:
        yield
    finally:
        omniglot.SET_CLASSES.clear()
        omniglot.SET_CLASSES.update(old)


def smoke_one(case: SmokeCase, work: Path, device: torch.device, sizes: Sizes) -> dict[str, Any]:
    root = work / "data" / case.task
    root.mkdir(parents=True, exist_ok=True)
    with fixture_modules():
        catalog = case.write(root)
    task = TASKS.get(case.task)()
    with environ(CATALOG_ENV, catalog), omniglot_sizes(case.patch):
        data = task.load(root)
    cfg = task.profile("smoke")
    changes = dict(case.overrides)
    if sizes.smoke_epochs is not None:
        changes["epochs"] = sizes.smoke_epochs
    cfg = dataclasses.replace(cfg, **changes)
    run = RunSpec(task, data, case.method, 0, cfg, "smoke", Overrides())
    reset_peak(device)
    start = time.perf_counter()
    path = train_and_record(run, work / "out", device)
    seconds = time.perf_counter() - start
    assert path is not None
    record = json.loads(path.read_text())
    losses = [v for h in record["history"] for k, v in h.items() if k not in ("epoch", "lr")]
    finite = all(math.isfinite(v) for v in losses)
    amp_ok = record["amp"] is (device.type == "cuda")
    return {
        "task": case.task,
        "method": case.method,
        "ok": finite and amp_ok,
        "seconds": round(seconds, 2),
        "loss_finite": finite,
        "amp": record["amp"],
        "metrics": record["metrics"],
        "peak_mib": peak_mib(device),
    }


# --- items 2-4: throughput of a bare loop, the engine, the real pipeline; CIR; compile ------


@dataclass
class Bench:
    """One BoT model, method, optimizer and scaler, and synthetic batches on the device."""

    model: BoTNet
    method: Method
    optimizers: list[torch.optim.Optimizer]
    scaler: torch.amp.GradScaler
    batches: list[tuple[Tensor, Tensor]]
    device: torch.device


def make_bench(spec: str, sizes: Sizes, num_classes: int, device: torch.device) -> Bench:
    torch.manual_seed(0)
    model = BoTNet(num_classes, sizes.backbone, 1, None, sizes.width).to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    method = build_method(spec, MethodContext(num_classes, model.embed_dim)).to(device)
    cfg = engine.TrainConfig(epochs=1, batch_size=sizes.p * sizes.k, lr=3.5e-4, weight_decay=5e-4)
    optimizers = [engine.make_optimizer(model, cfg), *method.auxiliary_optimizers()]
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    gen = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(sizes.steps):
        x = torch.randn(sizes.p * sizes.k, 3, sizes.height, sizes.image_width, generator=gen)
        ids = torch.randperm(num_classes, generator=gen)[: sizes.p]
        batches.append((engine.to_device(x, device), ids.repeat_interleave(sizes.k).to(device)))
    return Bench(model, method, optimizers, scaler, batches, device)


def bare_loop(b: Bench) -> float:
    """Images/s of the plainest AMP training loop over ``b.batches``."""
    b.model.train()
    b.method.train()
    amp = b.scaler.is_enabled()
    timer = Timer(b.device)
    for x, y in b.batches:
        with torch.autocast(b.device.type, dtype=torch.float16, enabled=amp):
            loss = b.method(b.model(x), y, b.model.head)["total"]
        for opt in b.optimizers:
            opt.zero_grad(set_to_none=True)
        b.scaler.scale(loss).backward()
        for opt in b.optimizers:
            b.scaler.step(opt)
        b.scaler.update()
    return len(b.batches) * len(b.batches[0][1]) / timer.seconds()


def engine_loop(b: Bench) -> float:
    out = engine.train_one_epoch(b.model, b.method, b.batches, b.optimizers, b.scaler, b.device, 0)
    return out["images_per_s"]


class Timer:
    """Wall time of a span of device work: CUDA events on a GPU, perf_counter on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        if device.type == "cuda":
            self.begin = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            self.end = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            self.begin.record()
        self.start = time.perf_counter()

    def seconds(self) -> float:
        if self.device.type == "cuda":
            self.end.record()
            self.end.synchronize()
            return float(self.begin.elapsed_time(self.end)) / 1000.0
        return time.perf_counter() - self.start


def alternate(fns: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Call each function once per round, the order reversed every other round."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            out[name].append(fns[name]())
    return out


def warm(b: Bench, sizes: Sizes) -> None:
    saved = b.batches
    b.batches = saved[: sizes.warmup]
    bare_loop(b)
    engine_loop(b)
    b.batches = saved


def market_pipeline(work: Path, sizes: Sizes) -> tuple[Market1501, MarketTaskData, MarketConfig]:
    root = work / "data" / "market-throughput"
    with fixture_modules():
        fx = importlib.import_module("fixture_market")
        catalog = fx.write_market_fixture(
            root, n_train_ids=sizes.market_ids, per_id=sizes.market_per_id
        ).catalog
    task = Market1501()
    with environ(CATALOG_ENV, str(catalog)):
        data = task.load(root)
    base = task.profile("paper" if sizes is FULL else "smoke")
    cfg = dataclasses.replace(base, epochs=1, num_workers=None if sizes is FULL else 0)
    return task, data, cfg


def throughput(work: Path, device: torch.device, sizes: Sizes) -> dict[str, Any]:
    task, data, cfg = market_pipeline(work, sizes)
    b = make_bench("ls+triplet", sizes, data.num_classes, device)
    warm(b, sizes)
    reset_peak(device)
    rates = alternate({"a": lambda: bare_loop(b), "b": lambda: engine_loop(b)}, sizes.rounds)
    peak_ab = peak_mib(device)
    reset_peak(device)
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    c_out = engine.train_one_epoch(
        b.model, b.method, task.train_batches(data, cfg, gen), b.optimizers, b.scaler, device, 0
    )
    c_seconds = time.perf_counter() - start
    a, bb = statistics.median(rates["a"]), statistics.median(rates["b"])
    c = c_out["images_per_s"]
    return {
        "ok": True,
        "model": f"BoT {sizes.backbone} (width {sizes.width}) at {sizes.height}x"
        f"{sizes.image_width}, P x K {sizes.p} x {sizes.k}, ls+triplet, Adam, "
        f"amp={b.scaler.is_enabled()}",
        "a_bare_images_per_s": rates["a"],
        "b_engine_images_per_s": rates["b"],
        "a_median": a,
        "b_median": bb,
        "c_pipeline_images_per_s": c,
        "c_epoch_seconds": round(c_seconds, 2),
        "c_images": len(data.market.train.pids),
        "c_workers": engine_workers(cfg),
        "b_over_a": bb / a,
        "c_over_a": c / a,
        "goals": {"b_over_a": GOALS["b_over_a"], "c_over_a": GOALS["c_over_a"]},
        "peak_mib_a_b": peak_ab,
        "peak_mib_c": peak_mib(device),
    }


def engine_workers(cfg: MarketConfig) -> int:
    return int(loader_options(cfg)["num_workers"])


def epoch_seconds(b: Bench) -> float:
    """Seconds of one engine pass over ``b.batches`` (from its images/s)."""
    return len(b.batches) * len(b.batches[0][1]) / engine_loop(b)


def cir_overhead(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    num_classes = 751 if sizes is FULL else 8
    benches = {
        s: make_bench(s, sizes, num_classes, device) for s in ("ls+triplet", "cir+ls+triplet")
    }
    for b in benches.values():
        warm(b, sizes)
    steps = sizes.steps
    fns: dict[str, Callable[[], float]] = {
        s: functools.partial(epoch_seconds, b) for s, b in benches.items()
    }
    times = alternate(fns, sizes.rounds)
    base, cir = statistics.median(times["ls+triplet"]), statistics.median(times["cir+ls+triplet"])
    return {
        "ok": True,
        "step_s_ls_triplet": base / steps,
        "step_s_cir_ls_triplet": cir / steps,
        "overhead": cir / base - 1.0,
        "goal": GOALS["cir_overhead"],
        "rounds_s": times,
    }


def compile_check(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    plain = make_bench("ls+triplet", sizes, 751 if sizes is FULL else 8, device)
    warm(plain, sizes)
    compiled = make_bench("ls+triplet", sizes, 751 if sizes is FULL else 8, device)
    compiled.model.compile()
    first = compiled.batches
    compiled.batches = first[:1]
    start = time.perf_counter()
    bare_loop(compiled)
    sync(device)
    compile_s = time.perf_counter() - start
    compiled.batches = first
    bare_loop(compiled)  # recompiles settle here, if any
    rates = alternate(
        {"eager": lambda: bare_loop(plain), "compiled": lambda: bare_loop(compiled)}, sizes.rounds
    )
    eager, comp = statistics.median(rates["eager"]), statistics.median(rates["compiled"])
    return {
        "ok": True,
        "first_step_s": compile_s,
        "eager_images_per_s": eager,
        "compiled_images_per_s": comp,
        "speedup": comp / eager,
    }


def syncs_per_step(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    if device.type != "cuda":
        return {"ok": True, "syncs_per_step": None, "note": "n/a: needs CUDA"}
    b = make_bench("cir+ls+triplet", sizes, 751 if sizes is FULL else 8, device)
    warm(b, sizes)
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            engine_loop(b)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    where = sorted({str(w.filename) + ":" + str(w.lineno) for w in caught})
    return {"ok": True, "syncs_per_step": len(caught) / len(b.batches), "where": where[:20]}


# --- item 5: re-ID evaluation on the device vs the CPU --------------------------------------


def noisy_reid(sizes: Sizes, noise: float = 4.0) -> dict[str, np.ndarray]:
    """Market-shaped ids and cameras; features = id centre + ``noise`` x N(0, 1)."""
    nq, ng, dim = sizes.eval_shape
    return synthetic_reid(nq, ng, sizes.eval_ids, ng // 6, dim, noise)


def reid_eval(device: torch.device, sizes: Sizes) -> dict[str, Any]:
    d = noisy_reid(sizes)
    args = (
        torch.from_numpy(d["qf"]),
        torch.from_numpy(d["gf"]),
        d["q_pids"],
        d["q_cams"],
        d["g_pids"],
        d["g_cams"],
    )
    out: dict[str, Any] = {"shape": list(sizes.eval_shape)}
    for where in ("cpu", device.type) if device.type != "cpu" else ("cpu",):
        reset_peak(device)
        start = time.perf_counter()
        metrics = evaluate_reid(*args, device=torch.device(where)).metrics
        out[where] = {
            "seconds": time.perf_counter() - start,
            "metrics": metrics,
            "peak_mib": peak_mib(device) if where == "cuda" else None,
        }
    if "cuda" in out:
        diff = max(
            abs(out["cuda"]["metrics"][k] - out["cpu"]["metrics"][k]) for k in out["cpu"]["metrics"]
        )
        out["max_metric_difference"] = diff
        out["speedup"] = out["cpu"]["seconds"] / out["cuda"]["seconds"]
    out["ok"] = out.get("max_metric_difference", 0.0) < 1e-3
    return out


# --- driver and summary --------------------------------------------------------------------


def run_item(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        result = fn()
    except Exception as exc:  # one broken item must not hide the others: record it
        log.exception("gpu-check item %s failed", name)
        result = {"item": name, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}
    result["item_seconds"] = round(time.perf_counter() - start, 2)
    return result


def describe_device(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info |= {
            "name": props.name,
            "memory_gib": props.total_memory / 2**30,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),  # type: ignore[no-untyped-call]
        }
    return info


def gpu_check(
    out: Path,
    device: torch.device,
    tiny: bool,
    compile_model: bool,
    tasks: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Run every item (smoke runs of ``tasks`` only, default all), write
    ``out/gpu-check.json`` and ``out/gpu-check.md``; return the report."""
    known = [c.task for c in SMOKE_CASES]
    unknown = sorted(set(tasks or ()) - set(known))
    if unknown:
        raise CirbenchError(f"gpu-check --tasks: unknown {', '.join(unknown)}; use {known}")
    sizes = TINY if tiny else FULL
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    report: dict[str, Any] = {"tiny": tiny, "machine": describe_device(device)}
    report["smoke"] = [
        run_item(c.task, functools.partial(smoke_one, c, work, device, sizes))
        for c in SMOKE_CASES
        if tasks is None or c.task in tasks
    ]
    report["throughput"] = run_item("throughput", lambda: throughput(work, device, sizes))
    report["cir_overhead"] = run_item("cir_overhead", lambda: cir_overhead(device, sizes))
    report["compile"] = (
        run_item("compile", lambda: compile_check(device, sizes))
        if compile_model
        else {"ok": True, "note": "not requested (--compile)"}
    )
    report["reid_eval"] = run_item("reid_eval", lambda: reid_eval(device, sizes))
    report["syncs"] = run_item("syncs", lambda: syncs_per_step(device, sizes))
    report["seconds"] = round(time.perf_counter() - start, 1)
    items = [*report["smoke"], *(report[k] for k in ITEMS)]
    report["ok"] = all(i["ok"] for i in items)
    write_atomic(out / "gpu-check.json", json.dumps(report, indent=2, default=str).encode())
    write_atomic(out / "gpu-check.md", markdown(report).encode())
    return report


ITEMS = ("throughput", "cir_overhead", "compile", "reid_eval", "syncs")


def fmt(value: Any, spec: str = ".3f") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"# cirbench gpu-check ({'tiny' if r['tiny'] else 'full'} sizes): "
        f"{'all items ok' if r['ok'] else 'SOME ITEMS FAILED'}",
        "",
        f"Device {m['device']} {m.get('name', '')}, torch {m['torch']}, "
        f"{m['cpus']} CPUs; {r['seconds']} s in all. Figures: gpu-check.json.",
        "",
        "| smoke run | method | ok | loss finite | amp | seconds | peak MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in r["smoke"]:
        if "error" in s:
            lines.append(f"| {s['item']} | | FAILED: {s['error'][:200]} | | | | |")
            continue
        lines.append(
            f"| {s['task']} | `{s['method']}` | {s['ok']} | {s['loss_finite']} | {s['amp']} | "
            f"{s['seconds']} | {fmt(s['peak_mib'], '.0f')} |"
        )
    lines += ["", "| item | result | goal |", "|---|---|---|"]
    t = r["throughput"]
    if "error" in t:
        lines.append(f"| throughput | FAILED: {t['error'][:300]} | |")
    else:
        lines += [
            f"| (a) bare loop | {t['a_median']:.1f} images/s ({t['model']}) | |",
            f"| (b) engine, same tensors | {t['b_median']:.1f} images/s; b/a = "
            f"{t['b_over_a']:.3f} | >= {GOALS['b_over_a']} |",
            f"| (c) engine + JPEG pipeline | {t['c_pipeline_images_per_s']:.1f} images/s over "
            f"{t['c_images']} images, {t['c_workers']} workers; c/a = {t['c_over_a']:.3f} | "
            f">= {GOALS['c_over_a']} |",
            f"| peak memory (a, b / c) | {fmt(t['peak_mib_a_b'], '.0f')} / "
            f"{fmt(t['peak_mib_c'], '.0f')} MiB | |",
        ]
    c = r["cir_overhead"]
    lines.append(
        f"| CIR overhead (cir+ls+triplet vs ls+triplet) | {c['overhead']:+.2%} per step | "
        f"<= {GOALS['cir_overhead']:.0%} |"
        if "error" not in c
        else f"| CIR overhead | FAILED: {c['error'][:300]} | |"
    )
    k = r["compile"]
    if "speedup" in k:
        speed, first = k["speedup"], k["first_step_s"]
        lines.append(f"| torch.compile | x{speed:.3f}, first step {first:.1f} s | |")
    else:
        lines.append(f"| torch.compile | {k.get('note') or 'FAILED: ' + k.get('error', '')} | |")
    e = r["reid_eval"]
    if "error" in e:
        lines.append(f"| re-ID evaluation | FAILED: {e['error'][:300]} | |")
    else:
        shape = " x ".join(map(str, e["shape"]))
        gpu = e.get("cuda")
        gpu_text = (
            f"; CUDA {gpu['seconds']:.2f} s (x{e['speedup']:.1f}), peak "
            f"{fmt(gpu['peak_mib'], '.0f')} MiB, max metric difference "
            f"{e['max_metric_difference']:.1e}"
            if gpu
            else "; CUDA n/a"
        )
        lines.append(
            f"| re-ID evaluation {shape} | CPU {e['cpu']['seconds']:.2f} s, recall@1 "
            f"{e['cpu']['metrics']['recall@1']:.3f}{gpu_text} | |"
        )
    y = r["syncs"]
    lines.append(f"| host syncs per engine step | {fmt(y.get('syncs_per_step'), '.1f')} | |")
    return "\n".join(lines) + "\n"
