from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fixture_tiered import FULL, make_tiered

from cirbench.cli import main
from cirbench.data.omniglot import load_set
from cirbench.tasks import TASKS
from cirbench.tasks.fewshot import OmniglotData, rotated_batch

SMOKE = ["--profile", "smoke", "--seeds", "0", "-q"]
PER_CLASS = {"train": 4, "val": 1, "test": 20}
FEWSHOT_METRICS = {f"acc_{w}w{s}s" for w in (5, 20) for s in (1, 5)}


@pytest.fixture(scope="module")
def tiered_full(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with tieredImageNet in the pkl form, 351/97/160 classes of 8x8 images."""
    root = tmp_path_factory.mktemp("tiered")
    make_tiered(root, "pkl", FULL, PER_CLASS, size=8)
    return root


def copy_root(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst / "data")
    return dst / "data"


def run_tiered(tmp_path: Path, root: Path, *extra: str) -> int:
    args = ["run", "tieredimagenet", "--data-root", str(root), "--out", str(tmp_path / "out")]
    return main([*args, "--method", "proto", *SMOKE, *extra])


def records(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "out" / "runs").glob("*/*.json"))


def expect_user_error(tmp_path: Path, capsys, code: int, message: str) -> None:
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("cirbench: error: ") and err.count("cirbench: error:") == 1
    assert message in err and "Traceback" not in err
    assert records(tmp_path) == []


def test_tiered_missing_split_file(tmp_path: Path, tiered_full: Path, capsys) -> None:
    root = copy_root(tiered_full, tmp_path)
    (root / "tiered-imagenet" / "test_images_png.pkl").unlink()
    expect_user_error(tmp_path, capsys, run_tiered(tmp_path, root), "file missing")


def test_tiered_no_dataset_at_all(tmp_path: Path, capsys) -> None:
    code = run_tiered(tmp_path, tmp_path / "empty")
    expect_user_error(tmp_path, capsys, code, "dataset 'tieredimagenet' is missing")


def test_tiered_wrong_class_count(tmp_path: Path, capsys) -> None:
    make_tiered(tmp_path / "data", "npz", {**FULL, "test": 159}, PER_CLASS, size=8)
    code = run_tiered(tmp_path, tmp_path / "data")
    expect_user_error(tmp_path, capsys, code, "test split has 159 classes, expected 160")


def test_tiered_html_saved_as_pkl(tmp_path: Path, tiered_full: Path, capsys) -> None:
    root = copy_root(tiered_full, tmp_path)
    page = b"<!DOCTYPE html><html><head><title>Google Drive</title></head></html>"
    (root / "tiered-imagenet" / "train_images_png.pkl").write_bytes(page)
    code = run_tiered(tmp_path, root)
    expect_user_error(tmp_path, capsys, code, "train_images_png.pkl is an HTML page")


def test_tiered_more_ways_than_test_classes(tmp_path: Path, tiered_full: Path, capsys) -> None:
    code = run_tiered(tmp_path, tiered_full, "--set", "train.ways=200")
    expect_user_error(tmp_path, capsys, code, "need 200 test classes")


def test_tiered_smoke_run_writes_episode_details(tmp_path: Path, tiered_full: Path) -> None:
    assert run_tiered(tmp_path, tiered_full) == 0
    (path,) = records(tmp_path)
    rec = json.loads(path.read_text())
    assert set(rec["metrics"]) == {"acc_5w1s", "acc_5w1s_ci95", "acc_5w5s", "acc_5w5s_ci95"}
    details = rec["details"]
    assert details["episode_seed"] == 0 and details["n_episodes"] == 10
    assert set(details["episodes"]) == {"acc_5w1s", "acc_5w5s"}
    accs = details["episodes"]["acc_5w1s"]
    assert len(accs) == 10 and all(a == round(a, 4) and 0 <= a <= 1 for a in accs)
    assert rec["metrics"]["acc_5w1s"] == pytest.approx(np.mean(accs), abs=1e-4)
    assert rec["config"]["train"]["backbone"] == "conv4"


# --- Omniglot on a generated unzipped tree (fast) and on the real zips (slow) -----------------


def write_omniglot_tree(folder: Path, name: str, n_classes: int, drawers: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(len(name))
    for c in range(n_classes):
        char = folder / name / f"Script{c // 5}" / f"character{c % 5 + 1:02d}"
        char.mkdir(parents=True)
        for d in range(drawers):
            img = rng.random((105, 105)) > 0.1
            Image.fromarray(img).save(char / f"{c:04d}_{d + 1:02d}.png")


def test_omniglot_smoke_run_on_unzipped_folders(tmp_path: Path, monkeypatch, capsys) -> None:
    import cirbench.data.omniglot as omniglot

    monkeypatch.setitem(omniglot.SET_CLASSES, "images_background_small1", 4)
    monkeypatch.setitem(omniglot.SET_CLASSES, "images_background_small2", 4)
    monkeypatch.setitem(omniglot.SET_CLASSES, "images_evaluation", 6)
    folder = tmp_path / "data" / "omniglot"
    write_omniglot_tree(folder, "images_background_small1", 4, 8)
    write_omniglot_tree(folder, "images_background_small2", 4, 8)
    write_omniglot_tree(folder, "images_evaluation", 6, 6)
    args = [
        "run",
        "omniglot",
        "--data-root",
        str(tmp_path / "data"),
        "--out",
        str(tmp_path / "out"),
    ]
    sets = ["--set", "train.ways=2,6", "train.shots=1,2", "train.n_query=3", "train.batch_size=8"]
    assert main([*args, "--method", "proto,cir+triplet", *SMOKE, *sets]) == 0
    recs = [json.loads(p.read_text()) for p in records(tmp_path)]
    assert len(recs) == 2
    names = {"acc_2w1s", "acc_2w2s", "acc_6w1s", "acc_6w2s"}
    for rec in recs:
        assert set(rec["metrics"]) == names | {f"{n}_ci95" for n in names}
        assert rec["details"]["test_classes"] == 6 and rec["details"]["n_episodes"] == 10
    # 6-way episodes over 6 test classes: every class in every episode
    too_many = main([*args, "--method", "proto", *SMOKE, *sets[:1], "train.ways=7"])
    assert too_many == 2 and "need 7 test classes" in capsys.readouterr().err


def test_rotated_batch_rotates_images_and_shifts_labels() -> None:
    images = torch.arange(2 * 9, dtype=torch.uint8).view(2, 1, 3, 3)
    data = OmniglotData(images, np.array([0, 1]))
    x, y = rotated_batch(data, torch.tensor([0, 1, 2, 5, 7]))  # 2 = image 0 rotated 90 degrees
    assert y.tolist() == [0, 1, 2, 5, 7]
    assert torch.equal(x[0], images[0]) and torch.equal(x[2], torch.rot90(images[0], 1, (1, 2)))
    assert torch.equal(x[3], torch.rot90(images[1], 2, (1, 2)))
    assert torch.equal(x[4], torch.rot90(images[1], 3, (1, 2)))


@pytest.mark.slow
def test_omniglot_real_split_is_292_vs_659_disjoint_characters(shared_data: Path) -> None:
    folder = shared_data / "omniglot"
    train = [load_set(folder, n) for n in ("images_background_small1", "images_background_small2")]
    test = load_set(folder, "images_evaluation")
    assert sum(s.num_classes for s in train) == 292 and test.num_classes == 659
    assert len(test.labels) == 13180 and np.all(np.bincount(test.labels) == 20)
    # the two small sets share Latin and Greek: 50 characters, 1,000 identical images
    shared = set(train[0].classes) & set(train[1].classes)
    assert len(shared) == 50 and {c.split("/")[0] for c in shared} == {"Latin", "Greek"}
    train_alphabets = {c.split("/")[0] for s in train for c in s.classes}
    test_alphabets = {c.split("/")[0] for c in test.classes}
    assert len(train_alphabets) == 8 and len(test_alphabets) == 20
    assert not train_alphabets & test_alphabets
    data = TASKS.get("omniglot")().load(shared_data)
    assert data.train.images.shape == (4840, 1, 28, 28) and data.num_classes == 242 * 4
    assert np.all(np.bincount(data.train.labels) == 20)


@pytest.mark.slow
def test_omniglot_default_proto_reaches_85_percent_5w1s(tmp_path: Path, shared_data: Path) -> None:
    args = ["run", "omniglot", "--data-root", str(shared_data), "--out", str(tmp_path / "out")]
    assert main([*args, "--method", "proto", "--seeds", "0", "-q"]) == 0
    (path,) = records(tmp_path)
    rec = json.loads(path.read_text())
    assert set(rec["metrics"]) == FEWSHOT_METRICS | {f"{m}_ci95" for m in FEWSHOT_METRICS}
    assert rec["metrics"]["acc_5w1s"] >= 0.85
    assert rec["details"]["n_episodes"] == 2000 and rec["details"]["test_classes"] == 659


def test_tiered_paper_profile_is_resnet12_on_84x84_pk_batches(tiered_full: Path) -> None:
    import dataclasses

    from cirbench.models.resnet12 import ResNet12

    task = TASKS.get("tieredimagenet")()
    assert task.default_profile == "paper"
    data = task.load(tiered_full)
    assert data.num_classes == 351 and data.test.num_classes == 160
    cfg = dataclasses.replace(task.profile("paper"), batch_size=16)
    model = task.build_model(data, cfg)
    assert isinstance(model, ResNet12)
    x, y = next(iter(task.train_batches(data, cfg, torch.Generator().manual_seed(0))))
    assert x.shape == (16, 3, 84, 84) and y.shape == (16,)
    assert sorted(torch.bincount(y).tolist())[-4:] == [4, 4, 4, 4]  # P = 4 classes x K = 4
