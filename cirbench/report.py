"""Tables computed from result records: mean +/- sample std over seeds, per method and metric.

``format_table`` is the quick per-task table of ``cirbench run`` / ``cirbench table``. The
reproduction report (``cirbench report``) puts ours beside the reported numbers of
``cirbench/reported.yaml``, marks significant differences to the row without ``cir``, and
writes ``REPORT.md``, ``tables/*.{md,tex,csv}``, the plots and the README status section.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from tabulate import tabulate

from cirbench.errors import CirbenchError
from cirbench.reported import Reported, ReportedEntry, lower_is_better, task_metrics
from cirbench.results import IDENTITY, load_record, records_frame, write_atomic

log = logging.getLogger(__name__)

Format = Literal["md", "latex", "csv"]
ID_COLUMNS = IDENTITY


def metric_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c not in ID_COLUMNS]


def row_label(method: str, profile: str | None, overrides: str) -> str:
    label = method if not profile else f"{method} [{profile}]"
    return f"{label} ({overrides})" if overrides else label


def summarize(df: pd.DataFrame, order: Sequence[str] = ()) -> pd.DataFrame:
    """One row per (method, profile, overrides): n seeds, and mean and std of every metric.

    ``order`` lists methods to show first (e.g. a task's default methods); others follow sorted.
    """
    metrics = metric_columns(df)
    keys = ["method", "profile", "overrides"]
    df = df.assign(profile=df["profile"].fillna(""), overrides=df["overrides"].fillna(""))
    grouped = df.groupby(keys, sort=False)
    summary = grouped[metrics].agg(["mean", "std"])
    summary.columns = [f"{col[0]}_{col[1]}" for col in summary.columns]
    summary["n"] = grouped.size()
    summary = summary.reset_index()
    rank = {m: i for i, m in enumerate(order)}
    summary["_rank"] = [rank.get(m, len(rank)) for m in summary["method"]]
    summary = summary.sort_values(["_rank", "method", "profile", "overrides"], kind="stable")
    return summary.drop(columns="_rank").reset_index(drop=True)


def cell(mean: float, std: float, n: int) -> str:
    """A percentage cell: ``97.41 ± 0.52`` (``—`` when the metric was not measured)."""
    if pd.isna(mean):
        return "—"
    if n < 2 or pd.isna(std):
        return f"{100 * mean:.2f}"
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def format_table(df: pd.DataFrame, fmt: Format = "md", order: Sequence[str] = ()) -> str:
    """Methods as rows, metrics (in %) as columns, ``n`` = number of seeds."""
    if df.empty:
        return "no result records"
    summary = summarize(df, order)
    metrics = metric_columns(df)
    # Labels carry the profile only when several profiles are mixed in one table.
    show_profile = summary["profile"].nunique() > 1
    labels = [
        row_label(str(m), str(p) if show_profile else None, str(o))
        for m, p, o in zip(summary["method"], summary["profile"], summary["overrides"], strict=True)
    ]
    if fmt == "csv":
        flat = summary.drop(columns=["profile", "overrides"]).assign(method=labels)
        return str(flat.to_csv(index=False))
    header = ["method", "n", *(f"{m} (%)" for m in metrics)]
    rows = [
        [label, int(r["n"]), *(cell(r[f"{m}_mean"], r[f"{m}_std"], int(r["n"])) for m in metrics)]
        for label, (_, r) in zip(labels, summary.iterrows(), strict=True)
    ]
    tablefmt = "github" if fmt == "md" else "latex_booktabs"
    return str(tabulate(rows, headers=header, tablefmt=tablefmt, disable_numparse=True))


# --- the reproduction report: ours vs reported, significance, status -------------------------
#
# Everything below is computed from result records and cirbench/reported.yaml; nothing is
# hand-edited. Values in tables are percent; differences are percentage points.

ALPHA = 0.05
SIGNIFICANT = "*"
NA_UNREADABLE = 1  # footnote: the paper reports it, we could not read it
NA_UNREPORTED = 2  # footnote: no paper in reported.yaml reports it
WELCH = "Welch's t-test over seeds"
PAIRED = "paired t-test over shared few-shot episodes (per-episode accuracy averaged over seeds)"
STATUSES = ("reproduced", "not yet", "outside tolerance", "n/a")
STATUS_BEGIN = "<!-- status:begin -->"
STATUS_END = "<!-- status:end -->"


@dataclass(frozen=True)
class Cell:
    """One (row, metric): ours in percent, the reported value, their difference, the test."""

    mean: float | None
    std: float | None
    n: int
    reported: ReportedEntry | None = None
    na_reason: int | None = None  # NA_UNREADABLE or NA_UNREPORTED when there is no value
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

    @property
    def tests(self) -> list[str]:
        return sorted({t for r in self.rows for t in r.tests})


@dataclass(frozen=True)
class Status:
    entry: ReportedEntry
    status: str
    mean: float | None
    n: int
    devices: tuple[str, ...]
    reason: str = ""
    #: Pretrained weights of the records used, ``name (sha256 prefix)``; empty: random init.
    weights: tuple[str, ...] = ()


def baseline_of(method: str) -> str | None:
    """``cir+X`` -> ``X`` (the same spec without the perturbation), else None."""
    keys = method.split("+")
    rest = [k for k in keys if k != "cir"]
    return "+".join(rest) if "cir" in keys and rest else None


def strip_cir_overrides(overrides: str) -> str:
    return " ".join(t for t in overrides.split() if not t.startswith("cir."))


def reference_profile(task: str) -> str | None:
    """Profile whose records are compared with the papers: ``paper`` if the task has one, else
    its default; None for a task that is not registered (then any profile counts)."""
    from cirbench.tasks import TASKS

    if task not in TASKS:
        return None
    cls = TASKS.get(task)
    return "paper" if "paper" in cls.profiles else cls.default_profile


def reference_weights(task: str) -> str:
    """The weights.yaml name the task's reference profile starts from ("" for none): records
    trained from other weights are not comparable with the papers."""
    from cirbench.tasks import TASKS

    profile = reference_profile(task)
    if profile is None:
        return ""
    return str(getattr(TASKS.get(task).profiles[profile], "pretrained", None) or "")


def is_ci_metric(metric: str) -> bool:
    return metric.endswith("_ci95")


def _percent(value: Any) -> float | None:
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
    from scipy import stats

    paths = {key: list(_select(df, key)["path"]) for key in (row, base)}
    ep_row = _episodes(details, paths[row], metric)
    ep_base = _episodes(details, paths[base], metric)
    if ep_row and ep_base and ep_row[0] == ep_base[0] and len(ep_row[1]) > 1:
        p = float(stats.ttest_rel(ep_row[1], ep_base[1]).pvalue)
        return PAIRED, None if np.isnan(p) else p
    a, b = _group_values(df, row, metric), _group_values(df, base, metric)
    if len(a) < 2 or len(b) < 2:
        return WELCH, None
    p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return WELCH, None if np.isnan(p) else p


def _choose(entries: Sequence[ReportedEntry]) -> ReportedEntry | None:
    """The entry a cell shows: the first with a readable value, else the first."""
    readable = [e for e in entries if e.value is not None]
    return next(iter(readable or entries), None)


def _mark_best(task: str, rows: list[Row], metrics: Sequence[str]) -> list[Row]:
    best: dict[str, float] = {}
    for m in metrics:
        if is_ci_metric(m):
            continue
        values = [round(c.mean, 2) for r in rows if (c := r.cells[m]).mean is not None]
        if values:
            best[m] = min(values) if lower_is_better(task, m) else max(values)

    def mark(row: Row) -> Row:
        cells = {
            m: replace(c, best=c.mean is not None and round(c.mean, 2) == best.get(m))
            for m, c in row.cells.items()
        }
        return replace(row, cells=cells)

    return [mark(r) for r in rows]


def task_metric_order(task: str, df: pd.DataFrame) -> tuple[str, ...]:
    """The task's declared metric order first, then any other metric in the records."""
    present = [m for m in metric_columns(df) if df[m].notna().any()]
    declared = [m for m in (task_metrics(task) or ()) if m in present]
    return (*declared, *sorted(m for m in present if m not in declared))


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
    labels = {k: row_label(k[0], k[1] if show_profile else None, k[2]) for k in keys}
    rows, shown = [], []
    for key, (_, s) in zip(keys, summary.iterrows(), strict=True):
        base_method = baseline_of(key[0])
        base = (base_method, key[1], strip_cir_overrides(key[2])) if base_method else None
        base = base if base in labels else None
        cells = {}
        for m in metrics:
            entries = reported.lookup(task, key[0], m)
            entry = _choose(entries)
            shown += [entry] if entry else []
            reason = (
                NA_UNREPORTED if entry is None else (NA_UNREADABLE if entry.value is None else None)
            )
            test, p = None, None
            if base is not None and not is_ci_metric(m):  # no test on interval widths
                test, p = significance(df, details, key, base, m)
            cells[m] = Cell(
                mean=_percent(s[f"{m}_mean"]),
                std=_percent(s[f"{m}_std"]),
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
    return TaskTable(task, metrics, best, tuple(dict.fromkeys(shown)), unmatched)


# --- rendering ---------------------------------------------------------------------------------

Style = Literal["md", "latex"]
NA_MARK = {"md": {1: "¹", 2: "²"}, "latex": {1: "$^{1}$", 2: "$^{2}$"}}


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "#": r"\#",
    "_": r"\_",
    "$": r"\$",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def _pm(style: Style) -> str:
    return " ± " if style == "md" else r" $\pm$ "


def _emph(text: str, style: Style) -> str:
    return f"**{text}**" if style == "md" else rf"\textbf{{{text}}}"


def ours_text(cell: Cell, row_n: int, style: Style) -> str:
    if cell.mean is None:
        return "—" if style == "md" else "--"
    text = f"{cell.mean:.2f}"
    if cell.std is not None and cell.n >= 2:
        text += f"{_pm(style)}{cell.std:.2f}"
    if cell.best:
        text = _emph(text, style)
    if cell.n != row_n:
        text += f" (n={cell.n})"
    if cell.significant:
        text += "\\*" if style == "md" else "$^{*}$"
    return text


def reported_text(cell: Cell, style: Style) -> str:
    entry = cell.reported
    if entry is None or entry.value is None:
        return "n/a" + NA_MARK[style][cell.na_reason or NA_UNREPORTED]
    text = f"{entry.value:.2f}"
    return text + (f"{_pm(style)}{entry.ci95:.2f}" if entry.ci95 is not None else "")


def diff_text(cell: Cell, style: Style) -> str:
    diff = cell.diff
    if diff is None:
        return "—" if style == "md" else "--"
    return f"{diff:+.2f}" if style == "md" else f"${diff:+.2f}$"


def _code(text: str, style: Style) -> str:
    return f"`{text}`" if style == "md" else rf"\texttt{{{latex_escape(text)}}}"


def _esc(text: str, style: Style) -> str:
    return text if style == "md" else latex_escape(text)


def footnotes(table: TaskTable, style: Style) -> list[str]:
    star = "\\*" if style == "md" else "$^{*}$"

    def code(text: str) -> str:
        return _code(text, style)

    def esc(text: str) -> str:
        return _esc(text, style)

    notes = [
        "Values in percent: ours = mean "
        + _pm(style).strip()
        + " sample std over n seeds (one record per seed); "
        + ("Δ" if style == "md" else r"$\Delta$")
        + " = ours - reported"
        + ", in percentage points. Bold: best mean of the column "
        "(lower is better for error; ci95 columns are not ranked)."
    ]
    if table.tests:
        pairs = sorted({(r.label, r.baseline) for r in table.rows if r.baseline})
        versus = ", ".join(f"{code(a)} vs {code(str(b))}" for a, b in pairs)
        notes.append(
            f"{star} differs from the same method without {code('cir')} ({versus}) with "
            + (f"p < {ALPHA} (two-sided, alpha = {ALPHA})" if style == "md" else "")
            + (rf"$p < {ALPHA}$ (two-sided, $\alpha = {ALPHA}$)" if style == "latex" else "")
            + f"; test: {esc('; '.join(table.tests))}. "
            "Unmarked: not significant, or fewer than 2 seeds on a side."
        )
    cells = [c for r in table.rows for m, c in r.cells.items() if not is_ci_metric(m)]
    if any(c.na_reason == NA_UNREADABLE for c in cells):
        notes.append(
            f"n/a{NA_MARK[style][1]} reported by the cited paper but not readable here; "
            "the value is left empty in cirbench/reported.yaml, never guessed."
        )
    if any(c.na_reason == NA_UNREPORTED for c in cells):
        notes.append(
            f"n/a{NA_MARK[style][2]} no paper in cirbench/reported.yaml reports this method and "
            "metric on this task."
        )
    for e in table.sources:
        notes.append(
            f"Reported {code(str(e.method))} {esc(e.metric)}: {esc(e.label)}"
            f"{esc(f' ({e.backbone})' if e.backbone else '')}, {esc(e.citation)}"
            f"{esc(f'; protocol: {e.protocol}' if e.protocol else '')}."
        )
    for e in table.unmatched:
        value = "n/a" if e.value is None else f"{e.value:.2f}"
        why = "not implemented in cirbench" if e.method is None else f"{code(e.method)} not run yet"
        notes.append(
            f"Also reported, {why}: {esc(e.label)}"
            f"{esc(f' ({e.backbone})' if e.backbone else '')} {esc(e.metric)} = {value}, "
            f"{esc(e.citation)}."
        )
    return notes


def _parts(metric: str) -> int:
    """Columns per metric: ours, reported, difference; a ci95 width shows ours only."""
    return 1 if is_ci_metric(metric) else 3


def _cells(cell: Cell, metric: str, row_n: int, style: Style) -> list[str]:
    ours = ours_text(cell, row_n, style)
    if is_ci_metric(metric):
        return [ours]
    return [ours, reported_text(cell, style), diff_text(cell, style)]


def markdown_table(table: TaskTable) -> str:
    header = ["method", "n"]
    for m in table.metrics:
        header += [f"{m} ours", f"{m} reported", f"{m} Δ"][: _parts(m)]
    rows = []
    for r in table.rows:
        line = [f"`{r.label}`", str(r.n)]
        for m in table.metrics:
            line += _cells(r.cells[m], m, r.n, "md")
        rows.append(line)
    body = str(tabulate(rows, headers=header, tablefmt="github", disable_numparse=True))
    notes = "\n".join(f"- {n}" for n in footnotes(table, "md"))
    return f"{body}\n\n{notes}\n"


_FIT_WIDTH = r"\ifdim\wd0>\linewidth\resizebox{\linewidth}{!}{\usebox0}\else\usebox0\fi"


def latex_table(table: TaskTable) -> str:
    """A ``table`` float with a booktabs ``tabular``; needs ``\\usepackage{booktabs}`` and
    ``\\usepackage{graphicx}``: a tabular wider than the line is scaled down to fit it."""
    parts = [_parts(m) for m in table.metrics]
    starts = [3 + sum(parts[:i]) for i in range(len(parts))]
    names = ["ours", "rep.", "$\\Delta$"]
    lines = [
        f"% Generated by `cirbench report` from result records; do not edit. Task: {table.task}",
        r"% Needs \usepackage{booktabs} and \usepackage{graphicx} (scales down when too wide)",
        r"\begin{table}[htbp]",
        r"\centering",
        r"\scriptsize",
        rf"\caption{{{latex_escape(table.task)}: ours vs reported (\%)}}",
        rf"\label{{tab:{table.task}}}",
        r"\sbox0{%",
        r"\begin{tabular}{lr" + "r" * sum(parts) + "}",
        r"\toprule",
        " & & "
        + " & ".join(
            rf"\multicolumn{{{k}}}{{c}}{{{latex_escape(m)}}}"
            for m, k in zip(table.metrics, parts, strict=True)
        )
        + r" \\",
        " ".join(rf"\cmidrule(lr){{{a}-{a + k - 1}}}" for a, k in zip(starts, parts, strict=True)),
        "method & $n$ & " + " & ".join(" & ".join(names[:k]) for k in parts) + r" \\",
        r"\midrule",
    ]
    for r in table.rows:
        cells = [rf"\texttt{{{latex_escape(r.label)}}}", str(r.n)]
        for m in table.metrics:
            cells += _cells(r.cells[m], m, r.n, "latex")
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}", _FIT_WIDTH, ""]
    lines.append(r"\par\smallskip\raggedright")
    lines += [rf"{note}\par" for note in footnotes(table, "latex")]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def csv_table(table: TaskTable) -> str:
    """Tidy CSV: one line per (row, metric); empty fields where a value is unknown."""
    out = []
    for r in table.rows:
        for m in table.metrics:
            c = r.cells[m]
            e = c.reported
            out.append(
                {
                    "task": table.task,
                    "method": r.method,
                    "profile": r.profile,
                    "overrides": r.overrides,
                    "metric": m,
                    "n": c.n,
                    "mean": c.mean,
                    "std": c.std,
                    "best": c.best,
                    "reported": e.value if e else None,
                    "reported_ci95": e.ci95 if e else None,
                    "diff": c.diff,
                    "source": e.citation if e else None,
                    "baseline": r.baseline,
                    "test": c.test,
                    "p_value": c.p_value,
                    "significant": c.significant,
                }
            )
    return str(pd.DataFrame(out).to_csv(index=False, float_format="%.6g"))


# --- reproduction status (README section) -------------------------------------------------------


def reference_runs(df: pd.DataFrame, task: str, method: str) -> pd.DataFrame:
    """Records of the task's reference profile with no ``--set`` but ``train.pretrained`` (a
    local copy of the weights is identified by its digest, see :func:`comparable`)."""
    if df.empty:
        return df
    sel = df[(df["task"] == task) & (df["method"] == method)]
    rest = (
        sel["overrides"]
        .fillna("")
        .map(lambda o: [t for t in o.split() if not t.startswith("train.pretrained=")])
    )
    sel = sel[rest.map(len) == 0]
    profile = reference_profile(task)
    return sel if profile is None else sel[sel["profile"] == profile]


def comparable(df: pd.DataFrame, task: str, method: str) -> pd.DataFrame:
    """Records that count against a paper: the task's reference profile, no ``--set``, and
    the reference profile's pretrained weights (records without a weights column: none)."""
    sel = reference_runs(df, task, method)
    if sel.empty:
        return sel
    names = sel["weights"].fillna("") if "weights" in sel else pd.Series("", index=sel.index)
    return sel[names == reference_weights(task)]


def entry_status(entry: ReportedEntry, df: pd.DataFrame) -> Status:
    records = comparable(df, entry.task, entry.method) if entry.method else df.iloc[0:0]
    values = records[entry.metric].dropna() if entry.metric in records else pd.Series([])
    mean = 100.0 * float(values.mean()) if len(values) else None
    used = records.loc[values.index] if len(values) else records.iloc[0:0]
    devices = tuple(sorted({str(d) for d in used["device"].dropna()})) if len(used) else ()
    pairs = zip(used.get("weights", []), used.get("weights_sha256", []), strict=True)
    weights = tuple(sorted({f"{n} ({h[:8]})" for n, h in pairs if n}))
    status = Status(entry, "n/a", mean, len(values), devices, weights=weights)
    if entry.method is None:
        return replace(status, reason="method not implemented in cirbench")
    if entry.value is None:
        return replace(status, reason="value not readable here")
    if entry.tolerance is None:
        return replace(status, reason="protocol differs; no tolerance")
    if mean is None and entry.method and len(reference_runs(df, entry.task, entry.method)):
        ref = reference_weights(entry.task) or "none"
        why = f"not comparable: trained without the reference weights {ref}"
        return replace(status, reason=why)
    if mean is None:
        return replace(status, status="not yet")
    inside = abs(mean - entry.value) <= entry.tolerance + 1e-9
    return replace(status, status="reproduced" if inside else "outside tolerance")


def statuses(reported: Reported, df: pd.DataFrame) -> list[Status]:
    return [entry_status(e, df) for e in reported.entries]


def status_table(items: Sequence[Status]) -> str:
    header = [
        "paper",
        "task",
        "method (paper's name)",
        "backbone",
        "metric",
        "reported (%)",
        "tolerance (pts)",
        "ours (%)",
        "status",
        "measured on",
    ]
    rows = []
    for s in items:
        e = s.entry
        rows.append(
            [
                f"{e.paper.short}, {e.where}",
                e.task,
                f"`{e.method}` ({e.label})" if e.method else f"— ({e.label})",
                " + ".join([e.backbone or "—", *s.weights]),
                e.metric,
                "n/a" if e.value is None else f"{e.value:.2f}",
                "—" if e.tolerance is None else f"±{e.tolerance:g}",
                "—" if s.mean is None else f"{s.mean:.2f} (n={s.n})",
                f"{s.status} ({s.reason})" if s.reason else s.status,
                "; ".join(s.devices) or "—",
            ]
        )
    return str(tabulate(rows, headers=header, tablefmt="github", disable_numparse=True))


def status_section(items: Sequence[Status]) -> str:
    counts = {k: sum(s.status == k for s in items) for k in STATUSES}
    summary = ", ".join(f"{v} {k}" for k, v in counts.items())
    return (
        f"{STATUS_BEGIN}\n"
        "Generated by `cirbench report` from `cirbench/reported.yaml` and the records under "
        "`results/runs/`; do not edit by hand. Ours = mean over seeds of the records with the "
        "task's reference profile (`paper` if the task has one, else its default) and no "
        "`--set`; *reproduced* = within the tolerance of the reported value.\n\n"
        f"{summary}.\n\n"
        f"{status_table(items)}\n"
        f"{STATUS_END}"
    )


def replace_status(readme: str, section: str) -> str:
    """``readme`` with the text between the status markers replaced by ``section``."""
    begin, end = readme.find(STATUS_BEGIN), readme.find(STATUS_END)
    if begin < 0 or end < begin:
        raise CirbenchError(
            f"README has no {STATUS_BEGIN} ... {STATUS_END} section; add both markers under "
            "'## Reproduction status' at its end"
        )
    return readme[:begin] + section + readme[end + len(STATUS_END) :]


# --- records, and the whole report on disk ------------------------------------------------------


@dataclass(frozen=True)
class RecordSet:
    """Records under ``root/runs`` (``df`` as :func:`load_records`), the full JSON per path
    (for ``details`` and ``history``), and the files skipped with the reason."""

    df: pd.DataFrame
    records: Mapping[str, Mapping[str, Any]]
    skipped: tuple[tuple[str, str], ...]

    def task(self, task: str) -> pd.DataFrame:
        return self.df[self.df["task"] == task] if not self.df.empty else self.df

    @property
    def tasks(self) -> list[str]:
        return sorted(set(self.df["task"])) if not self.df.empty else []


def collect_records(root: Path | str) -> RecordSet:
    """Every record under ``root/runs/<task>/``, each file read once and checked by
    :func:`cirbench.results.record_problem`; anything else there is skipped, named, never
    counted."""
    runs = Path(root) / "runs"
    records: dict[str, Mapping[str, Any]] = {}
    good: list[tuple[Path, dict[str, Any]]] = []
    skipped: list[tuple[str, str]] = []
    for path in sorted(runs.rglob("*.json")) if runs.is_dir() else []:
        if path.parent.parent != runs:
            skipped.append((str(path), "not in a runs/<task>/ folder"))
            continue
        record, problem = load_record(path)
        if record is None:
            skipped.append((str(path), problem))
            continue
        records[str(path)] = record
        good.append((path, record))
    df = records_frame(good)
    if not df.empty:
        empty = [m for m in metric_columns(df) if df[m].isna().all()]
        df = df.drop(columns=empty)
        df = df.astype({m: float for m in metric_columns(df)})
    return RecordSet(df, records, tuple(skipped))


def task_order(task: str) -> tuple[str, ...]:
    from cirbench.tasks import TASKS

    return TASKS.get(task).default_methods if task in TASKS else ()


def task_table(task: str, records: RecordSet, reported: Reported) -> TaskTable:
    df = records.task(task)
    details = {
        p: r.get("details") or {} for p, r in records.records.items() if r.get("task") == task
    }
    return build_task_table(task, df, reported, details, task_order(task))


def report_markdown(tables: Sequence[TaskTable], items: Sequence[Status]) -> str:
    parts = [
        "# cirbench reproduction report",
        "",
        "Generated by `cirbench report` from the result records under `results/runs/` and the "
        "reported numbers in `cirbench/reported.yaml`; do not edit by hand. LaTeX and CSV "
        "versions of every table are in `results/tables/`, plots in `results/plots/`.",
        "",
    ]
    for t in tables:
        parts += [
            f"## {t.task}",
            "",
            markdown_table(t),
            f"![{t.task}: ours vs reported](plots/{t.task}_metrics.png)",
            "",
            f"![{t.task}: training curves](plots/{t.task}_curves.png)",
            "",
        ]
    parts += ["## Reproduction status", "", status_section(items), ""]
    return "\n".join(parts)


@dataclass(frozen=True)
class ReportFiles:
    tables: tuple[TaskTable, ...]
    written: tuple[Path, ...]
    readme_updated: bool


def write_text(path: Path, text: str) -> Path:
    write_atomic(path, text)  # a full disk leaves the previous file, never a truncated one
    return path


def write_report(
    out: Path,
    records: RecordSet,
    reported: Reported,
    tasks: Sequence[str],
    readme: Path | None = None,
    plots: bool = True,
) -> ReportFiles:
    """Write REPORT.md, tables/<task>.{md,tex,csv}, plots/<task>_*.{png,pdf}; update README.

    Every text is built in memory first (a README without status markers fails before anything
    is written), then each file is replaced atomically."""
    tables = tuple(task_table(t, records, reported) for t in tasks)
    items = statuses(reported, records.df)
    old_readme = new_readme = None
    if readme is not None and readme.is_file():
        old_readme = readme.read_text(encoding="utf-8")
        new_readme = replace_status(old_readme, status_section(items))
    texts = {out / "REPORT.md": report_markdown(tables, items)}
    for t in tables:
        texts[out / "tables" / f"{t.task}.md"] = markdown_table(t)
        texts[out / "tables" / f"{t.task}.tex"] = latex_table(t)
        texts[out / "tables" / f"{t.task}.csv"] = csv_table(t)
    written = [write_text(path, text) for path, text in texts.items()]
    for t in tables:
        if plots:
            from cirbench.plots import plot_curves, plot_metrics

            histories = {
                p: r.get("history") or []
                for p, r in records.records.items()
                if r.get("task") == t.task
            }
            written += plot_metrics(t, out / "plots")
            written += plot_curves(t, records.task(t.task), histories, out / "plots")
    if readme is not None and new_readme is not None and new_readme != old_readme:
        write_atomic(readme, new_readme)
    return ReportFiles(tables, tuple(written), new_readme is not None)
