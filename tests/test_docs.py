"""The ``Examples:`` blocks of the public entry points run and print what they claim."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "cirbench.config",
    "cirbench.data.fingerprint",
    "cirbench.eval.reid",
    "cirbench.methods.base",
    "cirbench.reporting.render",
    "cirbench.space",
    "cirbench.tasks.base",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no example"
    assert result.failed == 0
