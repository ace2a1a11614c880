"""Tests for typed ``--set section.field=value`` overrides."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import pytest

from cirbench.config import Overrides, apply_overrides, to_dict
from cirbench.errors import CirbenchError


@dataclass(frozen=True)
class ToyConfig:
    flag: bool = False
    count: int = 3
    rate: float = 0.5
    label: str = "x"
    mode: Literal["a", "b"] = "a"
    limit: float | None = 1.0
    steps: tuple[int, ...] = (10, 20)


@dataclass(frozen=True)
class CheckedConfig:
    lo: float = 0.0
    hi: float = 1.0

    def validate(self) -> None:
        if self.lo > self.hi:
            raise ValueError(f"lo must be <= hi, got {self.lo} > {self.hi}")


# --------------------------------------------------------------------------- Overrides


def test_parse_overrides_groups_by_section() -> None:
    out = Overrides.parse(["triplet.margin=0.5", "train.epochs=3", " triplet.weight = 2 "])
    assert out == {"triplet": {"margin": "0.5", "weight": "2"}, "train": {"epochs": "3"}}


def test_parse_overrides_empty_and_value_with_equals() -> None:
    assert Overrides.parse([]) == {}
    # only the first '=' splits; the rest belongs to the value
    assert Overrides.parse(["a.b=x=y"]) == {"a": {"b": "x=y"}}


@pytest.mark.parametrize("item", ["triplet.margin", "triplet.margin 0.5"])
def test_parse_overrides_missing_equals(item: str) -> None:
    with pytest.raises(CirbenchError, match=r"expected SECTION\.FIELD=VALUE"):
        Overrides.parse([item])


@pytest.mark.parametrize("item", ["margin=0.5", ".margin=0.5", "triplet.=0.5"])
def test_parse_overrides_missing_section_or_field(item: str) -> None:
    with pytest.raises(CirbenchError, match=r"expected SECTION\.FIELD=VALUE"):
        Overrides.parse([item])


def test_overrides_have_one_canonical_form() -> None:
    """Command-line order does not matter: records, sweeps and tables see one sorted form."""
    a = Overrides.parse(["train.epochs=3", "cir.p=0.2", "cir.target=mean"])
    b = Overrides.parse(["cir.target=mean", "cir.p=0.2", "train.epochs=3"])
    assert a.as_list() == b.as_list() == ["cir.p=0.2", "cir.target=mean", "train.epochs=3"]
    assert str(a) == "cir.p=0.2 cir.target=mean train.epochs=3" and hash(a) == hash(b)
    assert Overrides.parse(str(a).split()).as_list() == a.as_list()
    assert a.only({"train"}).as_list() == ["train.epochs=3"]
    assert str(a.without({"cir"})) == "train.epochs=3" and not Overrides.parse([])
    assert dict(a.section("absent")) == {}


def test_parse_overrides_duplicate_key() -> None:
    with pytest.raises(CirbenchError, match=r"triplet\.margin is given twice"):
        Overrides.parse(["triplet.margin=0.5", "triplet.margin=0.7"])
    # the same field name in two sections is fine
    assert Overrides.parse(["a.w=1", "b.w=2"]) == {"a": {"w": "1"}, "b": {"w": "2"}}


# --------------------------------------------------------------------------- apply_overrides


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("false", False), ("1", True), ("0", False), ("TRUE", True), ("no", False)],
)
def test_bool_conversion(raw: str, expected: bool) -> None:
    cfg = apply_overrides(ToyConfig(flag=not expected), {"flag": raw}, "toy")
    assert cfg.flag is expected


def test_typed_conversion_of_every_field_kind() -> None:
    cfg = apply_overrides(
        ToyConfig(),
        {
            "flag": "true",
            "count": "7",
            "rate": "0.25",
            "label": "hello",
            "mode": "b",
            "limit": "2.5",
            "steps": "40,70",
        },
        "toy",
    )
    assert cfg == ToyConfig(
        flag=True, count=7, rate=0.25, label="hello", mode="b", limit=2.5, steps=(40, 70)
    )
    assert type(cfg.count) is int
    assert type(cfg.rate) is float
    assert type(cfg.limit) is float
    assert all(type(s) is int for s in cfg.steps)


def test_optional_none_and_tuple_edge_cases() -> None:
    assert apply_overrides(ToyConfig(), {"limit": "none"}, "toy").limit is None
    assert apply_overrides(ToyConfig(), {"limit": "None"}, "toy").limit is None
    assert apply_overrides(ToyConfig(), {"steps": "5"}, "toy").steps == (5,)
    assert apply_overrides(ToyConfig(), {"steps": " 1, 2 ,3 "}, "toy").steps == (1, 2, 3)


def test_non_string_values_are_used_as_is() -> None:
    cfg = apply_overrides(ToyConfig(), {"rate": 0.75, "steps": (1,)}, "toy")
    assert cfg.rate == 0.75
    assert cfg.steps == (1,)


@pytest.mark.parametrize(
    ("field", "raw", "expected"),
    [
        ("count", "abc", "expected int"),
        ("count", "1.5", "expected int"),
        ("rate", "fast", "expected float"),
        ("limit", "lots", "expected float"),
        ("steps", "40,x", "expected int"),
        ("flag", "maybe", "expected true or false"),
        ("mode", "c", "must be one of a, b"),
    ],
)
def test_wrong_type_names_the_set_key_and_expected_type(
    field: str, raw: str, expected: str
) -> None:
    with pytest.raises(CirbenchError) as info:
        apply_overrides(ToyConfig(), {field: raw}, "toy")
    msg = str(info.value)
    assert f"--set toy.{field}" in msg
    assert expected in msg


def test_unknown_field_lists_the_fields() -> None:
    with pytest.raises(CirbenchError) as info:
        apply_overrides(ToyConfig(), {"rat": "0.1"}, "toy")
    msg = str(info.value)
    assert "--set toy.rat" in msg
    assert "count, flag, label, limit, mode, rate, steps" in msg


def test_validate_value_error_becomes_cirbench_error() -> None:
    assert apply_overrides(CheckedConfig(), {"lo": "0.5"}, "chk").lo == 0.5
    with pytest.raises(CirbenchError) as info:
        apply_overrides(CheckedConfig(), {"lo": "2.0"}, "chk")
    msg = str(info.value)
    assert "--set chk" in msg
    assert "lo must be <= hi" in msg
    assert not isinstance(info.value, ValueError)


def test_original_config_is_unchanged() -> None:
    original = ToyConfig()
    snapshot = to_dict(original)
    new = apply_overrides(original, {"count": "9", "steps": "1,2"}, "toy")
    assert new is not original
    assert new.count == 9
    assert to_dict(original) == snapshot
    assert original == ToyConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        new.count = 1  # type: ignore[misc]


def test_empty_overrides_return_equal_config() -> None:
    cfg = ToyConfig(count=4)
    assert apply_overrides(cfg, {}, "toy") == cfg
