"""Search spaces: declared beside the configs, narrowed or widened by ``--space`` with the same
type and domain checks as ``--set``; a bad item exits 2 with one line before anything trains."""

from __future__ import annotations

import pytest

from cirbench.cli import main
from cirbench.config import Choice, FloatRange, IntRange, Overrides
from cirbench.errors import CirbenchError
from cirbench.space import method_space, narrow, parse_space, to_overrides
from cirbench.tasks import TASKS


def space_of(spec: str, *items: str):
    task = TASKS.get("digits")()
    cfg = task.profile("smoke")
    return narrow(method_space(task, spec, cfg), parse_space(items), task, spec, cfg)


def test_declared_spaces_are_next_to_the_configs() -> None:
    space = space_of("cir+triplet")
    assert space["cir.p"] == FloatRange(0.0, 1.0)
    assert space["cir.target"] == Choice(("mean", "random"))
    assert space["cir.centroids"] == Choice(("batch", "ema"))
    assert space["triplet.margin"] == FloatRange(0.05, 1.0)
    assert space["train.lr"] == FloatRange(1e-4, 1e-1, log=True)
    assert set(space_of("ls")) == {"ls.eps", "train.lr"}
    assert set(space_of("ce")) == {"train.lr"}


def test_space_items_narrow_widen_and_fix() -> None:
    space = space_of(
        "cir+ce",
        "cir.p=0.1:0.9",
        "cir.target=mean",
        "train.lr=1e-3:1e-2",  # keeps the declared log scale
        "train.epochs=1:3",  # not declared: widened in
        "cir.normalize_output=true,false",
        "triplet.margin=0.2:0.4",  # a section this method lacks: left out
    )
    assert space["cir.p"] == FloatRange(0.1, 0.9)
    assert space["cir.target"] == Choice(("mean",))
    assert space["train.lr"] == FloatRange(1e-3, 1e-2, log=True)
    assert space["train.epochs"] == IntRange(1, 3)
    assert space["cir.normalize_output"] == Choice((True, False))
    assert "triplet.margin" not in space
    assert space_of("ls", "ls.eps=0.05:0.2:linear")["ls.eps"] == FloatRange(0.05, 0.2)


def test_sampled_values_become_set_items_that_parse_back() -> None:
    base = Overrides.parse(["train.epochs=2", "cir.p=0.5"])
    got = to_overrides(base, {"cir.p": 0.123456789, "cir.target": "random", "x.flag": True})
    assert got.as_list() == [
        "cir.p=0.123456789",
        "cir.target=random",
        "train.epochs=2",
        "x.flag=true",
    ]


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("cir.p=0.1:1.5", "--space cir: p must be in [0, 1], got 1.5"),
        ("cir.p=abc:0.5", "--space cir.p='abc': expected float"),
        ("cir.target=median", "--space cir.target='median': must be one of mean, random"),
        ("cir.target=mean:random", "LOW:HIGH ranges are for int or float fields"),
        ("cir.p=0.9:0.1", "LOW must not exceed HIGH"),
        ("train.lr=0:1:log", "train: lr must be > 0"),
        ("train.weight_decay=0:1:log", "a log range needs LOW > 0"),
        ("cir.p=0.1:0.2:cubic", "expected LOW:HIGH, LOW:HIGH:log or :linear"),
        ("cir.nope=1:2", "cir has no field 'nope'"),
        ("cir.p", "bad --space 'cir.p'"),
        ("triplet.margin=0.1:0.2", "'triplet' is not 'train' nor a component"),
        ("nosuch.x=1:2", "'nosuch' is not 'train' nor a component"),
    ],
)
def test_bad_space_items_exit_2_with_one_line(
    item: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["tune", "digits", "--method", "cir+ce", "--trials", "1", "--space", item])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_a_field_given_twice_is_refused() -> None:
    with pytest.raises(CirbenchError, match="given twice"):
        parse_space(["cir.p=0:1", "cir.p=0.2:0.3"])
