"""One schema check (cirbench.results.record_problem) guards table, report, check and sweeps: an
odd but valid JSON record is named and skipped, never crashes a command, never counts."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from fixture_records import record, write, write_digits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cirbench.check import check_baseline, update_baseline
from cirbench.cli import main
from cirbench.reporting import collect_records, format_table
from cirbench.results import record_problem

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)


def good() -> dict[str, Any]:
    return record("digits", "ce", 0, {"top1": 0.9, "mAP": 0.8})


FIELDS = tuple(good())  # every field of a valid record gets arbitrary JSON in turn


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(field=st.sampled_from(FIELDS), value=JSON, metric=JSON)
def test_any_field_value_is_usable_or_skipped_and_nothing_crashes(
    tmp_path: Path, field: str, value: Any, metric: Any
) -> None:
    root = tmp_path / uuid.uuid4().hex
    rec = good()
    rec[field] = value
    rec_metric = good()
    rec_metric["seed"] = 1
    rec_metric["metrics"] = {"top1": metric}
    for i, r in enumerate((rec, rec_metric)):
        path = root / "runs" / "digits" / f"r{i}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(r))
    found = collect_records(root)
    assert len(found.records) + len(found.skipped) == 2
    for path, why in found.skipped:
        assert why and path.endswith(".json")
    for r in found.records.values():
        assert record_problem(r) is None
    if not found.df.empty:
        format_table(found.df, "md")
        update_baseline(found, root / "baselines", found.tasks)
        check_baseline(found, root / "baselines", found.tasks)


ODD: dict[str, Any] = {
    "huge metric": {"metrics": {"top1": 10**400}},
    "inf metric": {"metrics": {"top1": float("inf")}},
    "nan metric": {"metrics": {"top1": float("nan")}},
    "overrides a number": {"overrides": 3},
    "provenance a string": {"provenance": "x"},
    "profile a list": {"profile": ["a"]},
    "bad history row": {"history": [{"epoch": "one"}]},
    "metric named method": {"metrics": {"method": 0.5}},
    "seed out of numpy's range": {"seed": 2**40},
}


@pytest.mark.parametrize("change", list(ODD), ids=list(ODD))
def test_each_odd_record_is_named_by_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: str
) -> None:
    root = tmp_path / "root"
    write_digits(root)
    rec = {**record("digits", "ls", 7, {"top1": 0.5}), **ODD[change]}
    path = root / "runs" / "digits" / "odd.json"
    path.write_text(json.dumps(rec))
    assert main(["table", "digits", "--runs", str(root)]) == 0
    assert main(["check", "--runs", str(root), "--baselines", str(tmp_path / "b"), "--update"]) == 0
    assert main(["check", "--runs", str(root), "--baselines", str(tmp_path / "b")]) == 1
    assert main(["report", "--runs", str(root), "--out", str(tmp_path / "r"), "--no-plots"]) == 0
    err = capsys.readouterr().err
    assert "odd.json" in err and "Traceback" not in err


def test_deeply_nested_json_is_skipped(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root, good())
    (root / "runs" / "digits" / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    found = collect_records(root)
    assert len(found.records) == 1
    assert [Path(p).name for p, _ in found.skipped] == ["deep.json"]
