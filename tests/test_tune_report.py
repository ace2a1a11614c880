"""The report's tuned-vs-default section, on a real tiny study: ``cirbench tune`` and plain
``cirbench run`` records in one folder, read back by ``cirbench report --tuned``. Every number
of the section is recomputed here from the records themselves (scipy's Welch test, the best
trial by value), not from the module under test."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from scipy import stats

from cirbench.cli import main
from cirbench.reporting.tuned import (
    Arm,
    by_task,
    collect_studies,
    tuned_csv,
    tuned_markdown,
    welch,
)

pytest.importorskip("optuna")

METHODS = ("ce", "cir+ce")
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tuned")
    common = ["--method", ",".join(METHODS), "--profile", "smoke"]
    seeds = ["--seeds", ",".join(map(str, SEEDS)), "--out", str(out)]
    assert main(["tune", "digits", *common, "--trials", "3", *seeds]) == 0
    assert main(["run", "digits", *common, *seeds, "--logger", "none"]) == 0
    return out


def records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((out / "runs").glob("digits/*.json"))]


def test_studies_are_rebuilt_from_records(folder: Path) -> None:
    recs = records(folder)
    studies = {s.method: s for s in collect_studies(folder)}
    assert sorted(studies) == sorted(METHODS)
    for method, s in studies.items():
        val = [r for r in recs if r["method"] == method and r["split"] == "val"]
        test = [
            r for r in recs if r["method"] == method and r.get("origin") and r["split"] == "test"
        ]
        plain = [r for r in recs if r["method"] == method and not r.get("origin")]
        assert [t.number for t in s.trials] == sorted(r["origin"]["trial"] for r in val)
        assert (len(s.trials), s.budget, s.metric) == (3, 3, "top1")
        best = max(val, key=lambda r: r["metrics"]["top1"])
        assert s.best_val == best["metrics"]["top1"]
        assert s.best_trial == test[0]["origin"]["trial"]
        assert dict(s.tuned.values) == {r["seed"]: r["metrics"]["top1"] for r in test}
        assert dict(s.default.values) == {r["seed"]: r["metrics"]["top1"] for r in plain}
        # the searched fields are typed as the space's (floats for train.lr)
        assert all(isinstance(t.params["train.lr"], float) for t in s.trials)
        assert s.base == ""  # no overrides shared by every trial


def test_table_numbers_match_scipy_on_the_records(folder: Path) -> None:
    studies = by_task(collect_studies(folder))["digits"]
    text = tuned_markdown("digits", studies)
    recs = records(folder)

    def values(method: str, tuned: bool) -> list[float]:
        return [
            r["metrics"]["top1"]
            for r in recs
            if r["method"] == method and r["split"] == "test" and bool(r.get("origin")) == tuned
        ]

    def shown(p: float) -> str:
        return (f"{p:.3f}" if p >= 0.001 else "<0.001") + ("\\*" if p < 0.05 else "")

    lines = text.splitlines()
    for method in METHODS:
        p = stats.ttest_ind(values(method, True), values(method, False), equal_var=False).pvalue
        row = next(line for line in lines if line.startswith(f"| `{method}` |"))
        assert row.split(" | ")[1] == "3/3"
        assert row.endswith(f" | {shown(p)} |"), (row, p)
    p_pair = stats.ttest_ind(values("ce", True), values("cir+ce", True), equal_var=False).pvalue
    pair = next(line for line in lines if line.startswith("| `ce` | `cir+ce` |"))
    assert pair.endswith(f" | {shown(p_pair)} |"), (pair, p_pair)
    csv = tuned_csv(studies).splitlines()
    assert csv[0].startswith("task,method,metric,trials,pruned,budget") and len(csv) == 3


def test_report_writes_section_tables_and_optuna_plots(folder: Path) -> None:
    out = folder / "report"
    args = ["report", "--runs", str(folder), "--out", str(out), "--readme", "none"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main([*args, "--tuned", str(folder)]) == 0
    # long tuned labels once collapsed the curves' axes; constant arms made scipy warn
    assert not [w for w in caught if "constrained_layout" in str(w.message)]
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
    report = (out / "REPORT.md").read_text()
    assert "## Tuned vs default (equal budget)" in report
    assert "![digits: optimisation history](plots/digits_tuned_history.png)" in report
    for suffix in ("md", "tex", "csv"):
        assert (out / "tables" / f"digits_tuned.{suffix}").stat().st_size > 100
    tex = (out / "tables" / "digits_tuned.tex").read_text()
    assert r"\begin{tabular}{lrS[table-format=" in tex and r"\begin{tabular}{llS[" in tex
    assert (out / "plots" / "digits_tuned_history.png").stat().st_size > 1000
    # importance needs two searched dimensions: cir+ce has five, ce only train.lr
    assert (out / "plots" / "digits_tuned_importance_cir_ce.pdf").is_file()
    assert not (out / "plots" / "digits_tuned_importance_ce.png").exists()
    assert main([*args, "--tuned", "none", "--no-plots"]) == 0
    assert "Tuned vs default" not in (out / "REPORT.md").read_text()


def test_welch_is_undefined_for_two_constant_arms() -> None:
    flat, other = Arm("", {0: 0.9, 1: 0.9}), Arm("", {0: 0.8, 1: 0.8})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert welch(flat, other) is None
        # one constant arm: t is defined (that arm's variance is 0) and no warning is shown
        varied = Arm("", {0: 0.8, 1: 0.85, 2: 0.81})
        assert welch(Arm("", {0: 0.96111, 1: 0.96111}), varied) is not None
    with warnings.catch_warnings():  # scipy's own cancellation warning for the constant arm
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = stats.ttest_ind([0.9, 0.9], [0.8, 0.85, 0.81], equal_var=False).pvalue
    assert welch(flat, varied) == pytest.approx(expected)
