"""Text of the tables: Markdown, LaTeX and CSV. Each text format is one :class:`Style`; every
LaTeX table (the report's and ``cirbench table --format latex``) comes from :func:`latex_tabular`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import pandas as pd
from tabulate import tabulate

from cirbench.reporting.tables import (
    ALPHA,
    NA_OTHER_BACKBONE,
    NA_UNREADABLE,
    NA_UNREPORTED,
    VERSIONS_MARK,
    Cell,
    TaskTable,
    percent,
    perturbations_of,
    row_label,
    summarize,
    task_metric_order,
)
from cirbench.tasks import metric_info

Format = Literal["md", "latex", "csv"]


@dataclass(frozen=True)
class Style:
    """How one text format writes the pieces of a table cell or note."""

    name: Literal["md", "latex"]
    pm: str  # between a mean and its spread
    dash: str  # an empty cell
    star: str  # the significance mark
    delta: str
    na_marks: Mapping[int, str]  # footnote marks of n/a cells (NA_UNREADABLE, NA_UNREPORTED)
    bold: Callable[[str], str]
    code: Callable[[str], str]  # a method spec or component key
    text: Callable[[str], str]  # plain text, escaped as the format needs
    signed: Callable[[float], str]  # a difference in points, with its sign
    post: Callable[[str], str] = lambda t: t  # text after a number (marks, "(n=2)")
    word: Callable[[str], str] = lambda t: t  # a cell that is text, not a number ("n/a")


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
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    VERSIONS_MARK: r"\textsuperscript{\dag}",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def _braced(text: str) -> str:
    return f"{{{text}}}" if text else ""


MARKDOWN = Style(
    name="md",
    pm=" ± ",
    dash="—",
    star="\\*",
    delta="Δ",
    na_marks={NA_UNREADABLE: "¹", NA_UNREPORTED: "²", NA_OTHER_BACKBONE: "³"},
    bold=lambda t: f"**{t}**",
    code=lambda t: f"`{t}`",
    text=lambda t: t,
    signed=lambda d: f"{d:+.2f}",
)
LATEX = Style(
    name="latex",
    pm=r" $\pm$ ",
    dash="--",
    star="$^{*}$",
    delta=r"$\Delta$",
    na_marks={NA_UNREADABLE: "$^{1}$", NA_UNREPORTED: "$^{2}$", NA_OTHER_BACKBONE: "$^{3}$"},
    bold=lambda t: rf"\textbf{{{t}}}",
    code=lambda t: rf"\texttt{{{latex_escape(t)}}}",
    text=latex_escape,
    signed=lambda d: f"${d:+.2f}$",
)
#: LaTeX cells of siunitx ``S`` columns (decimal-aligned): numbers as siunitx parses them
#: (``98.50 \pm 0.50``, ``+0.35``, ``\bfseries``), everything else braced as text.
SI = replace(
    LATEX,
    pm=r" \pm ",
    dash="{--}",
    bold=lambda t: rf"\bfseries {t}",
    signed=lambda d: f"{d:+.2f}",
    post=_braced,
    word=_braced,
)


def mean_std_text(mean: float | None, std: float | None, n: int, style: Style) -> str:
    """``97.41 ± 0.52`` in percent (the std only with 2 or more seeds); a dash when unmeasured."""
    if mean is None:
        return style.dash
    if n < 2 or std is None:
        return f"{mean:.2f}"
    return f"{mean:.2f}{style.pm}{std:.2f}"


# --- the quick table of `cirbench run` / `cirbench table` ---------------------------------------


def format_table(df: pd.DataFrame, fmt: Format = "md", order: Sequence[str] = ()) -> str:
    """Methods as rows, metrics (in %) as columns, ``n`` = number of seeds."""
    if df.empty:
        return "no result records"
    summary = summarize(df, order)
    tasks = df["task"].unique()
    task = str(tasks[0]) if len(tasks) == 1 else None  # several tasks: no declared metadata
    metrics = task_metric_order(task, df)
    # Labels carry the profile only when several profiles are mixed in one table.
    show_profile = summary["profile"].nunique() > 1
    labels = [
        row_label(str(m), str(p) if show_profile else None, str(o), int(c))
        for m, p, o, c in summary[["method", "profile", "overrides", "commits"]].values
    ]
    if fmt == "csv":
        flat = summary.drop(columns=["profile", "overrides", "commits"]).assign(method=labels)
        return str(flat.to_csv(index=False))
    style = MARKDOWN if fmt == "md" else SI
    spread = {m: not (task and metric_info(task, m).interval) for m in metrics}  # a width: mean
    counts = [int(n) for n in summary["n"]]
    # (mean, std or None) in percent per row and metric; the std only with 2 or more seeds
    values = [
        [
            (percent(r[f"{m}_mean"]), percent(r[f"{m}_std"]) if spread[m] and n > 1 else None)
            for m in metrics
        ]
        for n, (_, r) in zip(counts, summary.iterrows(), strict=True)
    ]
    rows = [
        [
            LATEX.code(label) if style is SI else label,
            str(n),
            *(mean_std_text(mean, std, n, style) for mean, std in row),
        ]
        for label, n, row in zip(labels, counts, values, strict=True)
    ]
    note = ""
    if any(VERSIONS_MARK in label for label in labels):
        note = style.text(f"\n\n{VERSIONS_MARK}k: the row averages records of k code versions.")
    if style is SI:
        heads = ["method", "$n$", *(rf"{{{latex_escape(m)} (\%)}}" for m in metrics)]
        columns = ["r", *(si_column([row[i] for row in values]) for i in range(len(metrics)))]
        body = latex_tabular([" & ".join(heads) + r" \\"], rows, columns)
        return "{" + SISETUP + "\n" + body + "}" + note
    heads = ["method", "n", *(f"{m} (%)" for m in metrics)]
    return str(tabulate(rows, headers=heads, tablefmt="github", disable_numparse=True)) + note


# --- the report's tables: ours beside reported, with notes ---------------------------------------


def ours_text(cell: Cell, row_n: int, style: Style, interval: bool = False) -> str:
    """Ours: mean ± std over seeds; for an interval column (a 95% half-width) the mean width
    only: the spread of a width over seeds is noise nobody reads."""
    text = mean_std_text(cell.mean, None if interval else cell.std, cell.n, style)
    if cell.mean is None:
        return text
    if cell.best:
        text = style.bold(text)
    post = f" (n={cell.n})" if cell.n != row_n else ""
    return text + style.post(post + (style.star if cell.significant else ""))


def reported_text(cell: Cell, style: Style) -> str:
    entry = cell.reported
    if entry is None or entry.value is None:
        return style.word("n/a" + style.na_marks[cell.na_reason or NA_UNREPORTED])
    text = f"{entry.value:.2f}"
    return text + (f"{style.pm}{entry.ci95:.2f}" if entry.ci95 is not None else "")


def diff_text(cell: Cell, style: Style) -> str:
    return style.dash if cell.diff is None else style.signed(cell.diff)


def footnotes(table: TaskTable, style: Style) -> list[str]:
    code, esc = style.code, style.text
    notes = [
        "Values in percent: ours = mean "
        + style.pm.strip()
        + " sample std over n seeds (one record per seed); "
        + style.delta
        + " = ours - reported"
        + ", in percentage points. Bold: best mean of the column "
        "(lower is better for error; ci95 columns are not ranked)."
    ]
    if any(VERSIONS_MARK in r.label for r in table.rows):
        notes.append(
            esc(f"{VERSIONS_MARK}k: the row averages records written by k different git commits ")
            + "of cirbench (see each record's provenance); re-run them on one version to compare."
        )
    if table.tests:
        pairs = sorted({(r.label, r.baseline) for r in table.rows if r.baseline})
        versus = ", ".join(f"{code(a)} vs {code(str(b))}" for a, b in pairs)
        perts = sorted({p for r in table.rows if r.baseline for p in perturbations_of(r.method)})
        alpha = (
            f"p < {ALPHA} (two-sided, alpha = {ALPHA})"
            if style is MARKDOWN
            else rf"$p < {ALPHA}$ (two-sided, $\alpha = {ALPHA}$)"
        )
        notes.append(
            f"{style.star} differs from the same method without "
            f"{' / '.join(code(p) for p in perts)} ({versus}) with {alpha}"
            f"; test: {esc('; '.join(table.tests))}. "
            "Unmarked: not significant, or fewer than 2 seeds on a side."
        )
    cells = [c for r in table.rows for m, c in r.cells.items() if not table.is_interval(m)]
    if any(c.na_reason == NA_UNREADABLE for c in cells):
        notes.append(
            f"n/a{style.na_marks[NA_UNREADABLE]} reported by the cited paper but not readable "
            "here; the value is left empty in cirbench/reported.yaml, never guessed."
        )
    if any(c.na_reason == NA_UNREPORTED for c in cells):
        notes.append(
            f"n/a{style.na_marks[NA_UNREPORTED]} no paper in cirbench/reported.yaml reports this "
            "method and metric on this task."
        )
    if any(c.na_reason == NA_OTHER_BACKBONE for c in cells):
        notes.append(
            f"n/a{style.na_marks[NA_OTHER_BACKBONE]} reported only for another backbone than the "
            "one these runs trained, so not compared: "
            + "; ".join(
                f"{code(str(e.method))} {esc(e.metric)} {esc(e.label)} ({esc(e.backbone or '')}), "
                f"{esc(e.citation)}"
                for e in table.other_backbone
            )
            + "."
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


def _parts(table: TaskTable, metric: str) -> int:
    """Columns per metric: ours, reported, difference; a ci95 width shows ours only."""
    return 1 if table.is_interval(metric) else 3


def _cells(table: TaskTable, cell: Cell, metric: str, row_n: int, style: Style) -> list[str]:
    ours = ours_text(cell, row_n, style, interval=table.is_interval(metric))
    if table.is_interval(metric):
        return [ours]
    return [ours, reported_text(cell, style), diff_text(cell, style)]


def markdown_table(table: TaskTable) -> str:
    header = ["method", "n"]
    for m in table.metrics:
        header += [f"{m} ours", f"{m} reported", f"{m} Δ"][: _parts(table, m)]
    rows = []
    for r in table.rows:
        line = [MARKDOWN.code(r.label), str(r.n)]
        for m in table.metrics:
            line += _cells(table, r.cells[m], m, r.n, MARKDOWN)
        rows.append(line)
    body = str(tabulate(rows, headers=header, tablefmt="github", disable_numparse=True))
    notes = "\n".join(f"- {n}" for n in footnotes(table, MARKDOWN))
    return f"{body}\n\n{notes}\n"


def latex_tabular(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    numeric: int | Sequence[str],
    labels: int = 1,
) -> str:
    """The one LaTeX table body of cirbench: a booktabs ``tabular`` with ``labels``
    left-aligned label columns, then ``numeric`` right-aligned columns or the given column
    specs (e.g. :func:`si_column`'s). ``header`` holds whole LaTeX lines; cells are LaTeX
    already (see :data:`LATEX`, :data:`SI`)."""
    columns = "r" * numeric if isinstance(numeric, int) else "".join(numeric)
    spec = "l" * labels + columns
    lines = [r"\begin{tabular}{" + spec + "}", r"\toprule", *header, r"\midrule"]
    lines += [" & ".join(r) + r" \\" for r in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)


#: What every cirbench table with ``S`` columns sets (inside its float or group): ``98.50 \pm
#: 0.50`` printed as ``98.50 ± 0.50`` (aligned on the mean's decimal point; the spread follows
#: it at its natural width), an explicit ``+`` kept, ``\bfseries`` honoured.
SISETUP = (
    r"\sisetup{separate-uncertainty, table-align-uncertainty=false, retain-explicit-plus, "
    r"reset-text-series=false, text-series-to-math=true}"
)


def si_column(
    numbers: Iterable[tuple[float | None, float | None]],
    posts: Iterable[str] = (),
    signed: bool = False,
) -> str:
    """A siunitx ``S`` column that fits ``numbers`` (value, uncertainty or None; both printed
    with two decimals) on the decimal point, with room for the longest text after a number
    (``posts``: marks such as ``$^{*}$``). ``signed``: values carry an explicit sign.

    >>> si_column([(98.5, 0.5), (9.14, 11.05), (None, None)], ["$^{*}$"])
    'S[table-format=2.2(4), table-space-text-post={$^{*}$}]'
    >>> si_column([(-1.5, None), (0.25, None)], signed=True)
    'S[table-format=+1.2]'
    """
    digits, uncertainty, negative = 1, 0, False
    for value, unc in numbers:
        if value is None:
            continue
        text = f"{value:.2f}"
        negative |= text.startswith("-")
        digits = max(digits, len(text.lstrip("+-").split(".")[0]))
        if unc is not None:
            uncertainty = max(uncertainty, len(f"{unc:.2f}".replace(".", "").lstrip("0")) or 1)
    sign = "+" if signed else "-" if negative else ""
    options = [f"table-format={sign}{digits}.2" + (f"({uncertainty})" if uncertainty else "")]
    longest = max(posts, key=len, default="")
    if longest:
        options.append(f"table-space-text-post={{{longest}}}")
    return f"S[{', '.join(options)}]"


#: Numeric columns per LaTeX tabular: wider tables are split by metric groups, never shrunk.
#: Six: two metrics (ours, reported, difference) in a column of a two-column paper.
LATEX_MAX_COLUMNS = 6


def metric_groups(table: TaskTable) -> list[list[str]]:
    """The table's metrics in groups of at most :data:`LATEX_MAX_COLUMNS` columns, each interval
    metric (``acc_5w1s_ci95``) right after the metric it belongs to (``acc_5w1s``)."""
    values = [m for m in table.metrics if not table.is_interval(m)]
    intervals = [m for m in table.metrics if table.is_interval(m)]
    units = [[m, *(i for i in intervals if i.startswith(f"{m}_"))] for m in values]
    placed = {m for unit in units for m in unit}
    units += [[m] for m in intervals if m not in placed]
    groups: list[list[str]] = [[]]
    for unit in units:
        width = sum(_parts(table, m) for m in [*groups[-1], *unit])
        if groups[-1] and width > LATEX_MAX_COLUMNS:
            groups.append([])
        groups[-1].extend(unit)
    return groups


def _post(cell: Cell, row_n: int) -> str:
    """The text after ours in a cell (as :func:`ours_text` writes it), for the column width."""
    return (f" (n={cell.n})" if cell.n != row_n else "") + (LATEX.star if cell.significant else "")


def _si_columns(table: TaskTable, metric: str) -> list[str]:
    """The ``S`` columns of one metric: ours (mean ± std), reported (± its CI), difference."""
    cells = [(r.cells[metric], r.n) for r in table.rows]
    interval = table.is_interval(metric)
    ours = si_column(
        [(c.mean, None if interval or c.n < 2 else c.std) for c, _ in cells],
        [_post(c, n) for c, n in cells if c.mean is not None],
    )
    if interval:
        return [ours]
    entries = [c.reported for c, _ in cells if c.reported is not None]
    reported = si_column([(e.value, e.ci95) for e in entries])
    return [ours, reported, si_column([(c.diff, None) for c, _ in cells], signed=True)]


def _latex_block(table: TaskTable, metrics: Sequence[str]) -> str:
    parts = [_parts(table, m) for m in metrics]
    starts = [3 + sum(parts[:i]) for i in range(len(parts))]
    names = ["{ours}", "{rep.}", "{$\\Delta$}"]
    groups = (
        rf"\multicolumn{{{k}}}{{c}}{{{latex_escape(m)}}}"
        for m, k in zip(metrics, parts, strict=True)
    )
    header = [
        " & & " + " & ".join(groups) + r" \\",
        " ".join(rf"\cmidrule(lr){{{a}-{a + k - 1}}}" for a, k in zip(starts, parts, strict=True)),
        "method & $n$ & " + " & ".join(" & ".join(names[:k]) for k in parts) + r" \\",
    ]
    rows = []
    for r in table.rows:
        cells = [LATEX.code(r.label), str(r.n)]
        for m in metrics:
            cells += _cells(table, r.cells[m], m, r.n, SI)
        rows.append(cells)
    columns = ["r", *(c for m in metrics for c in _si_columns(table, m))]
    return latex_tabular(header, rows, columns)


FIT_WIDTH = r"\ifdim\wd0>\linewidth\resizebox{\linewidth}{!}{\usebox0}\else\usebox0\fi"


def latex_table(table: TaskTable) -> str:
    """A ``table`` float of booktabs ``tabular``s, one per group of metrics (a wide table is
    split, not shrunk), numbers aligned on the decimal point by siunitx ``S`` columns; needs
    ``\\usepackage{booktabs}``, ``\\usepackage{siunitx}`` and ``\\usepackage{graphicx}`` (a
    tabular still wider than the line, e.g. with long method names, is scaled to fit it)."""
    blocks = []
    for metrics in metric_groups(table):
        blocks += [r"\sbox0{%", _latex_block(table, metrics) + "}", FIT_WIDTH, r"\par\medskip"]
    lines = [
        f"% Generated by `cirbench report` from result records; do not edit. Task: {table.task}",
        r"% Needs \usepackage{booktabs}, \usepackage{siunitx} and \usepackage{graphicx}",
        r"\begin{table}[htbp]",
        r"\centering",
        r"\small",
        SISETUP,
        rf"\caption{{{latex_escape(table.task)}: ours vs reported (\%)}}",
        rf"\label{{tab:{table.task}}}",
        *blocks,
        r"\raggedright\footnotesize",
        *(rf"{note}\par" for note in footnotes(table, LATEX)),
        r"\end{table}",
    ]
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
