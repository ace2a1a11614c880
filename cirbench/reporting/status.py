"""The README's reproduction status: each reported number of ``cirbench/reported.yaml`` against
the mean of our comparable records (the task's reference profile, no ``--set``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import pandas as pd
from tabulate import tabulate

from cirbench.errors import CirbenchError
from cirbench.reported import Reported, ReportedEntry
from cirbench.tasks import reference_profile, reference_weights

STATUSES = ("reproduced", "not yet", "outside tolerance", "n/a")
STATUS_BEGIN = "<!-- status:begin -->"
STATUS_END = "<!-- status:end -->"


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


def of_backbone(df: pd.DataFrame, backbone: str | None) -> pd.DataFrame:
    """Records that trained ``backbone`` (records older than the field count, as before)."""
    if not backbone or df.empty or "backbone" not in df:
        return df
    ours = df["backbone"].fillna("")
    return df[(ours == "") | (ours == backbone)]


def entry_status(entry: ReportedEntry, df: pd.DataFrame) -> Status:
    found = comparable(df, entry.task, entry.method) if entry.method else df.iloc[0:0]
    records = of_backbone(found, entry.backbone)
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
    if mean is None and len(found):
        ours = ", ".join(sorted({str(b) for b in found["backbone"]}))
        why = f"not comparable: ours trains {ours}, the paper {entry.backbone}"
        return replace(status, reason=why)
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
