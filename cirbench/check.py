"""The CI gate: do the records' metrics stay within their tolerance?

``--against baseline``: every record under ``runs/`` is matched to ``results/baselines/<task>.json``
by (method, profile, seed, overrides) and each metric must equal the baseline within
:data:`BASELINE_ATOL`. Not by config hash: a new config field changes every hash without moving a
metric, and the gate must still compare.

Tolerance: on CPU the same seed on the same machine kind gives bit-identical metrics (two runs of
the digits smoke profile here: difference 0.0 on every metric). Thread count and the CPU's
instruction set change the float reduction order: 1 vs 2 threads moved digits smoke metrics by up
to 5.6e-3, i.e. single test predictions flipped (one digits test image = 1/540 = 1.9e-3). So the
band is 1e-4 absolute (0.01 percentage points): it absorbs last-bit BLAS differences in mAP
averages, and any flipped prediction, which is a real behaviour change, fails. A baseline holds on
the machine kind it was made on (``device`` is stored with it); on another kind, regenerate with
``cirbench check --update``.

``--against reported``: the mean over seeds of the records comparable to a paper (see
:func:`cirbench.report.entry_status`) must lie within the entry's tolerance in reported.yaml.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tabulate import tabulate

from cirbench.errors import CirbenchError
from cirbench.report import RecordSet, Status, metric_columns
from cirbench.results import write_record

BASELINE_ATOL = 1e-4
SCHEMA = 1
Key = tuple[str, str, int, str]  # method, profile, seed, overrides


@dataclass(frozen=True)
class Deviation:
    task: str
    method: str
    profile: str
    seed: int | str
    metric: str
    expected: float | None
    got: float | None
    tolerance: float | None
    where: str  # record path, or the paper's citation

    @property
    def diff(self) -> float | None:
        if self.expected is None or self.got is None:
            return None
        return self.got - self.expected


@dataclass(frozen=True)
class CheckResult:
    deviations: tuple[Deviation, ...]
    checked: int  # records (baseline) or reported entries (reported) compared
    unchecked: tuple[str, ...] = ()  # records with no baseline entry
    not_run: tuple[str, ...] = ()  # baseline entries with no record under --runs
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.deviations and self.checked > 0


def _key(row: Mapping[Any, Any]) -> Key:
    return (str(row["method"]), str(row["profile"] or ""), int(row["seed"]), row["overrides"] or "")


def baseline_path(folder: Path, task: str) -> Path:
    return folder / f"{task}.json"


def load_baseline(folder: Path, task: str) -> dict[Key, dict[str, Any]]:
    path = baseline_path(folder, task)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = data["entries"]
        return {_key(e): e for e in entries}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CirbenchError(
            f"baseline {path} is not readable ({exc}); regenerate it with "
            f"`cirbench check {task} --update --runs DIR`"
        ) from None


def _metrics(row: Mapping[Any, Any], names: Iterable[str]) -> dict[str, float]:
    return {m: float(row[m]) for m in names if m in row and row[m] == row[m]}  # drop NaN


def _compare(
    task: str, row: Mapping[Any, Any], got: Mapping[str, float], expected: Mapping[str, Any]
) -> list[Deviation]:
    """A metric moved beyond the band, is missing, or is new: each is a deviation."""
    out = []
    for metric in sorted(set(got) | set(expected["metrics"])):
        e, g = expected["metrics"].get(metric), got.get(metric)
        if e is None or g is None or abs(g - float(e)) > BASELINE_ATOL:
            out.append(
                Deviation(
                    task,
                    str(row["method"]),
                    str(row["profile"] or ""),
                    int(row["seed"]),
                    metric,
                    None if e is None else float(e),
                    g,
                    BASELINE_ATOL,
                    str(row["path"]),
                )
            )
    return out


def check_baseline(records: RecordSet, folder: Path, tasks: Sequence[str]) -> CheckResult:
    deviations: list[Deviation] = []
    unchecked: list[str] = []
    not_run: list[str] = []
    notes: list[str] = []
    checked = 0
    for task in tasks:
        expected = load_baseline(folder, task)
        df = records.task(task)
        names = metric_columns(df) if len(df) else []
        seen: set[Key] = set()
        for row in df.to_dict("records"):
            key = _key(row)
            if key not in expected:
                unchecked.append(str(row["path"]))
                continue
            seen.add(key)
            checked += 1
            moved = _compare(task, row, _metrics(row, names), expected[key])
            deviations += moved
            device = expected[key].get("device")
            if moved and device and row.get("device") != device:
                notes.append(
                    f"{row['path']}: measured on {row.get('device')}, baseline on {device}"
                )
        not_run += [f"{task} {k[0]} [{k[1]}] seed {k[2]}" for k in expected if k not in seen]
    return CheckResult(tuple(deviations), checked, tuple(unchecked), tuple(not_run), tuple(notes))


def update_baseline(records: RecordSet, folder: Path, tasks: Sequence[str]) -> list[Path]:
    """Write (merge into) ``folder/<task>.json`` from the records: after an intended change."""
    written = []
    for task in tasks:
        entries = {k: dict(v) for k, v in load_baseline(folder, task).items()}
        df = records.task(task)
        names = metric_columns(df) if len(df) else []
        fresh: dict[Key, dict[str, Any]] = {}
        for row in df.to_dict("records"):
            key = _key(row)
            entry = {
                "method": key[0],
                "profile": key[1],
                "seed": key[2],
                "overrides": key[3],
                "device": row.get("device"),
                "metrics": _metrics(row, names),
            }
            if key in fresh and fresh[key]["metrics"] != entry["metrics"]:
                raise CirbenchError(
                    f"two records for {task} {key[0]} [{key[1]}] seed {key[2]} disagree "
                    f"({row['path']}); remove the stale one before --update"
                )
            fresh[key] = entry
        entries.update(fresh)
        path = baseline_path(folder, task)
        write_record(
            path,
            {
                "schema": SCHEMA,
                "task": task,
                "tolerance_abs": BASELINE_ATOL,
                "note": "Expected metrics (fractions) per (method, profile, seed, overrides); "
                "written by `cirbench check --update`, checked by `cirbench check`.",
                "entries": [entries[k] for k in sorted(entries)],
            },
        )
        written.append(path)
    return written


def check_reported(items: Sequence[Status], tasks: Sequence[str]) -> CheckResult:
    """Entries with a value, a tolerance and comparable records; outside tolerance = deviation."""
    judged = [
        s
        for s in items
        if s.entry.task in tasks and s.status in ("reproduced", "outside tolerance")
    ]
    deviations = tuple(
        Deviation(
            s.entry.task,
            str(s.entry.method),
            "",
            f"mean of {s.n}",
            s.entry.metric,
            s.entry.value,
            s.mean,
            s.entry.tolerance,
            s.entry.citation,
        )
        for s in judged
        if s.status == "outside tolerance"
    )
    notes = () if judged else ("no reported entry has both a value and comparable records",)
    return CheckResult(deviations, len(judged), notes=notes)


def format_deviations(deviations: Sequence[Deviation], scale: float = 1.0) -> str:
    """Diff table; ``scale`` 100 shows fractions as percent."""

    def num(v: float | None, fmt: str = ".6f") -> str:
        return "missing" if v is None else format(v * scale, fmt)

    rows = [
        [
            d.task,
            d.method,
            d.profile or "—",
            d.seed,
            d.metric,
            num(d.expected),
            num(d.got),
            "—" if d.diff is None else format(d.diff * scale, "+.6f"),
            "—" if d.tolerance is None else format(d.tolerance * scale, "g"),
            d.where,
        ]
        for d in deviations
    ]
    header = [
        "task",
        "method",
        "profile",
        "seed",
        "metric",
        "expected",
        "got",
        "diff",
        "tol",
        "where",
    ]
    return str(tabulate(rows, headers=header, tablefmt="github", disable_numparse=True))
