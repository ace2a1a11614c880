"""Per-task tables computed from records: mean and sample std over seeds per (method, profile,
overrides), ours beside the reported numbers of ``cirbench/reported.yaml``, and the test of each
perturbed method against the same method without its perturbations (Welch over seeds, or paired
over shared few-shot episodes). Nothing here formats text: see :mod:`cirbench.reporting.render`.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from cirbench.config import Overrides
from cirbench.errors import CirbenchError
from cirbench.methods import MethodSpec
from cirbench.reported import Reported, ReportedEntry
from cirbench.reporting.records import RecordSet, metric_columns
from cirbench.tasks import default_methods, metric_info, task_metrics

#: Marks a row whose records come from several code versions: ``ce †2``.
VERSIONS_MARK = "†"


def row_label(method: str, profile: str | None, overrides: str, commits: int = 1) -> str:
    label = method if not profile else f"{method} [{profile}]"
    label = f"{label} ({overrides})" if overrides else label
    return f"{label} {VERSIONS_MARK}{commits}" if commits > 1 else label


def summarize(df: pd.DataFrame, order: Sequence[str] = ()) -> pd.DataFrame:
    """One row per (method, profile, overrides): n seeds, mean and std of every metric, and
    ``commits``, the number of code versions (git commits) the records came from: more than one
    is flagged by the tables, never averaged silently.

    ``order`` lists methods to show first (e.g. a task's default methods); others follow sorted.
    """
    metrics = metric_columns(df)
    keys = ["method", "profile", "overrides"]
    df = df.assign(profile=df["profile"].fillna(""), overrides=df["overrides"].fillna(""))
    grouped = df.groupby(keys, sort=False)
    summary = grouped[metrics].agg(["mean", "std"])
    summary.columns = [f"{col[0]}_{col[1]}" for col in summary.columns]
    summary["n"] = grouped.size()
    if "commit" in df:
        versions = df["commit"].fillna("").replace("", pd.NA)
        summary["commits"] = versions.groupby([df[k] for k in keys], sort=False).nunique()
    else:
        summary["commits"] = 0
    summary = summary.reset_index()
    rank = {m: i for i, m in enumerate(order)}
    summary["_rank"] = [rank.get(m, len(rank)) for m in summary["method"]]
    summary = summary.sort_values(["_rank", "method", "profile", "overrides"], kind="stable")
    return summary.drop(columns="_rank").reset_index(drop=True)


ALPHA = 0.05
SIGNIFICANT = "*"
NA_UNREADABLE = 1  # footnote: the paper reports it, we could not read it
NA_UNREPORTED = 2  # footnote: no paper in reported.yaml reports it
NA_OTHER_BACKBONE = 3  # footnote: reported only for another backbone than the one we trained
WELCH = "Welch's t-test over seeds"
PAIRED = "paired t-test over shared few-shot episodes (per-episode accuracy averaged over seeds)"


@dataclass(frozen=True)
class Cell:
    """One (row, metric): ours in percent, the reported value, their difference, the test."""

    mean: float | None
    std: float | None
    n: int
    reported: ReportedEntry | None = None
    na_reason: int | None = None  # an NA_* footnote when there is no value to compare with
    p_value: float | None = None
    test: str | None = None  # WELCH or PAIRED when the row has a baseline
    best: bool = False

    @property
    def diff(self) -> float | None:
        value = self.reported.value if self.reported else None
        return None if self.mean is None or value is None else self.mean - value

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < ALPHA


@dataclass(frozen=True)
class Row:
    label: str
    method: str
    profile: str
    overrides: str
    n: int
    cells: Mapping[str, Cell]
    baseline: str | None = None  # label of the row this one is tested against

    @property
    def tests(self) -> list[str]:
        """The tests used for this row's cells (paired where episodes are shared, else Welch)."""
        return sorted({c.test for c in self.cells.values() if c.test})


@dataclass(frozen=True)
class TaskTable:
    task: str
    metrics: tuple[str, ...]
    rows: tuple[Row, ...]
    sources: tuple[ReportedEntry, ...]  # entries shown in the table, for the citations
    unmatched: tuple[ReportedEntry, ...]  # entries of the task no row of ours corresponds to
    #: entries not compared because they report another backbone than the row's runs trained
    other_backbone: tuple[ReportedEntry, ...] = ()

    def is_interval(self, metric: str) -> bool:
        """A 95% half-width column: ours only, never ranked or tested."""
        return metric_info(self.task, metric).interval

    @property
    def tests(self) -> list[str]:
        return sorted({t for r in self.rows for t in r.tests})


def known_spec(method: str) -> MethodSpec | None:
    """The parsed spec of a record's method; None for one this install does not know (or a
    spec without a loss)."""
    try:
        return MethodSpec.parse(method)
    except CirbenchError:
        return None


def perturbations_of(method: str) -> tuple[str, ...]:
    """The perturbations of a known method spec; none for anything else."""
    spec = known_spec(method)
    return spec.perturbations if spec is not None else ()


def baseline_of(method: str) -> str | None:
    """``cir+X`` -> ``X``: the same losses without the perturbations, else None."""
    spec = known_spec(method)
    return spec.without_perturbations().name if spec and spec.perturbations else None


def baseline_key(key: tuple[str, str, str]) -> tuple[str, str, str] | None:
    """The row a perturbed method's row is tested against: its baseline method with the same
    profile and the same ``--set`` items but those of the perturbations."""
    spec = known_spec(key[0])
    if spec is None or not spec.perturbations:
        return None
    overrides = Overrides.parse(key[2].split()).without(spec.perturbations)
    return (spec.without_perturbations().name, key[1], str(overrides))


def percent(value: Any) -> float | None:
    """A fraction as percent; None for a missing value."""
    return None if value is None or pd.isna(value) else 100.0 * float(value)


def _select(df: pd.DataFrame, key: tuple[str, str, str]) -> pd.DataFrame:
    method, profile, overrides = key
    return df[
        (df["method"] == method) & (df["profile"] == profile) & (df["overrides"] == overrides)
    ]


def _group_values(df: pd.DataFrame, key: tuple[str, str, str], metric: str) -> list[float]:
    sel = _select(df, key)
    return [float(v) for v in sel[metric].dropna()] if metric in sel else []


def _episodes(
    details: Mapping[str, Mapping[str, Any]], paths: Sequence[str], metric: str
) -> tuple[tuple[Any, Any], np.ndarray] | None:
    """Per-episode accuracies averaged over a row's records, when all share one episode set."""
    keys, arrays = set(), []
    for path in paths:
        d = details.get(path, {})
        per = d.get("episodes", {}).get(metric) if isinstance(d.get("episodes"), dict) else None
        if per is None or "episode_seed" not in d or "n_episodes" not in d:
            return None
        keys.add((d["episode_seed"], d["n_episodes"]))
        arrays.append(np.asarray(per, dtype=float))
    if len(keys) != 1 or len({a.shape for a in arrays}) != 1:
        return None
    return keys.pop(), np.mean(arrays, axis=0)


def significance(
    df: pd.DataFrame,
    details: Mapping[str, Mapping[str, Any]],
    row: tuple[str, str, str],
    base: tuple[str, str, str],
    metric: str,
) -> tuple[str, float | None]:
    """(test name, p) for ``row`` vs ``base``: paired over shared episodes, else Welch."""

    paths = {key: list(_select(df, key)["path"]) for key in (row, base)}
    ep_row = _episodes(details, paths[row], metric)
    ep_base = _episodes(details, paths[base], metric)
    if ep_row and ep_base and ep_row[0] == ep_base[0] and len(ep_row[1]) > 1:
        p = float(stats.ttest_rel(ep_row[1], ep_base[1]).pvalue)
        return PAIRED, None if np.isnan(p) else p
    return WELCH, welch_p(_group_values(df, row, metric), _group_values(df, base, metric))


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided p of Welch's t-test; None with fewer than two values a side or when neither
    side varies (t is undefined).

    One constant side is fine (its variance is exactly 0), but scipy computes that variance in
    floating point and warns of "catastrophic cancellation" for it; that warning is silenced
    only in this case, where it cannot matter.
    """
    if len(a) < 2 or len(b) < 2:
        return None
    flat_a, flat_b = max(a) == min(a), max(b) == min(b)
    if flat_a and flat_b:
        return None
    with warnings.catch_warnings():
        if flat_a or flat_b:
            warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
        p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return None if np.isnan(p) else p


def row_backbones(df: pd.DataFrame, key: tuple[str, str, str]) -> set[str]:
    """The backbones a row's records trained (empty when the records predate the field)."""
    sel = _select(df, key)
    return {str(b) for b in sel["backbone"].dropna() if b} if "backbone" in sel else set()


def same_backbone(entry: ReportedEntry, backbones: set[str]) -> bool:
    """A reported row is compared only with runs of its backbone (unknown on either side:
    compared, as before the field existed)."""
    return not entry.backbone or not backbones or entry.backbone in backbones


def _choose(entries: Sequence[ReportedEntry]) -> ReportedEntry | None:
    """The entry a cell shows: the first with a readable value, else the first."""
    readable = [e for e in entries if e.value is not None]
    return next(iter(readable or entries), None)


def _mark_best(task: str, rows: list[Row], metrics: Sequence[str]) -> list[Row]:
    best: dict[str, float] = {}
    for m in metrics:
        info = metric_info(task, m)
        if info.interval:
            continue
        values = [round(c.mean, 2) for r in rows if (c := r.cells[m]).mean is not None]
        if values:
            best[m] = min(values) if info.lower_is_better else max(values)

    def mark(row: Row) -> Row:
        cells = {
            m: replace(c, best=c.mean is not None and round(c.mean, 2) == best.get(m))
            for m, c in row.cells.items()
        }
        return replace(row, cells=cells)

    return [mark(r) for r in rows]


def natural_key(name: str) -> list[str | int]:
    """``recall@5`` before ``recall@10``: digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def task_metric_order(task: str | None, df: pd.DataFrame) -> tuple[str, ...]:
    """The task's declared metric order first, then any other metric in the records in natural
    order (``task=None`` for records of several tasks)."""
    present = [m for m in metric_columns(df) if df[m].notna().any()]
    declared = [m for m in (task_metrics(task) or ()) if m in present] if task else []
    return (*declared, *sorted((m for m in present if m not in declared), key=natural_key))


def build_task_table(
    task: str,
    df: pd.DataFrame,
    reported: Reported,
    details: Mapping[str, Mapping[str, Any]] | None = None,
    order: Sequence[str] = (),
) -> TaskTable:
    """One table: a row per (method, profile, overrides) of ``df`` (one task's records)."""
    details = details or {}
    df = df.assign(profile=df["profile"].fillna(""), overrides=df["overrides"].fillna(""))
    metrics = task_metric_order(task, df)
    summary = summarize(df, order)
    keys = [
        (str(m), str(p), str(o)) for m, p, o in summary[["method", "profile", "overrides"]].values
    ]
    show_profile = summary["profile"].nunique() > 1
    commits = dict(zip(keys, summary["commits"].astype(int), strict=True))
    labels = {k: row_label(k[0], k[1] if show_profile else None, k[2], commits[k]) for k in keys}
    rows, shown = [], []
    other: list[ReportedEntry] = []  # reported for another backbone only: named in the notes
    for key, (_, s) in zip(keys, summary.iterrows(), strict=True):
        backbones = row_backbones(df, key)
        base = baseline_key(key)
        base = base if base in labels else None
        cells = {}
        for m in metrics:
            entries = reported.lookup(task, key[0], m)
            matching = [e for e in entries if same_backbone(e, backbones)]
            entry = _choose(matching)
            shown += [entry] if entry else []
            if entry is None:
                reason: int | None = NA_OTHER_BACKBONE if entries else NA_UNREPORTED
                other += entries
            else:
                reason = NA_UNREADABLE if entry.value is None else None
            test, p = None, None
            if base is not None and not metric_info(task, m).interval:  # no test on widths
                test, p = significance(df, details, key, base, m)
            cells[m] = Cell(
                mean=percent(s[f"{m}_mean"]),
                std=percent(s[f"{m}_std"]),
                n=len(_group_values(df, key, m)),
                reported=entry,
                na_reason=reason,
                p_value=p,
                test=test,
            )
        rows.append(
            Row(
                labels[key],
                key[0],
                key[1],
                key[2],
                int(s["n"]),
                cells,
                labels[base] if base else None,
            )
        )
    ours = {k[0] for k in keys}
    unmatched = tuple(e for e in reported.for_task(task) if e.method not in ours)
    best = tuple(_mark_best(task, rows, metrics))
    sources = tuple(dict.fromkeys(shown))
    return TaskTable(task, metrics, best, sources, unmatched, tuple(dict.fromkeys(other)))


def task_table(task: str, records: RecordSet, reported: Reported) -> TaskTable:
    df = records.task(task)
    details = {
        p: r.get("details") or {} for p, r in records.records.items() if r.get("task") == task
    }
    return build_task_table(task, df, reported, details, default_methods(task))
