"""Tests for the generic name -> object registry."""

from __future__ import annotations

import pytest

from cirbench.errors import CirbenchError
from cirbench.registry import Registry


def make_registry() -> Registry[object]:
    reg: Registry[object] = Registry("method")
    for name in ["triplet", "circle", "cir", "center", "ce"]:
        reg.register_as(name)(object())
    return reg


def test_register_returns_object_and_get_finds_it() -> None:
    reg: Registry[type] = Registry("task")

    @reg.register
    class Alpha:
        key = "alpha"

    assert Alpha.__name__ == "Alpha"  # the decorator returns the class itself
    assert reg.get("alpha") is Alpha


def test_register_same_name_twice_raises_value_error() -> None:
    reg: Registry[int] = Registry("task")
    reg.register_as("x")(1)
    with pytest.raises(ValueError, match="'x' is already registered"):
        reg.register_as("x")(2)
    assert reg.get("x") == 1  # the first registration is kept


def test_unknown_name_suggests_close_match_and_lists_known_names() -> None:
    reg = make_registry()
    with pytest.raises(CirbenchError) as info:
        reg.get("cirle")
    msg = str(info.value)
    assert "unknown method 'cirle'" in msg
    assert "Did you mean 'circle'" in msg
    assert "Known methods: ce, center, cir, circle, triplet." in msg


def test_unknown_name_without_close_match_has_no_suggestion() -> None:
    reg = make_registry()
    with pytest.raises(CirbenchError) as info:
        reg.get("zzzzzzzz")
    msg = str(info.value)
    assert "Did you mean" not in msg
    assert "ce, center, cir, circle, triplet" in msg


def test_unknown_name_error_is_not_a_key_error() -> None:
    reg = make_registry()
    with pytest.raises(CirbenchError) as info:
        reg.get("nope")
    assert not isinstance(info.value, KeyError)
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_names_glob_filters_and_sorts() -> None:
    reg = make_registry()
    assert reg.names() == ["ce", "center", "cir", "circle", "triplet"]
    assert reg.names("ci*") == ["cir", "circle"]
    assert reg.names("c?") == ["ce"]
    assert reg.names("*let") == ["triplet"]
    assert reg.names("nothing*") == []
    # glob matching is case-sensitive
    assert reg.names("CI*") == []


def test_contains_len_and_iteration() -> None:
    reg = make_registry()
    assert "circle" in reg
    assert "cirle" not in reg
    assert 3 not in reg
    assert len(reg) == 5
    assert list(reg) == ["ce", "center", "cir", "circle", "triplet"]
    empty: Registry[int] = Registry("thing")
    assert len(empty) == 0
    assert list(empty) == []
    assert empty.names() == []


def test_methods_registry_suggests_for_real_components() -> None:
    from cirbench.methods import METHODS

    with pytest.raises(CirbenchError, match="Did you mean 'circle'"):
        METHODS.get("cirle")
    assert {"ce", "cir", "circle", "ls", "triplet"} <= set(METHODS)


def test_a_class_without_its_key_cannot_be_registered() -> None:
    reg: Registry[type] = Registry("task", key="name")
    with pytest.raises(ValueError, match="has no 'name'"):

        @reg.register
        class Nameless:
            pass
