"""The regression gate: do the records still agree with their baselines (or with the papers)?

``--against baseline`` compares the records under ``RUNS/runs/`` with ``results/baselines/<task>.
json``. Entries are matched by (method, profile, overrides) and seed, not by config hash: a new
config field changes every hash without moving a metric, and the gate must still compare. Two kinds
of comparison, each honest about what it can promise; every row of the output says which it got:

*exact*: a record made with ``cirbench run --exact`` (see :mod:`cirbench.exact`) against the
baseline entry for the same seed, also made in exact mode. Exact mode fixes kernels, BLAS path,
threads and seeds, so the metrics must be equal bit for bit: the entry's ``tolerance.exact`` is 0.
A difference means the code (or the torch build, or the architecture: the row says when those
differ from the baseline's) changed the numbers. CI uses this kind (``check --exact``).

*statistical*: everything else (default-mode CPU runs, other thread counts, GPU runs). Per (method,
profile, overrides) and metric, the new runs' values over seeds are compared with the baseline's
values over its seeds by a two-sided two-sample t-test with pooled variance (Student's). A metric
fails when the difference of the means exceeds the entries' ``tolerance.statistical`` (the smallest
shift that counts; default 1 percentage point) *and* p < ``alpha`` (the baseline file's, default
0.01) divided by the number of such comparisons (metrics x method groups) of the task in this
check (Bonferroni), so that the whole task's statistical gate, not each metric, false-alarms with
probability at most ``alpha``. The null hypothesis is "unchanged method": both sides are draws over
seeds of one distribution, so one variance, and under it (normal metrics) the pooled test has
false-alarm rate exactly its level with tolerance 0, and less with a tolerance. Welch's test,
which does not assume equal variances, is only approximate at 2 to 5 seeds: in 10,000 simulated
draws at level 0.01 it alarmed 0.47% of the time at 3 vs 3 seeds and 1.6% at 5 vs 2, so we do not
use it (the pooled test's rate is checked by simulation in tests/test_check.py). One value on
one side works (its spread comes from the other side); with one value on both sides there is no
spread, and only the tolerance is applied.

``--against reported``: the mean over seeds of the records comparable to a paper (see
:func:`cirbench.reporting.status.entry_status`) must lie within the entry's tolerance in
reported.yaml.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from scipy import stats
from tabulate import tabulate

from cirbench.errors import CirbenchError
from cirbench.reporting import RecordSet, Status, metric_columns
from cirbench.results import write_record

SCHEMA = 2
EXACT_TOLERANCE = 0.0  # bit for bit
STATISTICAL_TOLERANCE = 0.01  # 1 percentage point: smaller shifts never fail a statistical row
ALPHA = 0.01
Mode = Literal["auto", "exact", "statistical"]
Group = tuple[str, str, str]  # method, profile, overrides
Key = tuple[str, str, str, int, str]  # method, profile, overrides, seed, record mode


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
    kind: str = "exact"  # exact | statistical | reported
    reason: str = ""

    @property
    def diff(self) -> float | None:
        if self.expected is None or self.got is None:
            return None
        return self.got - self.expected


@dataclass(frozen=True)
class Row:
    """One compared unit: a record (exact) or the records of one group (statistical)."""

    task: str
    group: Group
    seeds: str
    kind: str
    ok: bool
    reason: str


@dataclass(frozen=True)
class CheckResult:
    deviations: tuple[Deviation, ...]
    checked: int  # records (baseline) or reported entries (reported) compared
    unchecked: tuple[str, ...] = ()  # records with no baseline entry
    not_run: tuple[str, ...] = ()  # baseline entries with no record under --runs
    notes: tuple[str, ...] = field(default_factory=tuple)
    rows: tuple[Row, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.deviations and self.checked > 0 and all(r.ok for r in self.rows)


# --- the statistical test --------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str
    p: float | None = None


def compare_samples(
    baseline: Sequence[float], new: Sequence[float], tolerance: float, alpha: float
) -> Verdict:
    """Are ``new`` values (one per seed) consistent with ``baseline`` ones? See the module doc."""
    if not baseline or not new:
        return Verdict(False, "no values on one side")
    nb, nn = len(baseline), len(new)
    diff = statistics.fmean(new) - statistics.fmean(baseline)
    head = f"mean diff {diff * 100:+.3f} pts (n={nn} vs {nb})"
    if abs(diff) <= tolerance:
        return Verdict(True, f"{head}, within tolerance {tolerance * 100:g} pts")
    df = nb + nn - 2
    if df < 1:
        return Verdict(False, f"{head} > tolerance {tolerance * 100:g} pts; one value each side")
    mb, mn = statistics.fmean(baseline), statistics.fmean(new)
    pooled = (sum((v - mb) ** 2 for v in baseline) + sum((v - mn) ** 2 for v in new)) / df
    se2 = pooled * (1 / nb + 1 / nn)
    if se2 == 0:
        return Verdict(False, f"{head} > tolerance {tolerance * 100:g} pts with zero spread", 0.0)
    t = diff / math.sqrt(se2)
    p = float(2 * stats.t.sf(abs(t), df))
    verdict = f"{head}, t={t:.2f} df={df} p={p:.3g}"
    if p < alpha:
        return Verdict(False, f"{verdict} < alpha {alpha:g}, beyond {tolerance * 100:g} pts", p)
    return Verdict(True, f"{verdict} >= alpha {alpha:g}", p)


# --- baseline files --------------------------------------------------------------------------


@dataclass(frozen=True)
class Baseline:
    task: str
    alpha: float
    entries: tuple[dict[str, Any], ...]

    def exact_entry(self, group: Group, seed: int) -> dict[str, Any] | None:
        for e in self.entries:
            if _group(e) == group and e["seed"] == seed and e["mode"] == "exact":
                return e
        return None

    def group(self, group: Group, mode: str) -> list[dict[str, Any]]:
        """The group's entries made in ``mode`` if any, else all of the group's entries (an
        exact-mode seed is a fair draw of the method's distribution too)."""
        entries = [e for e in self.entries if _group(e) == group]
        same = [e for e in entries if e["mode"] == mode]
        return same or entries


def _group(row: Mapping[Any, Any]) -> Group:
    return (str(row["method"]), str(row["profile"] or ""), str(row["overrides"] or ""))


def baseline_path(folder: Path, task: str) -> Path:
    return folder / f"{task}.json"


def load_baseline(folder: Path, task: str) -> Baseline:
    path = baseline_path(folder, task)
    if not path.is_file():
        return Baseline(task, ALPHA, ())
    fix = f"regenerate it with `cirbench check {task} --update --runs DIR`"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("schema") != SCHEMA:
            raise CirbenchError(
                f"baseline {path} has schema {data.get('schema')}, this cirbench reads {SCHEMA}; "
                f"delete it and {fix}"
            )
        entries = tuple(_entry(e) for e in data["entries"])
        return Baseline(task, float(data.get("alpha", ALPHA)), entries)
    except (AttributeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CirbenchError(f"baseline {path} is not readable ({exc}); {fix}") from None


def _entry(e: Mapping[str, Any]) -> dict[str, Any]:
    mode = str(e["mode"])
    if mode not in ("exact", "default"):
        raise ValueError(f"mode {mode!r}")
    tolerance = {k: float(v) for k, v in dict(e["tolerance"]).items()}
    metrics = {str(k): float(v) for k, v in dict(e["metrics"]).items()}
    return {**e, "seed": int(e["seed"]), "mode": mode, "tolerance": tolerance, "metrics": metrics}


# --- comparing -------------------------------------------------------------------------------


def _metrics(row: Mapping[Any, Any], names: Iterable[str]) -> dict[str, float]:
    return {m: float(row[m]) for m in names if m in row and row[m] == row[m]}  # drop NaN


def _build_note(record: Mapping[str, Any], entry: Mapping[str, Any]) -> str:
    """Why an exact row may differ for reasons outside the code: another torch or CPU type."""
    repro = record.get("reproducibility")
    repro = repro if isinstance(repro, dict) else {}
    notes = [
        f"{name} {repro.get(name)} here vs {entry.get(name)} in the baseline"
        for name in ("torch", "machine")
        if entry.get(name) and repro.get(name) != entry.get(name)
    ]
    if not notes:
        return ""
    return f" ({'; '.join(notes)}: exact replay is promised for one build and architecture)"


def _exact_row(
    task: str, row: Mapping[Any, Any], got: Mapping[str, float], entry: Mapping[str, Any], note: str
) -> tuple[Row, list[Deviation]]:
    tol = float(entry["tolerance"].get("exact", EXACT_TOLERANCE))
    out = []
    for metric in sorted(set(got) | set(entry["metrics"])):
        e, g = entry["metrics"].get(metric), got.get(metric)
        if g is None:
            why = "missing in the record"
        elif e is None:
            why = "not in the baseline"
        elif abs(g - e) > tol:
            why = f"differs (tolerance {tol:g}{': bit for bit' if tol == 0 else ''}){note}"
        else:
            continue
        out.append(
            Deviation(
                task,
                str(row["method"]),
                str(row["profile"] or ""),
                int(row["seed"]),
                metric,
                e,
                g,
                tol,
                str(row["path"]),
                "exact",
                why,
            )
        )
    reason = (
        f"{len(out)} metric(s) differ from the exact baseline{note}"
        if out
        else f"{len(got)} metrics identical" + (" (bit for bit)" if tol == 0 else f" within {tol}")
    )
    return Row(task, _group(row), str(row["seed"]), "exact", not out, reason), out


def _group_entries(base: Baseline, group: Group, rows: Sequence[Mapping[Any, Any]]) -> list[Any]:
    return base.group(group, "exact" if all(r["mode"] == "exact" for r in rows) else "default")


def _compared_metrics(
    rows: Sequence[Mapping[Any, Any]], entries: Sequence[Mapping[str, Any]], names: Sequence[str]
) -> list[str]:
    found = {m for r in rows for m in _metrics(r, names)}
    return sorted(found | {m for e in entries for m in e["metrics"]})


def _statistical_row(
    task: str,
    group: Group,
    rows: Sequence[Mapping[Any, Any]],
    names: Sequence[str],
    entries: Sequence[Mapping[str, Any]],
    alpha: float,
    family: str,
) -> tuple[Row, list[Deviation]]:
    """``alpha``: the per-comparison level, the baseline's alpha over the number of statistical
    comparisons of the task (``family`` says so in the output)."""
    tol = max(float(e["tolerance"].get("statistical", STATISTICAL_TOLERANCE)) for e in entries)
    seeds = ",".join(str(r["seed"]) for r in rows)
    new = [_metrics(r, names) for r in rows]
    out, reasons = [], []
    largest: tuple[float, str] = (-1.0, "")  # the passing metric whose mean moved most
    for metric in _compared_metrics(rows, entries, names):
        ours = [v[metric] for v in new if metric in v]
        theirs = [e["metrics"][metric] for e in entries if metric in e["metrics"]]
        if len(ours) != len(new) or len(theirs) != len(entries):
            verdict = Verdict(False, "metric missing in " + ("records" if not ours else "baseline"))
        else:
            verdict = compare_samples(theirs, ours, tol, alpha)
        if verdict.ok:
            shift = abs(statistics.fmean(ours) - statistics.fmean(theirs))
            largest = max(largest, (shift, f"largest shift {metric}: {verdict.reason}"))
        else:
            reasons.append(f"{metric}: {verdict.reason}")
            out.append(
                Deviation(
                    task,
                    group[0],
                    group[1],
                    f"{seeds} vs {len(theirs)} seeds",
                    metric,
                    statistics.fmean(theirs) if theirs else None,
                    statistics.fmean(ours) if ours else None,
                    tol,
                    ", ".join(str(r["path"]) for r in rows[:2]) + (" ..." if len(rows) > 2 else ""),
                    "statistical",
                    verdict.reason,
                )
            )
    why = f"vs {len(entries)} baseline seeds ({entries[0]['mode']} mode), {family}"
    reason = "; ".join(reasons) if reasons else f"every metric consistent {why}; {largest[1]}"
    return Row(task, group, seeds, "statistical", not out, reason), out


@dataclass
class _TaskCheck:
    rows: list[Row] = field(default_factory=list)
    deviations: list[Deviation] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    seen: set[tuple[Group, int]] = field(default_factory=set)


def _route(
    task: str, records: RecordSet, base: Baseline, mode: Mode, out: _TaskCheck
) -> tuple[dict[Group, list[Mapping[Any, Any]]], list[str]]:
    """Exact rows are compared at once; the others are returned by group for the statistical
    pass (with the metric names)."""
    df = records.task(task)
    names = metric_columns(df) if len(df) else []
    pending: dict[Group, list[Mapping[Any, Any]]] = {}
    for row in df.to_dict("records"):
        group, seed = _group(row), int(row["seed"])
        entry = base.exact_entry(group, seed)
        if mode != "statistical" and row["mode"] == "exact" and entry is not None:
            out.seen.add((group, seed))
            note = _build_note(records.records.get(str(row["path"]), {}), entry)
            exact_row, devs = _exact_row(task, row, _metrics(row, names), entry, note)
            out.rows.append(exact_row)
            out.deviations += devs
        elif mode == "exact" and base.group(group, "exact"):
            why = (
                f"no exact baseline entry for seed {seed}"
                if row["mode"] == "exact"
                else "record not made with `cirbench run --exact`"
            )
            out.rows.append(Row(task, group, str(seed), "exact", False, why))
        else:
            pending.setdefault(group, []).append(row)
    return pending, names


def _check_task(task: str, records: RecordSet, base: Baseline, mode: Mode) -> _TaskCheck:
    out = _TaskCheck()
    pending, names = _route(task, records, base, mode, out)
    families = {g: _group_entries(base, g, members) for g, members in pending.items()}
    count = sum(len(_compared_metrics(pending[g], e, names)) for g, e in families.items() if e)
    alpha = base.alpha / max(count, 1)  # Bonferroni: the task's gate alarms at most at alpha
    family = f"alpha {base.alpha:g} / {count} comparisons = {alpha:.3g} (Bonferroni)"
    for group, members in pending.items():
        if not families[group]:
            out.unchecked += [str(r["path"]) for r in members]
            continue
        out.seen |= {(group, int(r["seed"])) for r in members}
        stat_row, devs = _statistical_row(
            task, group, members, names, families[group], alpha, family
        )
        out.rows.append(stat_row)
        out.deviations += devs
    return out


def check_baseline(
    records: RecordSet, folder: Path, tasks: Sequence[str], mode: Mode = "auto"
) -> CheckResult:
    """Compare every record of ``tasks`` with its baseline; ``mode`` ``exact`` fails a record
    that has no exact comparison, ``statistical`` compares even exact records statistically."""
    deviations: list[Deviation] = []
    rows: list[Row] = []
    unchecked: list[str] = []
    not_run: list[str] = []
    for task in tasks:
        base = load_baseline(folder, task)
        done = _check_task(task, records, base, mode)
        rows += done.rows
        deviations += done.deviations
        unchecked += done.unchecked
        not_run += [
            f"{task} {e['method']} [{e['profile']}] seed {e['seed']}"
            for e in base.entries
            if (_group(e), e["seed"]) not in done.seen
        ]
    checked = sum(len(r.seeds.split(",")) for r in rows)
    return CheckResult(
        tuple(deviations),
        checked,
        tuple(unchecked),
        tuple(dict.fromkeys(not_run)),
        rows=tuple(rows),
    )


def update_baseline(
    records: RecordSet,
    folder: Path,
    tasks: Sequence[str],
    command: Sequence[str] = (),
    tolerance: float = STATISTICAL_TOLERANCE,
    alpha: float = ALPHA,
) -> list[Path]:
    """Write (merge into) ``folder/<task>.json`` from the records: after an intended change.
    Each entry says how its record was made (command, mode, commit, torch, machine)."""
    written = []
    for task in tasks:
        old = load_baseline(folder, task)
        entries = {_entry_key(e): dict(e) for e in old.entries}
        df = records.task(task)
        names = metric_columns(df) if len(df) else []
        fresh: dict[Key, dict[str, Any]] = {}
        for row in df.to_dict("records"):
            entry = _new_entry(row, records.records.get(str(row["path"]), {}), names, tolerance)
            key = _entry_key(entry)
            if key in fresh and fresh[key]["metrics"] != entry["metrics"]:
                raise CirbenchError(
                    f"two records for {task} {key[0]} [{key[1]}] seed {key[3]} ({key[4]} mode) "
                    f"disagree ({row['path']}); remove the stale one before --update"
                )
            fresh[key] = entry
        entries.update(fresh)
        path = baseline_path(folder, task)
        write_record(
            path,
            {
                "schema": SCHEMA,
                "task": task,
                "alpha": alpha,
                "note": "Expected metrics (fractions) per (method, profile, overrides, seed, "
                "mode). Exact-mode entries must be matched bit for bit by exact-mode records "
                "(tolerance.exact); everything else is compared over seeds by a pooled t-test "
                "at alpha over the task's number of comparisons (Bonferroni), failing only beyond "
                "tolerance.statistical. See cirbench/check.py.",
                "updated_by": {
                    "command": ["cirbench", *command],
                    "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                },
                "entries": [entries[k] for k in sorted(entries)],
            },
        )
        written.append(path)
    return written


def _entry_key(e: Mapping[str, Any]) -> Key:
    return (*_group(e), int(e["seed"]), str(e["mode"]))


def _new_entry(
    row: Mapping[Any, Any], record: Mapping[str, Any], names: Sequence[str], tolerance: float
) -> dict[str, Any]:
    repro = record.get("reproducibility")
    repro = repro if isinstance(repro, dict) else {}
    prov = record.get("provenance")
    prov = prov if isinstance(prov, dict) else {}
    git = prov.get("git")
    git = git if isinstance(git, dict) else {}
    exact = row["mode"] == "exact"
    tol = (
        {"exact": EXACT_TOLERANCE, "statistical": tolerance}
        if exact
        else {"statistical": tolerance}
    )
    return {
        "method": str(row["method"]),
        "profile": str(row["profile"] or ""),
        "overrides": str(row["overrides"] or ""),
        "seed": int(row["seed"]),
        "mode": str(row["mode"]),
        "metrics": _metrics(row, names),
        "tolerance": tol,
        "device": row.get("device"),
        "torch": repro.get("torch"),
        "machine": repro.get("machine"),
        "command": prov.get("command"),
        "commit": git.get("commit"),
        "dirty": git.get("dirty"),
    }


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
            "reported",
            "outside the reported value's tolerance",
        )
        for s in judged
        if s.status == "outside tolerance"
    )
    notes = () if judged else ("no reported entry has both a value and comparable records",)
    return CheckResult(deviations, len(judged), notes=notes)


# --- output ----------------------------------------------------------------------------------


def format_rows(rows: Sequence[Row]) -> str:
    """One line per compared record (exact) or group (statistical): the kind and the why."""
    table = [
        [
            r.task,
            r.group[0],
            r.group[1] or "—",
            r.group[2] or "—",
            r.seeds,
            r.kind,
            "ok" if r.ok else "FAIL",
            r.reason,
        ]
        for r in rows
    ]
    header = ["task", "method", "profile", "overrides", "seeds", "kind", "result", "why"]
    return str(tabulate(table, headers=header, tablefmt="github", disable_numparse=True))


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
            d.kind,
            num(d.expected),
            num(d.got),
            "—" if d.diff is None else format(d.diff * scale, "+.6f"),
            "—" if d.tolerance is None else format(d.tolerance * scale, "g"),
            d.reason,
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
        "kind",
        "expected",
        "got",
        "diff",
        "tol",
        "why",
        "where",
    ]
    return str(tabulate(rows, headers=header, tablefmt="github", disable_numparse=True))
