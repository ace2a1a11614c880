"""The numbers papers reported (``cirbench/reported.yaml``), loaded into frozen dataclasses.

One entry per paper x task x protocol x backbone x method x metric. Values and ``ci95`` are in
percent as printed in the paper; ``tolerance`` is in percentage points (how far our mean over
seeds may be from ``value`` and still count as reproduced); ``value: null`` means the paper
reports the number but we could not read it, ``tolerance: null`` that our protocol differs so no
tolerance applies, ``method: null`` that cirbench does not implement the method.

Validation on load (any failure is a :class:`ReportedError` naming the file, the entry and the
fix): unknown keys, unknown paper, empty citation (``where``: table or figure), unknown task,
metric outside the task's vocabulary, value or ci95 outside [0, 100] percent, negative tolerance,
and duplicate entries.

Tasks and metrics: a task is known when it is registered in :data:`cirbench.tasks.TASKS`; its
metric vocabulary is the task class's ``metrics`` attribute (declared once, on the task).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from cirbench.errors import CirbenchError, did_you_mean
from cirbench.methods import METHODS, MethodSpec
from cirbench.tasks import TASKS, task_metrics

PERCENT_RANGE = (0.0, 100.0)

_PAPER_KEYS = frozenset({"title", "authors", "venue", "arxiv"})
_ENTRY_KEYS = frozenset(
    {
        "paper",
        "where",
        "task",
        "protocol",
        "backbone",
        "label",
        "method",
        "metric",
        "value",
        "ci95",
        "tolerance",
    }
)
_REQUIRED = ("paper", "where", "task", "metric", "label", "value", "tolerance")


class ReportedError(CirbenchError):
    """reported.yaml (or a file given in its place) does not follow the schema."""


@dataclass(frozen=True)
class Paper:
    key: str
    title: str
    authors: str
    venue: str
    arxiv: str | None = None

    @property
    def short(self) -> str:
        """``Luo et al. (CVPR Workshops 2019)``."""
        first = self.authors.split(",")[0].strip()
        etal = " et al." if "," in self.authors else ""
        return f"{first}{etal} ({self.venue})"


@dataclass(frozen=True)
class ReportedEntry:
    paper: Paper
    where: str  # table or figure of the paper
    task: str
    protocol: str | None
    backbone: str | None
    label: str  # the paper's name for the row
    method: str | None  # our canonical method spec, or None when not implemented here
    metric: str
    value: float | None  # percent; None = reported but not readable here
    tolerance: float | None  # percentage points; None = protocols differ, not comparable
    ci95: float | None = None  # percent, the paper's 95% interval half-width

    @property
    def citation(self) -> str:
        arxiv = f", arXiv:{self.paper.arxiv}" if self.paper.arxiv else ""
        return f"{self.paper.short}, {self.where}{arxiv}"


@dataclass(frozen=True)
class Reported:
    papers: Mapping[str, Paper]
    entries: tuple[ReportedEntry, ...]

    def for_task(self, task: str) -> tuple[ReportedEntry, ...]:
        return tuple(e for e in self.entries if e.task == task)

    def lookup(self, task: str, method: str, metric: str) -> tuple[ReportedEntry, ...]:
        """Entries for our ``method`` on ``task`` and ``metric``, in file order."""
        return tuple(
            e for e in self.entries if (e.task, e.method, e.metric) == (task, method, metric)
        )


def default_path() -> Path:
    return Path(str(resources.files("cirbench").joinpath("reported.yaml")))


def load_reported(path: Path | str | None = None) -> Reported:
    """Read and validate ``path`` (default: the packaged ``cirbench/reported.yaml``)."""
    source = Path(path) if path is not None else default_path()
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReportedError(f"cannot read reported numbers {source}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ReportedError(f"{source}: not valid YAML ({exc}); fix the syntax") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("papers"), dict):
        raise ReportedError(f"{source}: expected a mapping with 'papers' and 'entries'")
    papers = {str(k): _paper(source, str(k), v) for k, v in raw["papers"].items()}
    items = raw.get("entries")
    if not isinstance(items, list):
        raise ReportedError(f"{source}: 'entries' must be a list of entries")
    entries = tuple(_entry(source, i, item, papers) for i, item in enumerate(items, 1))
    _check_duplicates(source, entries)
    return Reported(papers=papers, entries=entries)


def _paper(source: Path, key: str, raw: object) -> Paper:
    where = f"{source}: paper {key!r}"
    if not isinstance(raw, dict):
        raise ReportedError(f"{where}: expected a mapping with {', '.join(sorted(_PAPER_KEYS))}")
    unknown = set(raw) - _PAPER_KEYS
    if unknown:
        raise ReportedError(
            f"{where}: unknown keys {sorted(unknown)}; allowed {sorted(_PAPER_KEYS)}"
        )
    for field in ("title", "authors", "venue"):
        if not isinstance(raw.get(field), str) or not raw[field].strip():
            raise ReportedError(f"{where}: missing citation field {field!r}; add it")
    arxiv = raw.get("arxiv")
    return Paper(key, raw["title"], raw["authors"], raw["venue"], str(arxiv) if arxiv else None)


def _entry(source: Path, index: int, raw: object, papers: Mapping[str, Paper]) -> ReportedEntry:
    where = f"{source}: entry {index}"
    if not isinstance(raw, dict):
        raise ReportedError(f"{where}: expected a mapping, got {type(raw).__name__}")
    where = f"{where} ({raw.get('paper')}, {raw.get('task')}, {raw.get('metric')})"
    unknown = set(raw) - _ENTRY_KEYS
    if unknown:
        raise ReportedError(
            f"{where}: unknown keys {sorted(unknown)}; allowed {sorted(_ENTRY_KEYS)}"
        )
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise ReportedError(f"{where}: missing {', '.join(missing)} (write null when unknown)")
    paper = _citation(where, raw, papers)
    task = _task(where, raw["task"])
    metric = _metric(where, task, raw["metric"])
    return ReportedEntry(
        paper=paper,
        where=str(raw["where"]).strip(),
        task=task,
        protocol=_optional_str(raw.get("protocol")),
        backbone=_optional_str(raw.get("backbone")),
        label=str(raw["label"]),
        method=_method(raw.get("method")),
        metric=metric,
        value=_percent(where, "value", raw["value"]),
        tolerance=_tolerance(where, raw["tolerance"]),
        ci95=_percent(where, "ci95", raw.get("ci95")),
    )


def _citation(where: str, raw: Mapping[str, Any], papers: Mapping[str, Paper]) -> Paper:
    key = raw["paper"]
    if not isinstance(key, str) or key not in papers:
        raise ReportedError(
            f"{where}: missing citation: paper {key!r} is not under 'papers:'; "
            f"add it there (title, authors, venue, arxiv) or use one of {', '.join(papers)}"
        )
    text = raw["where"]
    if not isinstance(text, str) or not text.strip():
        raise ReportedError(
            f"{where}: missing citation: 'where' must name the table or figure of the paper"
        )
    return papers[key]


def _task(where: str, task: object) -> str:
    if not isinstance(task, str) or task_metrics(task) is None:
        known = list(TASKS)
        hint = did_you_mean(str(task), known)
        raise ReportedError(f"{where}: unknown task {task!r}.{hint} Known: {', '.join(known)}.")
    return task


def _metric(where: str, task: str, metric: object) -> str:
    vocabulary = task_metrics(task) or ()
    if metric not in vocabulary:
        raise ReportedError(
            f"{where}: unknown metric {metric!r} for task {task!r}; "
            f"use one of {', '.join(vocabulary)}"
        )
    return str(metric)


def _number(where: str, name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReportedError(f"{where}: {name} {value!r} is not a number (use null when unknown)")
    return float(value)


def _percent(where: str, name: str, value: object) -> float | None:
    number = _number(where, name, value)
    lo, hi = PERCENT_RANGE
    if number is not None and not lo <= number <= hi:
        raise ReportedError(
            f"{where}: {name} {number} is outside [{lo:g}, {hi:g}]; values are in percent "
            f"(write 85.7, not 0.857)"
        )
    return number


def _tolerance(where: str, value: object) -> float | None:
    number = _number(where, "tolerance", value)
    if number is not None and not 0 <= number <= PERCENT_RANGE[1]:
        raise ReportedError(f"{where}: tolerance {number} must be in [0, 100] percentage points")
    return number


def _method(value: object) -> str | None:
    """Our canonical spec (order-insensitive) when all components are registered methods."""
    if value is None:
        return None
    spec = str(value).strip()
    parts = re.split(r"\s*\+\s*", spec)
    return MethodSpec.parse(spec).name if all(p in METHODS for p in parts) else spec


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)


def _check_duplicates(source: Path, entries: tuple[ReportedEntry, ...]) -> None:
    seen: set[tuple[Any, ...]] = set()
    for e in entries:
        key = (e.paper.key, e.task, e.protocol, e.backbone, e.label, e.method, e.metric)
        if key in seen:
            raise ReportedError(
                f"{source}: duplicate entry {e.paper.key}/{e.task}/{e.label}/{e.metric}; keep one"
            )
        seen.add(key)
