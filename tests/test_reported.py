from __future__ import annotations

from pathlib import Path

import pytest

from cirbench.reported import ReportedError, load_reported
from cirbench.tasks import TASKS, task_metrics

PAPERS = """\
papers:
  p1: {title: "T", authors: "Doe, Roe", venue: "CVPR 2020", arxiv: "2001.00001"}
entries:
"""
GOOD = (
    '{paper: p1, where: "Table 1", task: market1501, protocol: sq, backbone: resnet50, '
    "label: BoT, method: ls+triplet, metric: mAP, value: 85.7, tolerance: 1.0}"
)


def write(tmp_path: Path, *entries: str, papers: str = PAPERS) -> Path:
    path = tmp_path / "reported.yaml"
    path.write_text(papers + "".join(f"  - {e}\n" for e in entries))
    return path


def test_the_shipped_file_loads_with_citations_and_percent_values() -> None:
    reported = load_reported()
    assert len(reported.entries) >= 30
    bot = reported.lookup("market1501", "ls+triplet", "mAP")
    assert [e.value for e in bot] == [85.7]
    assert bot[0].citation.startswith("Luo et al. (CVPR Workshops 2019), ablation table")
    proto = reported.lookup("tieredimagenet", "proto", "acc_5w1s")
    assert [(e.value, e.ci95, e.backbone) for e in proto] == [
        (61.74, 0.77, "resnet12"),
        (53.31, None, "conv4"),
    ]
    cir = [e for e in reported.entries if e.paper.key == "munjal2020"]
    assert cir and all(e.value is None for e in cir)


def test_entries_are_frozen() -> None:
    entry = load_reported().entries[0]
    with pytest.raises(AttributeError):
        entry.value = 1.0  # type: ignore[misc]


def test_a_good_minimal_file_loads(tmp_path: Path) -> None:
    (entry,) = load_reported(write(tmp_path, GOOD)).entries
    assert (entry.task, entry.metric, entry.value, entry.tolerance) == (
        "market1501",
        "mAP",
        85.7,
        1.0,
    )


def test_method_specs_are_canonicalized(tmp_path: Path) -> None:
    (entry,) = load_reported(write(tmp_path, GOOD.replace("ls+triplet", "triplet+ls"))).entries
    assert entry.method == "ls+triplet"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "task: market1501",
            "task: market1502",
            "unknown task 'market1502'. Did you mean 'market1501'",
        ),
        ("metric: mAP", "metric: map", "unknown metric 'map' for task 'market1501'; use one of"),
        ("paper: p1", "paper: p2", "missing citation: paper 'p2' is not under 'papers:'"),
        ('where: "Table 1"', 'where: ""', "missing citation: 'where' must name the table"),
        ("value: 85.7", "value: 185.7", "value 185.7 is outside [0, 100]; values are in percent"),
        ("value: 85.7", "value: -1", "value -1.0 is outside [0, 100]"),
        ("value: 85.7", "value: high", "value 'high' is not a number"),
        ("tolerance: 1.0", "tolerance: -0.5", "tolerance -0.5 must be in [0, 100]"),
        ("label: BoT,", "label: BoT, table: 3,", "unknown keys ['table']"),
        ("value: 85.7, ", "", "missing value (write null when unknown)"),
    ],
)
def test_validation_errors_name_the_entry_and_the_fix(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    assert old in GOOD
    with pytest.raises(ReportedError, match=None) as err:
        load_reported(write(tmp_path, GOOD.replace(old, new)))
    assert message in str(err.value)
    assert "entry 1" in str(err.value)


def test_ci95_out_of_range_and_duplicates_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ReportedError, match=r"ci95 101\.0 is outside"):
        load_reported(write(tmp_path, GOOD.replace("value: 85.7", "value: 85.7, ci95: 101")))
    with pytest.raises(ReportedError, match="duplicate entry p1/market1501/BoT/mAP"):
        load_reported(write(tmp_path, GOOD, GOOD))


def test_paper_without_citation_fields_is_an_error(tmp_path: Path) -> None:
    papers = 'papers:\n  p1: {title: "T", venue: "CVPR 2020"}\nentries:\n'
    with pytest.raises(ReportedError, match="missing citation field 'authors'"):
        load_reported(write(tmp_path, GOOD, papers=papers))


def test_unreadable_file_and_bad_yaml_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ReportedError, match="cannot read reported numbers"):
        load_reported(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("papers: [unclosed\n")
    with pytest.raises(ReportedError, match="not valid YAML"):
        load_reported(bad)


def test_a_registered_task_declares_its_metrics() -> None:
    assert TASKS.get("digits").metrics == ("top1", "recall@1", "mAP")
    assert task_metrics("digits") == TASKS.get("digits").metrics
    assert task_metrics("nosuchtask") is None
    assert all(TASKS.get(t).metrics for t in TASKS)  # every task declares its vocabulary


def test_declared_task_metrics_win_over_the_fallback_vocabulary(tmp_path: Path) -> None:
    entry = GOOD.replace("task: market1501", "task: digits").replace("metric: mAP", "metric: top5")
    with pytest.raises(ReportedError, match="use one of top1, recall@1, mAP"):
        load_reported(write(tmp_path, entry))
