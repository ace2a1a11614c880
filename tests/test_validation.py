"""Validation splits (``Task.validation``, ``--split val``): carved from training data only,
disjoint from what is trained on, class-disjoint where the protocol tests unseen classes, and
never mixed with test records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fixture_market import write_market_fixture

from cirbench.check import check_baseline
from cirbench.cli import main
from cirbench.data.holdout import class_holdout, reid_holdout, stratified_holdout
from cirbench.data.tiered import TieredSplit
from cirbench.errors import CirbenchError
from cirbench.reporting import collect_records
from cirbench.results import load_records
from cirbench.tasks import TASKS
from cirbench.tasks.cifar import CifarConfig, CifarData
from cirbench.tasks.digits import DigitsData
from cirbench.tasks.fewshot import FewShotConfig, FewShotData, OmniglotData

POISON = 255  # pixel value / label of every test item: none may reach a validation split
SMALL = FewShotConfig(epochs=1, batch_size=8, lr=0.1)


def test_stratified_holdout_keeps_class_proportions() -> None:
    labels = np.repeat(np.arange(5), [10, 20, 30, 40, 50])
    kept, held = stratified_holdout(labels)
    assert not set(kept) & set(held) and len(kept) + len(held) == len(labels)
    assert np.bincount(labels[held]).tolist() == [2, 4, 6, 8, 10]
    again = stratified_holdout(labels)
    assert np.array_equal(again[1], held)  # seeded, fixed


def test_class_and_reid_holdouts_are_class_disjoint() -> None:
    labels = np.repeat(np.arange(20), 5)
    kept, held = class_holdout(labels)
    assert not set(labels[kept]) & set(labels[held]) and len(set(labels[held])) == 4
    cams = np.tile(np.array([0, 0, 1, 2, 2]), 20)
    split = reid_holdout(labels, cams)
    assert not set(labels[split.train]) & set(labels[split.query])
    assert set(labels[split.gallery]) <= set(labels[split.query])
    pairs = [(labels[i], cams[i]) for i in split.query]
    assert len(pairs) == len(set(pairs)) == 4 * 3  # one query per (id, camera)
    assert not set(split.query) & set(split.gallery)
    with pytest.raises(CirbenchError, match="too small"):
        class_holdout(np.array([0, 1]))


def test_digits_validation_never_sees_the_test_split(digits) -> None:
    task, data = digits
    x, y = data.train
    poisoned = DigitsData(
        train=(x, y),
        test=(torch.full((7, 1, 8, 8), float(POISON)), torch.full((7,), POISON)),
        num_classes=10,
        fingerprint=data.fingerprint,
    )
    val = task.validation(poisoned, task.profile("smoke"))
    rows = {bytes(r.numpy().tobytes()): i for i, r in enumerate(x)}
    train_rows = [rows[bytes(r.numpy().tobytes())] for r in val.train[0]]
    val_rows = [rows[bytes(r.numpy().tobytes())] for r in val.test[0]]  # KeyError: not train
    assert not set(train_rows) & set(val_rows)
    assert len(val.train[1]) + len(val.test[1]) == len(y)
    assert POISON not in val.test[1].tolist() + val.train[1].tolist()
    assert val.fingerprint != data.fingerprint


def test_cifar_validation_is_a_stratified_slice_of_train() -> None:
    from cirbench.data.cifar import CifarSplit

    labels = torch.arange(50) % 5
    images = torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1).expand(50, 3, 32, 32)
    test = CifarSplit(torch.full((10, 3, 32, 32), POISON, dtype=torch.uint8), labels[:10], ())
    data = CifarData(
        train=CifarSplit(images.clone(), labels, tuple("abcde")),
        test=test,
        num_classes=5,
        fingerprint="fp",
        mean=(0.0,) * 3,
        std=(1.0,) * 3,
    )
    val = TASKS.get("cifar10-subset")().validation(
        data, CifarConfig(epochs=1, batch_size=8, lr=0.1)
    )
    ids_train = set(val.train.images[:, 0, 0, 0].tolist())
    ids_val = set(val.test.images[:, 0, 0, 0].tolist())
    assert not ids_train & ids_val and len(ids_train | ids_val) == 50 and POISON not in ids_val
    assert torch.bincount(val.test.labels).tolist() == [2] * 5
    assert val.mean != data.mean  # recomputed on the remaining training images


def test_fashion_mnist_validation_is_a_stratified_slice_of_train() -> None:
    from cirbench.tasks.fashion_mnist import CLASSES, FashionConfig, FashionData

    labels = torch.arange(100) % len(CLASSES)
    images = torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1).expand(100, 1, 28, 28)
    poison = torch.full((10, 1, 28, 28), POISON, dtype=torch.uint8)
    data = FashionData(
        train=(images.clone(), labels),
        test=(poison, labels[:10]),
        num_classes=len(CLASSES),
        fingerprint="fp",
        mean=(0.0,),
        std=(1.0,),
    )
    task = TASKS.get("fashion-mnist")()
    val = task.validation(data, FashionConfig(epochs=1, batch_size=8, lr=0.1))
    ids_train = set(val.train[0][:, 0, 0, 0].tolist())
    ids_val = set(val.test[0][:, 0, 0, 0].tolist())
    assert not ids_train & ids_val and len(ids_train | ids_val) == 100 and POISON not in ids_val
    assert torch.bincount(val.test[1]).tolist() == [2] * len(CLASSES)
    assert val.mean != data.mean and val.fingerprint != data.fingerprint


def test_omniglot_validation_characters_are_training_characters_not_trained_on() -> None:
    labels = np.repeat(np.arange(20), 3)
    images = torch.from_numpy(np.repeat(np.arange(20, dtype=np.uint8), 3)).view(60, 1, 1, 1)
    test = OmniglotData(torch.full((6, 1, 1, 1), POISON, dtype=torch.uint8), np.zeros(6, int))
    data = FewShotData(
        train=OmniglotData(images, labels), test=test, num_classes=80, fingerprint="fp"
    )
    val = TASKS.get("omniglot")().validation(data, FewShotConfig(epochs=1, batch_size=8, lr=0.1))
    trained = set(val.train.images.view(-1).tolist())
    episodes = set(val.test.images.view(-1).tolist())
    assert not trained & episodes and len(episodes) == 4 and POISON not in episodes
    assert val.num_classes == 16 * 4  # the remaining characters, rotated
    assert sorted(set(val.train.labels)) == list(range(16))


def _tiered_split(name: str, labels: np.ndarray) -> TieredSplit:
    tag = {"train": 1, "val": 2, "test": POISON}[name]
    return TieredSplit(name, "pkl", labels, lambda idx, size: np.full((len(idx), 1), tag))


def test_tiered_validation_uses_its_own_val_classes_else_train_classes() -> None:
    task = TASKS.get("tieredimagenet")()
    train = _tiered_split("train", np.repeat(np.arange(10), 2))
    data = FewShotData(
        train=train,
        test=_tiered_split("test", np.arange(4)),
        num_classes=10,
        fingerprint="fp",
        own_val=lambda: _tiered_split("val", np.arange(3)),
    )
    val = task.validation(data, FewShotConfig(epochs=1, batch_size=8, lr=0.1))
    assert val.test.split == "val" and val.train is train
    assert val.test.images(np.arange(3))[:, 0].tolist() == [2, 2, 2]
    no_own = task.validation(
        FewShotData(num_classes=10, fingerprint="fp", train=train, test=data.test), SMALL
    )
    assert no_own.test.images(np.arange(4))[:, 0].tolist() == [1] * 4
    assert no_own.train.num_classes == 8 and no_own.test.num_classes == 2


def test_market_validation_reads_only_training_identities(tmp_path: Path, monkeypatch) -> None:
    fx = write_market_fixture(tmp_path / "data", n_train_ids=10, per_id=8)
    monkeypatch.setenv("CIRBENCH_DATASETS_YAML", str(fx.catalog))
    task = TASKS.get("market1501")()
    data = task.load(fx.data_root)
    val = task.validation(data, task.profile("smoke")).market
    for split in (val.train, val.query, val.gallery):
        assert {p.parent.name for p in split.paths} == {"bounding_box_train"}
    held = set(val.query.pids.tolist())
    assert len(held) == 2 and set(val.gallery.pids.tolist()) <= held
    assert not held & set(val.train_original_pids.tolist())
    assert sorted(set(val.train.pids.tolist())) == list(range(8))
    assert not {*val.query.paths} & {*val.gallery.paths}


def test_cuhk_sysu_says_why_it_has_no_validation_split() -> None:
    task = TASKS.get("cuhk-sysu")()
    with pytest.raises(CirbenchError, match=r"no validation split \(n/a\)"):
        task.validation(None, task.profile("smoke"))


def test_split_val_records_never_mix_with_test_records(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["run", "digits", "--method", "ce", "--profile", "smoke", "--seeds", "0", "-q"]
    assert main([*args, "--out", str(out)]) == 0
    assert main([*args, "--out", str(out), "--split", "val"]) == 0
    recs = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*/*.json"))]
    assert sorted(r["split"] for r in recs) == ["test", "val"]
    assert len({r["config_hash"] for r in recs}) == 2
    val = next(r for r in recs if r["split"] == "val")
    test = next(r for r in recs if r["split"] == "test")
    assert val["config"]["split"] == "val" and "split" not in test["config"]
    assert load_records(out, "digits")["split"].tolist() == ["test"]
    assert load_records(out, "digits", "val")["split"].tolist() == ["val"]
    assert collect_records(out).df["split"].tolist() == ["test"]
    # the gate sees only the test record: the baseline written from both holds one seed row
    base = tmp_path / "baselines"
    assert main(["check", "digits", "--update", "--runs", str(out), "--baselines", str(base)]) == 0
    entries = json.loads((base / "digits.json").read_text())["entries"]
    assert [e["metrics"] for e in entries] == [test["metrics"]]
    result = check_baseline(collect_records(out), base, ["digits"])
    assert result.rows and all(r.ok for r in result.rows)
