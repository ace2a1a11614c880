"""Tables computed from result records: mean +/- sample std over seeds, per method and metric."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import pandas as pd
from tabulate import tabulate

Format = Literal["md", "latex", "csv"]
ID_COLUMNS = (
    "task",
    "method",
    "seed",
    "profile",
    "overrides",
    "config_hash",
    "wall_time_s",
    "device",
    "path",
)


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
