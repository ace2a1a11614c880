"""Result records as one table: every record under ``runs/<task>/`` read once and checked."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from cirbench.results import IDENTITY, Split, load_record, records_frame

ID_COLUMNS = IDENTITY


def metric_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c not in ID_COLUMNS]


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


def collect_records(root: Path | str, split: Split = "test") -> RecordSet:
    """Every record of ``split`` (test by default) under ``root/runs/<task>/``, each file read
    once and checked by :func:`cirbench.results.record_problem`; anything else there is
    skipped, named, never counted. Records of the other split are left out, not skipped."""
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
    df = records_frame(good, split)
    if not df.empty:
        empty = [m for m in metric_columns(df) if df[m].isna().all()]
        df = df.drop(columns=empty)
        df = df.astype({m: float for m in metric_columns(df)})
    return RecordSet(df, records, tuple(skipped))
