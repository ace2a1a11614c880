from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from fixture_records import DIGITS, record, write, write_digits, write_reported
from scipy import stats

from cirbench.cli import main
from cirbench.errors import CirbenchError
from cirbench.reported import Reported, load_reported
from cirbench.reporting import (
    STATUS_BEGIN,
    STATUS_END,
    TaskTable,
    build_task_table,
    collect_records,
    csv_table,
    latex_table,
    markdown_table,
    statuses,
    task_table,
)
from cirbench.reporting.status import replace_status
from cirbench.reporting.tables import NA_UNREADABLE, NA_UNREPORTED, PAIRED, WELCH, baseline_of

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("CIRBENCH_UPDATE_GOLDEN") == "1"


@pytest.fixture()
def fixture_root(tmp_path: Path) -> Path:
    write_digits(tmp_path)
    return tmp_path


@pytest.fixture()
def reported(tmp_path: Path) -> Reported:
    return load_reported(write_reported(tmp_path))


@pytest.fixture()
def table(fixture_root: Path, reported: Reported) -> TaskTable:
    return task_table("digits", collect_records(fixture_root), reported)


def rows(table: TaskTable) -> dict[str, dict[str, object]]:
    return {r.method: dict(r.cells) for r in table.rows}


def test_baseline_of_a_row_is_the_spec_without_cir() -> None:
    assert baseline_of("cir+triplet") == "triplet"
    assert baseline_of("cir+ls+triplet") == "ls+triplet"
    assert baseline_of("triplet") is None
    assert baseline_of("cir") is None


def test_table_numbers_equal_a_hand_computation(table: TaskTable) -> None:
    assert [r.method for r in table.rows] == ["ce", "cir+ce", "triplet", "cir+triplet"]
    assert table.metrics == ("top1", "recall@1", "mAP")
    ce = {r.method: r for r in table.rows}["ce"].cells
    # top1 0.90, 0.92, 0.94 -> 92 +/- 2 (sample std); reported 91.0 -> +1.00
    assert ce["top1"].mean == pytest.approx(92.0)
    assert ce["top1"].std == pytest.approx(2.0)
    assert ce["top1"].n == 3
    assert ce["top1"].diff == pytest.approx(1.0)
    assert ce["mAP"].diff == pytest.approx(2.0)
    assert ce["recall@1"].reported is None and ce["recall@1"].na_reason == NA_UNREPORTED
    cir = {r.method: r for r in table.rows}["cir+ce"].cells
    assert cir["top1"].mean == pytest.approx(98.5)
    assert cir["top1"].std == pytest.approx(0.5)
    assert cir["top1"].na_reason == NA_UNREADABLE and cir["top1"].diff is None
    trip = {r.method: r for r in table.rows}["triplet"].cells
    assert trip["top1"].mean is None and trip["top1"].n == 0


def test_best_per_column_is_bold_ties_included(table: TaskTable) -> None:
    best = {m: sorted(r.method for r in table.rows if r.cells[m].best) for m in table.metrics}
    assert best == {
        "top1": ["cir+ce"],
        "recall@1": ["cir+triplet", "triplet"],  # both 98.00
        "mAP": ["cir+triplet"],
    }
    md = markdown_table(table)
    assert "**98.50 ± 0.50**" in md and "**98.00 ± 1.00**" in md


def test_significance_marker_only_where_welch_says_so(table: TaskTable) -> None:
    by = {r.method: r for r in table.rows}
    assert by["cir+ce"].baseline == "ce" and by["cir+ce"].tests == [WELCH]
    assert by["ce"].baseline is None and by["ce"].tests == []
    for method, base in (("cir+ce", "ce"), ("cir+triplet", "triplet")):
        for metric in ("recall@1", "mAP", *(("top1",) if base == "ce" else ())):
            p = stats.ttest_ind(
                DIGITS[method][metric], DIGITS[base][metric], equal_var=False
            ).pvalue
            cell = by[method].cells[metric]
            assert cell.p_value == pytest.approx(p)
            assert cell.significant == (p < 0.05)
    assert by["cir+ce"].cells["top1"].significant  # p ~ 0.03
    assert not by["cir+ce"].cells["recall@1"].significant
    md = markdown_table(table)
    assert md.count("\\*") == 1 + 1  # one marked cell + the footnote
    assert "**98.50 ± 0.50**\\*" in md


def test_no_marker_with_a_single_seed(fixture_root: Path, reported: Reported) -> None:
    records = collect_records(fixture_root)
    df = records.df[records.df["seed"] == 0]
    t = build_task_table("digits", df, reported)
    assert all(c.p_value is None and not c.significant for r in t.rows for c in r.cells.values())


def fewshot(tmp_path: Path, shift: float, base_seed: int = 7) -> TaskTable:
    rng = np.random.default_rng(0)
    episodes = rng.uniform(0.3, 0.9, size=50)
    for method, offset, ep_seed in (("proto", 0.0, 7), ("cir+proto", shift, base_seed)):
        for seed in range(2):
            acc = episodes + offset + rng.normal(0, 0.002, size=50)
            details = {
                "episode_seed": ep_seed,
                "n_episodes": 50,
                "episodes": {"acc_5w1s": list(acc)},
            }
            metrics = {"acc_5w1s": float(acc.mean()), "acc_5w1s_ci95": 0.01 + 0.001 * seed}
            rec = record("omniglot", method, seed, metrics, details=details)
            write(tmp_path, rec)
    records = collect_records(tmp_path)
    return task_table("omniglot", records, Reported({}, ()))


def test_fewshot_rows_on_shared_episodes_use_a_paired_test(tmp_path: Path) -> None:
    t = fewshot(tmp_path, shift=0.01)
    row = {r.method: r for r in t.rows}["cir+proto"]
    assert row.tests == [PAIRED] and row.baseline == "proto"
    recs = collect_records(tmp_path).records.values()

    def mean_episodes(method: str) -> np.ndarray:
        eps = [r["details"]["episodes"]["acc_5w1s"] for r in recs if r["method"] == method]
        return np.mean(eps, axis=0)

    p = stats.ttest_rel(mean_episodes("cir+proto"), mean_episodes("proto")).pvalue
    assert row.cells["acc_5w1s"].p_value == pytest.approx(p)
    assert row.cells["acc_5w1s"].significant  # +1 point on every episode: paired test sees it


def test_fewshot_rows_on_different_episodes_fall_back_to_welch(tmp_path: Path) -> None:
    t = fewshot(tmp_path, shift=0.01, base_seed=8)
    row = {r.method: r for r in t.rows}["cir+proto"]
    assert row.tests == [WELCH]


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.read_text() == text, f"{name} changed; CIRBENCH_UPDATE_GOLDEN=1 regenerates it"


def test_markdown_golden(table: TaskTable) -> None:
    check_golden("report_digits.md", markdown_table(table))


def test_latex_golden_and_structure(table: TaskTable) -> None:
    tex = latex_table(table)
    check_golden("report_digits.tex", tex)
    # three metrics of three columns: split into tabulars of two and one metric, never shrunk
    assert tex.count(r"\toprule") == tex.count(r"\midrule") == tex.count(r"\bottomrule") == 2
    # decimal-aligned siunitx columns sized to their numbers: ours (mean ± std, room for the
    # significance mark), reported, difference (explicit sign)
    ours = "S[table-format=2.2(3), table-space-text-post={$^{*}$}]"
    assert rf"\begin{{tabular}}{{lr{ours}S[table-format=2.2]S[table-format=+1.2]" in tex
    assert tex.count(r"\begin{tabular}{lrS[") == 2
    for block, metrics in zip(tex.split(r"\midrule")[1:], (2, 1), strict=True):
        body = block.split(r"\bottomrule")[0]
        assert all(line.count("&") == 2 + 3 * metrics - 1 for line in body.strip().splitlines())
    assert r"\scriptsize" not in tex
    assert r"\bfseries 98.50 \pm 0.50{$^{*}$}" in tex and "& +1.00 &" in tex
    assert "{n/a$^{1}$}" in tex and "{n/a$^{2}$}" in tex and "{--}" in tex


@pytest.mark.parametrize(
    "tex",
    [
        GOLDEN / "report_digits.tex",
        *sorted((GOLDEN.parents[1] / "results" / "tables").glob("*.tex")),
    ],
    ids=lambda p: p.name,
)
def test_latex_tables_compile(tmp_path: Path, tex: Path) -> None:
    missing = (
        shutil.which("pdflatex") is None
        or not subprocess.run(
            ["kpsewhich", "siunitx.sty"], capture_output=True, text=True, check=False
        ).stdout.strip()
    )
    if missing:
        pytest.skip(
            "pdflatex or siunitx not installed (apt-get install texlive-latex-base "
            "texlive-latex-recommended texlive-science)"
        )
    doc = tmp_path / "doc.tex"
    doc.write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage{siunitx}\n"
        "\\usepackage{graphicx}\n"
        f"\\begin{{document}}\n\\input{{{tex}}}\n\\end{{document}}\n"
    )
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    assert "Overfull \\hbox" not in (tmp_path / "doc.log").read_text()
    assert (tmp_path / "doc.pdf").stat().st_size > 1000


def test_csv_is_tidy_with_empty_unknowns(table: TaskTable) -> None:
    import io

    import pandas as pd

    df = pd.read_csv(io.StringIO(csv_table(table)))
    assert len(df) == 4 * 3
    ce = df[(df["method"] == "ce") & (df["metric"] == "top1")].iloc[0]
    assert (ce["mean"], ce["std"], ce["reported"], ce["diff"]) == (92, 2, 91, 1)
    assert pd.isna(df[(df["method"] == "ce") & (df["metric"] == "recall@1")].iloc[0]["reported"])


def test_statuses_per_reported_entry(fixture_root: Path, reported: Reported) -> None:
    items = {
        (s.entry.method, s.entry.metric): s
        for s in statuses(reported, collect_records(fixture_root).df)
    }
    assert items[("ce", "top1")].status == "reproduced"  # 92 vs 91 +/- 1.5
    assert items[("ce", "mAP")].status == "outside tolerance"  # 82 vs 80 +/- 1
    assert items[("cir+ce", "top1")].status == "n/a"  # value not readable
    assert items[(None, "top1")].status == "n/a"  # not implemented
    assert items[("ce", "top1")].devices == ("cpu (x86_64, 2 threads)",)


def test_readme_status_section_is_the_only_change() -> None:
    readme = (
        f"# x\n\nintro\n\n## Reproduction status\n\n{STATUS_BEGIN}\nold\n{STATUS_END}\n\ntail\n"
    )
    new = replace_status(readme, f"{STATUS_BEGIN}\nnew\n{STATUS_END}")
    assert new == readme.replace("\nold\n", "\nnew\n")
    with pytest.raises(CirbenchError, match="no <!-- status:begin -->"):
        replace_status("# no markers\n", "x")


def test_report_cli_writes_everything_and_skips_bad_files(
    fixture_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = fixture_root / "runs"
    (runs / "digits" / "corrupt.json").write_text('{"task": "digits", "metr')
    (runs / "digits" / "foreign.json").write_text(json.dumps({"hello": "world"}))
    (runs / "stray.json").write_text("[]")
    bad = record("digits", "ce", 9, {"top1": "high"})  # type: ignore[dict-item]
    write(fixture_root, bad)
    readme = tmp_path / "README.md"
    readme.write_text(f"# t\n\n## Reproduction status\n\n{STATUS_BEGIN}\n{STATUS_END}\n")
    reported_file = write_reported(tmp_path)
    args = ["report", "--out", str(fixture_root), "--readme", str(readme)]
    assert main([*args, "--reported", str(reported_file)]) == 0
    out, err = capsys.readouterr()
    for name in ("corrupt.json", "foreign.json", "stray.json", "ce__seed9__"):
        assert name in err
    assert "| `ce`          | 3   | 92.00 ± 2.00" in out  # the skipped ce seed 9 never counts
    for rel in (
        "REPORT.md",
        "tables/digits.tex",
        "tables/digits.csv",
        "tables/digits.md",
        "plots/digits_metrics.png",
        "plots/digits_metrics.pdf",
        "plots/digits_curves.png",
        "plots/digits_curves.pdf",
    ):
        assert (fixture_root / rel).stat().st_size > 0, rel
    report = (fixture_root / "REPORT.md").read_text()
    assert "## digits" in report and "plots/digits_metrics.png" in report
    text = readme.read_text()
    assert text.startswith("# t\n\n## Reproduction status\n\n<!-- status:begin -->\n")
    assert "| reproduced " in text and "outside tolerance" in text


def test_report_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_digits(tmp_path)
    assert main(["report", "market1501", "--out", str(tmp_path), "--no-plots"]) == 2
    assert "no result records for 'market1501'" in capsys.readouterr().err
    assert main(["report", "digitz", "--out", str(tmp_path), "--no-plots"]) == 2
    assert "Did you mean 'digits'" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", "--out", str(empty), "--no-plots"]) == 2
    assert "no result records under" in capsys.readouterr().err


def test_ci95_widths_get_one_column_and_no_test(tmp_path: Path) -> None:
    t = fewshot(tmp_path, shift=0.01)
    cell = {r.method: r for r in t.rows}["cir+proto"].cells["acc_5w1s_ci95"]
    assert cell.test is None and cell.p_value is None and not cell.best
    md = markdown_table(t)
    assert "acc_5w1s_ci95 ours" in md and "acc_5w1s_ci95 reported" not in md
    assert r"\multicolumn{1}{c}{acc\_5w1s\_ci95}" in latex_table(t)


def test_rows_without_the_reference_weights_are_not_comparable() -> None:
    """market1501's paper profile starts from resnet50-tv: a record from scratch does not count
    (status n/a, named), one with the weights counts, even when they came from a local copy
    given with --set train.pretrained (identified by digest); the weights show by the backbone."""
    from cirbench.results import records_frame

    def market(seed: int, weights: dict[str, str] | None, overrides: list[str]) -> dict:
        rec = record("market1501", "ls+triplet", seed, {"recall@1": 0.94, "mAP": 0.857}, "paper")
        return {**rec, "weights": weights, "overrides": overrides}

    tv = {"name": "resnet50-tv", "file": "resnet50-19c8e357.pth", "sha256": "19c8e357" + "0" * 56}
    scratch = records_frame([(Path("a.json"), market(0, None, []))])
    items = statuses(load_reported(), scratch)
    bot = [s for s in items if s.entry.method == "ls+triplet" and s.entry.task == "market1501"]
    assert bot and all(s.status == "n/a" and s.mean is None for s in bot)
    assert all(
        "not comparable: trained without the reference weights resnet50-tv" in s.reason for s in bot
    )
    mixed = records_frame(
        [
            (Path("a.json"), market(0, None, [])),
            (Path("b.json"), market(1, tv, ["train.pretrained=/copies/r50.pth"])),
            (Path("c.json"), market(2, tv, ["train.epochs=3"])),  # another --set: never counts
        ]
    )
    bot = [s for s in statuses(load_reported(), mixed) if s.entry.method == "ls+triplet"]
    assert {(s.status, s.n, s.weights) for s in bot} == {
        ("reproduced", 1, ("resnet50-tv (19c8e357)",))
    }
    digits = [s for s in statuses(load_reported(), mixed) if s.entry.task == "digits"]
    assert all("not comparable" not in s.reason for s in digits)


def test_a_reported_row_is_compared_only_with_runs_of_its_backbone() -> None:
    """cifar10's paper profile trains a ResNet-18; Muller et al. report AlexNet: the status says
    why it is not comparable, and the table shows n/a with the reason instead of a difference."""
    from cirbench.results import records_frame

    def cifar(seed: int, backbone: str | None) -> dict:
        rec = record("cifar10", "ce", seed, {"top1": 0.95, "error": 0.05}, "paper")
        return {**rec, "backbone": backbone} if backbone else rec

    resnet = records_frame([(Path(f"{s}.json"), cifar(s, "resnet18")) for s in range(2)])
    (ce,) = [
        s
        for s in statuses(load_reported(), resnet)
        if s.entry.task == "cifar10" and s.n == 0
        if s.entry.method == "ce"
    ]
    assert ce.status == "n/a" and "ours trains resnet18, the paper alexnet" in ce.reason
    table = build_task_table("cifar10", resnet.assign(path=["0", "1"]), load_reported())
    cell = table.rows[0].cells["top1"]
    assert cell.reported is None and cell.diff is None and cell.na_reason == 3
    assert "reported only for another backbone" in markdown_table(table)
    assert "n/a³" in markdown_table(table) and "alexnet" in markdown_table(table)
    # a record without the field (older than it) is compared as before
    old = records_frame([(Path(f"{s}.json"), cifar(s, None)) for s in range(2)])
    (ce_old,) = [s for s in statuses(load_reported(), old) if s.entry.method == "ce"
                 and s.entry.task == "cifar10"]  # fmt: skip
    assert ce_old.status in {"reproduced", "outside tolerance"} and ce_old.n == 2


def test_records_of_different_code_versions_are_flagged_not_silently_averaged() -> None:
    from cirbench.reporting import format_table
    from cirbench.results import records_frame

    def rec(seed: int, commit: str, dirty: bool = False) -> dict:
        r = record("digits", "ce", seed, {"top1": 0.9 + seed / 100})
        return {**r, "provenance": {**r["provenance"], "git": {"commit": commit, "dirty": dirty}}}

    same = records_frame([(Path(f"{s}.json"), rec(s, "a" * 40)) for s in range(2)])
    assert "†" not in format_table(same)
    mixed = records_frame(
        [(Path("0.json"), rec(0, "a" * 40)), (Path("1.json"), rec(1, "a" * 40, dirty=True))]
    )
    assert "ce †2" in format_table(mixed)
    table = build_task_table("digits", mixed, load_reported())
    assert "written by k different git commits" in markdown_table(table)


def test_plot_labels_and_intervals() -> None:
    from cirbench.reporting.plots import ci95, metric_label

    assert metric_label("acc_5w1s") == "5-way 1-shot accuracy (%)"
    assert metric_label("recall@10") == "rank-10 recall (CMC) (%)"
    assert metric_label("top1") == "top-1 accuracy (%)"
    assert metric_label("mAP_g50") == "mAP (gallery 50) (%)"
    assert metric_label("top1_gall") == "top-1 accuracy (full gallery) (%)"
    assert ci95(None, 3) == 0.0 and ci95(1.0, 1) == 0.0
    assert ci95(2.0, 3) == pytest.approx(stats.t.ppf(0.975, 2) * 2.0 / np.sqrt(3))


def test_intervals_and_axes_stop_at_100_percent(table: TaskTable) -> None:
    from dataclasses import replace

    from matplotlib.figure import Figure

    from cirbench.reporting.plots import _metric_panel, bounded

    assert bounded(99.0, 2.5) == [[2.5], [1.0]] and bounded(1.0, 2.5) == [[1.0], [2.5]]
    assert bounded(50.0, 2.5) == [[2.5], [2.5]]
    # every row 99.5 +/- a t interval of about 5 points: the axis still ends at 100
    rows = tuple(
        replace(r, cells={m: replace(c, mean=99.5, std=2.0, n=3) for m, c in r.cells.items()})
        for r in table.rows
    )
    ax = Figure().subplots()
    _metric_panel(ax, replace(table, rows=rows), "top1")
    assert 99.5 < ax.get_ylim()[1] <= 100.5
