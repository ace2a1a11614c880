"""The report's "tuned vs default" section: the equal-budget studies of ``cirbench tune``,
rebuilt from their records alone.

Every record a study writes states its study, trial, metric, direction, budget, sampler and
search space (``origin``, see :mod:`cirbench.tune`): the validation records are the trials, the
test records re-run the best trial on the test seeds. Records of the same folder without an
``origin`` (plain ``cirbench run``) of the same task, method, profile and base overrides (the
study's overrides without its searched fields) are the *default* arm of that method. So a
study run on PostgreSQL by several workers reports exactly like one on the SQLite default, and
nothing binary needs committing.

What the section shows, per task:

- one table, a row per method: trials used of the budget, the best validation value, the test
  metric of the best configuration (mean +/- sample std over seeds), the default's, their
  difference and Welch's t-test (unequal variances, two-sided) between the two;
- Welch's test between every pair of tuned methods at equal budget (the comparison of
  Musgrave et al., ECCV 2020), with the difference in points;
- each method's best configuration;
- Optuna's optimisation history of all methods (one figure) and each method's parameter
  importances (fANOVA, seeded), drawn with Optuna's matplotlib backend.
"""

from __future__ import annotations

import csv
import io
import itertools
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from cirbench.config import Choice, Domain, FloatRange, Overrides
from cirbench.errors import CirbenchError
from cirbench.reporting.plots import metric_label, save
from cirbench.reporting.render import (
    FIT_WIDTH,
    LATEX,
    MARKDOWN,
    SI,
    SISETUP,
    Style,
    latex_tabular,
    mean_std_text,
    si_column,
)
from cirbench.reporting.tables import ALPHA, percent, welch_p
from cirbench.results import load_record
from cirbench.space import as_text, space_from_json
from cirbench.tasks import TASKS
from cirbench.tune import load_optuna


@dataclass(frozen=True)
class Trial:
    number: int
    params: Mapping[str, Any]
    value: float | None  # None: the record lacks the metric


@dataclass(frozen=True)
class Arm:
    """Test-split values of one configuration, by seed."""

    overrides: str
    values: Mapping[int, float]

    @property
    def n(self) -> int:
        return len(self.values)

    def mean(self) -> float | None:
        return float(np.mean(list(self.values.values()))) if self.values else None

    def std(self) -> float | None:
        return float(np.std(list(self.values.values()), ddof=1)) if self.n > 1 else None


@dataclass(frozen=True)
class StudyResult:
    """One method's study on one task, and its default arm."""

    task: str
    method: str
    profile: str
    study: str
    metric: str
    direction: str
    budget: int
    sampler: str
    space: Mapping[str, Domain]
    base: str  # the overrides every trial shared (not searched)
    trials: tuple[Trial, ...]
    best_trial: int | None
    best_params: Mapping[str, Any]
    tuned: Arm
    default: Arm
    pruned: int = 0  # trials the pruner stopped (they used budget, wrote no record)

    @property
    def best_val(self) -> float | None:
        values = [t.value for t in self.trials if t.value is not None]
        if not values:
            return None
        return max(values) if self.direction == "maximize" else min(values)


def _params(overrides: Sequence[str], space: Mapping[str, Domain]) -> dict[str, Any]:
    """The searched values of a record's overrides, typed as the space's distributions."""
    out: dict[str, Any] = {}
    for item in overrides:
        name, _, text = item.partition("=")
        domain = space.get(name)
        if domain is None:
            continue
        if isinstance(domain, Choice):
            out[name] = next((v for v in domain.values if as_text(v) == text), text)
        elif isinstance(domain, FloatRange):
            out[name] = float(text)
        else:
            out[name] = int(text)
    return out


def base_overrides(overrides: Sequence[str], space: Mapping[str, Domain]) -> str:
    """``overrides`` without the searched fields, in the one sorted form."""
    return str(Overrides.parse(list(overrides)).without_fields(tuple(space)))


def collect_studies(root: Path) -> list[StudyResult]:
    """Every study whose records lie under ``root/runs/<task>/``, with the default arm of
    each from the same folder; records that cannot be read are left out (``cirbench check``
    and ``report`` name them)."""
    runs = root / "runs"
    by_study: dict[str, list[Mapping[str, Any]]] = {}
    plain: list[Mapping[str, Any]] = []
    for path in sorted(runs.glob("*/*.json")) if runs.is_dir() else []:
        record, _ = load_record(path)
        if record is None:
            continue
        origin = record.get("origin")
        if isinstance(origin, Mapping) and "study" in origin:
            by_study.setdefault(str(origin["study"]), []).append(record)
        elif record.get("split", "test") == "test":
            plain.append(record)
    return [_study(name, recs, plain) for name, recs in sorted(by_study.items())]


def _study(
    name: str, records: Sequence[Mapping[str, Any]], plain: Sequence[Mapping[str, Any]]
) -> StudyResult:
    first = records[0]
    origin = first["origin"]
    metric = str(origin.get("metric", ""))
    if not metric:
        raise CirbenchError(f"study {name}: its records do not name the tuned metric")
    space = space_from_json(origin.get("space") or {})
    trials, tests = [], []
    for r in records:
        if r.get("split") == "val":
            value = r["metrics"].get(metric)
            trials.append(
                Trial(
                    int(r["origin"]["trial"]),
                    _params(r["overrides"], space),
                    None if value is None else float(value),
                )
            )
        else:
            tests.append(r)
    trials.sort(key=lambda t: t.number)
    base = base_overrides(tests[0]["overrides"] if tests else first["overrides"], space)
    task, method, profile = first["task"], first["method"], first["profile"]
    tuned = Arm(
        str(Overrides.parse(list(tests[0]["overrides"]))) if tests else "",
        {int(r["seed"]): float(r["metrics"][metric]) for r in tests if metric in r["metrics"]},
    )
    defaults = [
        r
        for r in plain
        if (r["task"], r["method"], r["profile"]) == (task, method, profile)
        and str(Overrides.parse(list(r["overrides"]))) == base
        and metric in r["metrics"]
    ]
    default = Arm(base, {int(r["seed"]): float(r["metrics"][metric]) for r in defaults})
    best = int(tests[0]["origin"]["trial"]) if tests else _best_number(trials, origin)
    best_params = next((t.params for t in trials if t.number == best), {})
    return StudyResult(
        task=task,
        method=method,
        profile=profile,
        study=name,
        metric=metric,
        direction=str(origin.get("direction", "maximize")),
        budget=int(origin.get("budget", len(trials))),
        sampler=str(origin.get("sampler", "")),
        space=space,
        base=base,
        trials=tuple(trials),
        best_trial=best,
        best_params=best_params,
        tuned=tuned,
        default=default,
        pruned=int(tests[0]["origin"].get("pruned", 0)) if tests else 0,
    )


def _best_number(trials: Sequence[Trial], origin: Mapping[str, Any]) -> int | None:
    """The best finished trial while no test record names it yet (the study still runs)."""
    finished = [t for t in trials if t.value is not None]
    if not finished:
        return None
    sign = -1.0 if origin.get("direction") == "minimize" else 1.0
    return max(finished, key=lambda t: (sign * (t.value or 0.0), -t.number)).number


def welch(a: Arm, b: Arm) -> float | None:
    """Two-sided p of Welch's t-test between two arms (:func:`tables.welch_p`)."""
    return welch_p(list(a.values.values()), list(b.values.values()))


# --- text -------------------------------------------------------------------------------------


def _pct(arm: Arm, style: Style) -> str:
    """Mean ± std over seeds in percent, as every cirbench table writes it."""
    return mean_std_text(percent(arm.mean()), percent(arm.std()), arm.n, style)


def _p(p: float | None, style: Style) -> str:
    if p is None:
        return style.dash
    text = f"{p:.3f}" if p >= 0.001 else style.text("<0.001")
    return text + (style.star if p < ALPHA else "")


def _diff(a: Arm, b: Arm, style: Style) -> str:
    ma, mb = a.mean(), b.mean()
    return style.dash if ma is None or mb is None else style.signed(100 * (ma - mb))


def _config(study: StudyResult, style: Style) -> str:
    if not study.best_params:
        return style.dash
    items = []
    for name, value in study.best_params.items():
        shown = f"{value:.3g}" if isinstance(value, float) else as_text(value)
        items.append(f"{name}={shown}")
    return style.code(" ".join(items)) if style.name == "md" else style.text(" ".join(items))


def method_rows(studies: Sequence[StudyResult], style: Style) -> list[list[str]]:
    rows = []
    for s in studies:
        val = s.best_val
        rows.append(
            [
                style.code(s.method),
                f"{len(s.trials)}/{s.budget}" + (f" +{s.pruned} pruned" if s.pruned else ""),
                style.dash if val is None else f"{100 * val:.2f}",
                _pct(s.tuned, style) + style.post(f" ({s.tuned.n})"),
                _pct(s.default, style) + style.post(f" ({s.default.n})")
                if s.default.n
                else style.dash,
                _diff(s.tuned, s.default, style),
                _p(welch(s.tuned, s.default), style),
            ]
        )
    return rows


def pair_rows(studies: Sequence[StudyResult], style: Style) -> list[list[str]]:
    """Welch between every two tuned methods: ``A - B`` in points and p."""
    return [
        [
            style.code(a.method),
            style.code(b.method),
            _diff(a.tuned, b.tuned, style),
            _p(welch(a.tuned, b.tuned), style),
        ]
        for a, b in itertools.combinations(studies, 2)
    ]


METHOD_HEADER = ("method", "trials", "best val", "tuned (n)", "default (n)", "Δ", "Welch p")
PAIR_HEADER = ("A", "B", "A - B", "Welch p")


def _md(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join([*lines, *("| " + " | ".join(r) + " |" for r in rows)])


def _caption(task: str, studies: Sequence[StudyResult]) -> str:
    s = studies[0]
    seeds = sorted({seed for x in studies for seed in x.tuned.values})
    return (
        f"{task}: {metric_label(s.metric)}, tuned on the validation split ({s.sampler}, "
        f"{s.budget} trials per method, profile {s.profile}"
        + (f", shared overrides {s.base}" if s.base else "")
        + "), then the best configuration on the test split, seeds "
        + (",".join(map(str, seeds)) or "none yet")
        + "; default = the same method and overrides, untuned; n = seeds"
    )


def tuned_markdown(task: str, studies: Sequence[StudyResult]) -> str:
    """The Markdown of one task's tuned-vs-default section."""
    configs = [f"- `{s.method}`: {_config(s, MARKDOWN)} (trial {s.best_trial})" for s in studies]
    return "\n".join(
        [
            _caption(task, studies) + ".",
            "",
            _md(METHOD_HEADER, method_rows(studies, MARKDOWN)),
            "",
            f"Equal budget, tuned methods pairwise (Welch's t-test; {MARKDOWN.star}: p < {ALPHA}):",
            "",
            _md(PAIR_HEADER, pair_rows(studies, MARKDOWN)),
            "",
            "Best configurations:",
            "",
            *configs,
        ]
    )


def _method_columns(studies: Sequence[StudyResult]) -> list[str]:
    """Trials (text), best val, tuned, default, difference (siunitx ``S``), p (text)."""
    best = [(None if s.best_val is None else 100 * s.best_val, None) for s in studies]

    def arm(a: Arm) -> tuple[float | None, float | None]:
        mean, std = a.mean(), a.std()
        return (None if mean is None else 100 * mean, None if std is None else 100 * std)

    posts = [f" ({a.n})" for s in studies for a in (s.tuned, s.default)]
    diffs = []
    for s in studies:
        t, d = s.tuned.mean(), s.default.mean()
        diffs.append((None if t is None or d is None else 100 * (t - d), None))
    return [
        "r",
        si_column(best),
        si_column([arm(s.tuned) for s in studies], posts),
        si_column([arm(s.default) for s in studies], posts),
        si_column(diffs, signed=True),
        "r",
    ]


def _fitted(body: str) -> list[str]:
    """A tabular scaled down to the line width only when it is wider (never up)."""
    return [r"\sbox0{%", body + "}", r"\noindent" + FIT_WIDTH, r"\par\medskip"]


def tuned_latex(task: str, studies: Sequence[StudyResult]) -> str:
    """Two booktabs tables (methods, pairs; numbers decimal-aligned by siunitx) and the best
    configurations, as one LaTeX file; needs booktabs, siunitx and graphicx."""

    def head(cells: Sequence[str], numeric: Sequence[int]) -> list[str]:
        texts = [LATEX.text(c).replace("Δ", LATEX.delta) for c in cells]
        texts = [f"{{{t}}}" if i in numeric else t for i, t in enumerate(texts)]
        return [" & ".join(texts) + r" \\"]

    configs = [rf"\item \texttt{{{LATEX.text(s.method)}}}: {_config(s, LATEX)}" for s in studies]
    methods = latex_tabular(
        head(METHOD_HEADER, (2, 3, 4, 5)), method_rows(studies, SI), _method_columns(studies)
    )
    diffs = [(100 * (a.tuned.mean() or 0.0) - 100 * (b.tuned.mean() or 0.0), None)
             for a, b in itertools.combinations(studies, 2)]  # fmt: skip
    pairs = latex_tabular(
        head(PAIR_HEADER, (2,)),
        pair_rows(studies, SI),
        [si_column(diffs, signed=True), "r"],
        labels=2,
    )
    return "\n".join(
        [
            f"% {LATEX.text(_caption(task, studies))}",
            r"% Needs \usepackage{booktabs}, \usepackage{siunitx} and \usepackage{graphicx}",
            r"{\small",
            SISETUP,
            *_fitted(methods),
            *_fitted(pairs),
            r"}",
            r"\begin{itemize}\raggedright",
            *configs,
            r"\end{itemize}",
            "",
        ]
    )


CSV_HEADER = (
    "task", "method", "metric", "trials", "pruned", "budget", "best_trial", "best_val",
    "tuned_mean", "tuned_std", "tuned_n", "default_mean", "default_std", "default_n",
    "welch_p", "best_config",
)  # fmt: skip


def _csv_cell(value: object) -> object:
    return "" if value is None else repr(value) if isinstance(value, float) else value


def tuned_csv(studies: Sequence[StudyResult]) -> str:
    """One row per study, fractions as recorded (not percent), empty cells for unknowns."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for s in studies:
        cells = [
            s.task, s.method, s.metric, len(s.trials), s.pruned, s.budget, s.best_trial,
            s.best_val, s.tuned.mean(), s.tuned.std(), s.tuned.n, s.default.mean(),
            s.default.std(), s.default.n, welch(s.tuned, s.default),
            " ".join(f"{k}={as_text(v)}" for k, v in s.best_params.items()),
        ]  # fmt: skip
        writer.writerow([_csv_cell(c) for c in cells])
    return buffer.getvalue()


# --- plots ------------------------------------------------------------------------------------


def optuna_study(study: StudyResult) -> Any:
    """An in-memory Optuna study holding the study's trials (with the space's distributions),
    values in percent."""
    lib = load_optuna()
    dist = {name: _distribution(lib, d) for name, d in study.space.items()}
    out = lib.create_study(study_name=study.method, direction=study.direction)
    for t in study.trials:
        if t.value is None:
            continue
        params = {k: v for k, v in t.params.items() if k in dist}
        out.add_trial(
            lib.trial.create_trial(
                params=params,
                distributions={k: dist[k] for k in params},
                value=100.0 * t.value,  # in %, as the plots' labels say
            )
        )
    return out


def _distribution(lib: Any, domain: Domain) -> Any:
    d = lib.distributions
    if isinstance(domain, Choice):
        return d.CategoricalDistribution(list(domain.values))
    if isinstance(domain, FloatRange):
        return d.FloatDistribution(domain.low, domain.high, log=domain.log)
    return d.IntDistribution(domain.low, domain.high, log=domain.log)


def _saved(ax: Axes, title: str, size: tuple[float, float], stem: Path) -> list[Path]:
    """Save the figure Optuna drew ``ax`` on, at ``size`` inches, then close it (Optuna draws
    through pyplot, whose figures stay open until closed)."""
    fig = ax.get_figure(root=True)
    assert isinstance(fig, Figure)
    ax.set_title(title)
    for loc in ("left", "right"):  # Optuna's own titles (one of them left-aligned)
        ax.set_title("", loc=loc)
    fig.set_size_inches(*size)
    fig.tight_layout()
    try:
        return save(fig, stem)
    finally:
        plt.close(fig)


def plot_studies(task: str, studies: Sequence[StudyResult], folder: Path) -> list[Path]:
    """``<task>_tuned_history`` (all methods) and ``<task>_tuned_importance_<method>`` (one per
    method with at least two searched dimensions and two finished trials)."""
    lib = load_optuna()
    built = [(s, optuna_study(s)) for s in studies]
    label = f"{metric_label(studies[0].metric)} (validation)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib backend experimental
        draw = lib.visualization.matplotlib
        ax = draw.plot_optimization_history([o for _, o in built], target_name=label)
        title = f"{task}: optimisation history ({studies[0].sampler})"
        written = _saved(ax, title, (9, 4.5), folder / f"{task}_tuned_history")
        for s, o in built:
            finished = [t for t in s.trials if t.value is not None]
            if len(s.space) < 2 or len(finished) < 2:
                continue
            evaluator = lib.importance.FanovaImportanceEvaluator(seed=0)
            ax = draw.plot_param_importances(o, evaluator=evaluator, target_name=label)
            title = f"{task} {s.method}: parameter importance (fANOVA)"
            stem = folder / f"{task}_tuned_importance_{s.method.replace('+', '_')}"
            written += _saved(ax, title, (7, 3.5), stem)
    return written


def by_task(studies: Sequence[StudyResult]) -> dict[str, list[StudyResult]]:
    """Studies per task, tasks sorted, methods in the task's default order (then by name)."""
    out: dict[str, list[StudyResult]] = {}
    for s in sorted(studies, key=lambda s: (s.task, _method_rank(s.task, s.method), s.study)):
        out.setdefault(s.task, []).append(s)
    return out


def _method_rank(task: str, method: str) -> tuple[int, str]:
    known = TASKS.get(task)().default_methods if task in TASKS else ()
    return (known.index(method) if method in known else len(known), method)
