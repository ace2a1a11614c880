"""Report plots (matplotlib, Agg, no pyplot state): PNG for the Markdown report, PDF for papers.

- ``<task>_metrics``: one panel per metric; a point per row of the task table with ours as the
  mean over seeds and its 95% confidence interval (Student t, n - 1 degrees of freedom, cut at 0
  and 100 where it would cross them); points,
  not bars, so an axis that does not start at zero misleads nobody. The reported value is a
  black diamond, labelled with its number (with the paper's 95% interval where it gives one).
- ``<task>_curves``: per-epoch training loss (``total``, log scale) from the records'
  ``history``, mean over seeds with a min-max band. Throughput is not plotted: on a shared
  machine it mostly shows the machine's load (the records keep it).
"""

from __future__ import annotations

import io
import re
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
from scipy import stats

from cirbench.reporting.tables import TaskTable
from cirbench.results import write_atomic

# PDF without creation date, PNG without software tag: regenerating gives the same bytes.
PDF_META: dict[str, Any] = {"CreationDate": None, "Producer": None, "Creator": None}
PNG_META: dict[str, Any] = {"Software": None}
COLORS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")


def save(fig: Figure, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, pdf = stem.with_suffix(".png"), stem.with_suffix(".pdf")
    for path, kwargs in ((png, {"dpi": 120, "metadata": PNG_META}), (pdf, {"metadata": PDF_META})):
        buffer = io.BytesIO()  # rendered in memory, then replaced atomically
        fig.savefig(buffer, format=path.suffix[1:], **kwargs)
        write_atomic(path, buffer.getvalue())
    return [png, pdf]


_SHOTS = re.compile(r"acc_(\d+)w(\d+)s")
_NAMES = {
    "top1": "top-1 accuracy",
    "error": "top-1 error",
    "mAP": "mAP",
    "mINP": "mINP",
    "det_recall": "detection recall",
    "det_ap": "detection AP",
}


def metric_label(metric: str) -> str:
    """How a reader knows a metric: ``acc_5w1s`` -> ``5-way 1-shot accuracy (%)``."""
    suffix = ""
    for key, words in (("_gall", " (full gallery)"), ("_g", " (gallery {})")):
        head, sep, tail = metric.rpartition(key)
        if sep and ((key == "_gall" and not tail) or tail.isdigit()):
            metric, suffix = head, words.format(tail)
            break
    if match := _SHOTS.fullmatch(metric):
        name = f"{match[1]}-way {match[2]}-shot accuracy"
    elif metric.startswith("recall@") or (metric.startswith("top") and metric[3:].isdigit()):
        k = metric.split("@")[-1] if "@" in metric else metric[3:]
        name = _NAMES.get(metric, f"rank-{k} recall (CMC)")
    else:
        name = _NAMES.get(metric, metric)
    return f"{name}{suffix} (%)"


def ci95(std: float | None, n: int) -> float:
    """Half-width of the 95% confidence interval of a mean of n values (0 for n < 2)."""
    if std is None or n < 2:
        return 0.0
    return float(stats.t.ppf(0.975, n - 1) * std / np.sqrt(n))


_TICK = textwrap.TextWrapper(width=26, max_lines=3, placeholder=" …")


def tick_label(label: str) -> str:
    """A row label on at most three lines of 26 characters: long override lists (a tuned
    configuration) would otherwise squeeze the axes to nothing."""
    return _TICK.fill(label)


def bounded(value: float, half: float) -> list[list[float]]:
    """Error-bar extents (below, above) of ``value`` +/- ``half``, cut at 0 and 100: the t
    interval of a percentage near its bound may cross it, the percentage cannot."""
    return [[min(half, max(value, 0.0))], [min(half, max(100.0 - value, 0.0))]]


def _metric_panel(ax: Axes, table: TaskTable, metric: str) -> None:
    rows = table.rows
    x = np.arange(len(rows))
    means = [r.cells[metric].mean for r in rows]
    halves = [ci95(r.cells[metric].std, r.cells[metric].n) for r in rows]
    for i, (mean, half) in enumerate(zip(means, halves, strict=True)):
        if mean is not None:
            color = COLORS[i % len(COLORS)]
            ax.errorbar(i, mean, yerr=bounded(mean, half), fmt="o", color=color, capsize=4, ms=6)
    heights = [m if m is not None else 0.0 for m in means]
    stds = halves
    shown = [v for v, m in zip(heights, means, strict=True) if m is not None]
    for i, r in enumerate(rows):
        entry = r.cells[metric].reported
        if entry is not None and entry.value is not None:
            # Hollow: the paper's protocol differs from ours (no tolerance in reported.yaml).
            fill: Literal["full", "none"] = "full" if entry.tolerance is not None else "none"
            ax.errorbar(
                i,
                entry.value,
                yerr=bounded(entry.value, entry.ci95 or 0.0),
                fmt="D",
                color="black",
                capsize=3,
                fillstyle=fill,
            )
            ax.annotate(
                f"{entry.value:.1f}",
                (i, entry.value),
                xytext=(6, 0),
                textcoords="offset points",
                va="center",
                fontsize=7,
            )
            shown.append(entry.value)
        if means[i] is None:
            ax.text(
                i,
                0.02,
                "not\nmeasured",
                ha="center",
                va="bottom",
                fontsize=7,
                transform=ax.get_xaxis_transform(),
            )
    low = min((v - s for v, s in zip(heights, stds, strict=True) if v), default=0.0)
    low = max(0.0, min([low, *shown]) if shown else 0.0)
    high = max([*shown, *(v + s for v, s in zip(heights, stds, strict=True))], default=1.0)
    high = min(high, 100.0)
    pad = max(0.5, 0.15 * (high - low))
    # a percentage axis ends at 100 (plus room for a marker drawn there)
    ax.set_ylim(max(0.0, low - pad), min(high + pad, 100.0 + 0.03 * (high - low + pad)))
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set_xticks(x, [tick_label(r.label) for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_title(metric_label(metric).removesuffix(" (%)"), fontsize=10)
    ax.set_ylabel(metric_label(metric))
    ax.grid(axis="y", alpha=0.3)


def plot_metrics(table: TaskTable, folder: Path) -> list[Path]:
    metrics = [m for m in table.metrics if not table.is_interval(m)]
    if not metrics or not table.rows:
        return []
    fig = Figure(figsize=(max(5.0, 3.4 * len(metrics)), 5.0), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics, strict=True):
        _metric_panel(ax, table, metric)
    shown = [
        c.reported
        for r in table.rows
        for c in r.cells.values()
        if c.reported is not None and c.reported.value is not None
    ]
    n = sorted({r.n for r in table.rows})
    handles: list[Artist] = [
        Line2D([], [], marker="o", color="#555555", label="ours: mean, 95% CI over seeds")
    ]
    styles: tuple[tuple[Literal["full", "none"], str], ...] = (
        ("full", "reported (± 95% CI if given)"),
        ("none", "reported, protocol differs"),
    )
    for fill, label in styles:
        if any((e.tolerance is not None) == (fill == "full") for e in shown):
            handles.append(
                Line2D([], [], marker="D", color="black", ls="none", fillstyle=fill, label=label)
            )
    if not shown:
        handles.append(
            Patch(facecolor="white", edgecolor="white", label="reported: none for this task")
        )
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)
    seeds = "/".join(map(str, n))
    fig.suptitle(f"{table.task}: ours vs reported (n = {seeds} seeds per method)", fontsize=11)
    return save(fig, folder / f"{table.task}_metrics")


def _series(
    paths: Sequence[str], histories: Mapping[str, Sequence[Mapping[str, Any]]], key: str
) -> pd.DataFrame | None:
    """Epoch x record values of ``key``; None when no record has it."""
    frames = []
    for p in paths:
        h = [e for e in histories.get(p, []) if key in e and "epoch" in e]
        if h:
            frames.append(pd.Series({int(e["epoch"]): float(e[key]) for e in h}))
    if not frames:
        return None
    return pd.concat(frames, axis=1).sort_index()


def _curve_panel(
    ax: Axes,
    table: TaskTable,
    df: pd.DataFrame,
    histories: Mapping[str, Sequence[Mapping[str, Any]]],
    key: str,
    ylabel: str,
) -> None:
    """One line per table row (same colours as the metrics plot), band = min-max over seeds."""
    profiles, overrides = df["profile"].fillna(""), df["overrides"].fillna("")
    for i, row in enumerate(table.rows):
        sel = df[
            (df["method"] == row.method) & (profiles == row.profile) & (overrides == row.overrides)
        ]
        frame = _series(list(sel["path"]), histories, key)
        if frame is None:
            continue
        color = COLORS[i % len(COLORS)]
        ax.plot(
            frame.index,
            frame.mean(axis=1),
            color=color,
            label=f"{tick_label(row.label)} (n={frame.shape[1]})",  # long tuned configs wrap
        )
        if frame.shape[1] > 1:
            ax.fill_between(
                frame.index, frame.min(axis=1), frame.max(axis=1), color=color, alpha=0.2
            )
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def plot_curves(
    table: TaskTable,
    df: pd.DataFrame,
    histories: Mapping[str, Sequence[Mapping[str, Any]]],
    folder: Path,
) -> list[Path]:
    if df.empty or not any(histories.values()):
        return []
    fig = Figure(figsize=(8, 4.2), layout="constrained")
    loss_ax = fig.subplots(1, 1)
    _curve_panel(loss_ax, table, df, histories, "total", "training loss (total, log scale)")
    loss_ax.set_yscale("log")
    loss_ax.set_title("training loss per epoch", fontsize=10)
    handles, labels = loss_ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=8, title="method (seeds)")
    devices = sorted({str(d) for d in df["device"].dropna()})
    fig.suptitle(
        f"{table.task}: mean over seeds, band = min-max; measured on {'; '.join(devices) or '?'}",
        fontsize=11,
    )
    return save(fig, folder / f"{table.task}_curves")
