"""fashion-mnist: profiles, model, retrieval in blocks, the CLI on generated IDX trees, bad input
(exit 2, one message, no record), and the real release (default run reads it when installed)."""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fixture_cifar import catalog_for
from fixture_fashion import FILES, TEST_LABELS, TRAIN_IMAGES, write_fashion, write_idx

from cirbench.cli import main
from cirbench.data.catalog import CATALOG_ENV, check_dataset, load_catalog, resolve_data_root
from cirbench.eval.distances import cosine_distance
from cirbench.eval.retrieval import retrieval_metrics
from cirbench.models.cifar_resnet import CifarResNet
from cirbench.tasks import TASKS
from cirbench.tasks import fashion_mnist as fm

FAST = ["--profile", "smoke", "--seeds", "0", "-q", "--set", "train.batch_size=20"]


def records(out: Path) -> list[Path]:
    return sorted((out / "runs").glob("*/*.json"))


def run(*args: str) -> int:
    return main(["run", *args])


# --- registration, profiles, model ----------------------------------------------------------


def test_registered_with_five_methods_and_three_profiles() -> None:
    task = TASKS.get("fashion-mnist")()
    assert task.dataset == "fashion-mnist" and "fashion-mnist" in load_catalog()
    assert task.default_methods == ("ce", "ls", "cir+ce", "triplet", "cir+triplet")
    assert task.metrics == ("top1", "recall@1", "mAP")
    assert set(task.profiles) == {"full", "cpu", "smoke"} and task.default_profile == "full"


def test_profiles() -> None:
    task = TASKS.get("fashion-mnist")()
    cpu, smoke, full = (task.profile(name) for name in ("cpu", "smoke", "full"))
    assert isinstance(cpu, fm.FashionConfig) and isinstance(smoke, fm.FashionConfig)
    assert (cpu.epochs, cpu.batch_size, cpu.lr, cpu.optimizer) == (1, 128, 3e-3, "adam")
    assert (cpu.width, cpu.blocks, cpu.stem_stride, cpu.augment, cpu.train_limit) == (
        8,
        1,
        2,
        False,
        0,
    )
    assert smoke.train_limit == 2048 and smoke.width == cpu.width
    assert isinstance(full, fm.FashionConfig)
    assert (full.epochs, full.optimizer, full.lr, full.schedule) == (30, "sgd", 0.1, "cosine")
    assert (full.width, full.blocks, full.stem_stride, full.augment) == (32, 2, 1, True)


def test_config_refuses_bad_values() -> None:
    base = TASKS.get("fashion-mnist")().profile("cpu")
    assert isinstance(base, fm.FashionConfig)
    for field, value in (("stem_stride", 3), ("width", 0), ("train_limit", -1)):
        with pytest.raises(ValueError):
            dataclasses.replace(base, **{field: value}).validate()


@pytest.mark.parametrize(("profile", "pixels"), [("cpu", 4), ("full", 7)])
def test_model_takes_one_grey_channel(profile: str, pixels: int) -> None:
    task = TASKS.get("fashion-mnist")()
    cfg = task.profile(profile)
    data = fm.FashionData(10, "x", train=None, test=None, mean=(0.3,), std=(0.35,))
    model = task.build_model(data, cfg)
    assert isinstance(model, CifarResNet)
    assert isinstance(cfg, fm.FashionConfig) and model.embed_dim == 4 * cfg.width
    x = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    last_stage = model.body[:-2](x)  # before pooling and flatten
    assert last_stage.shape == (2, 4 * cfg.width, pixels, pixels)
    assert model.head is not None and model.head(model(x)).shape == (2, 10)


def test_blocked_retrieval_equals_the_whole_matrix(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(53, 8, generator=gen)
    labels = torch.randint(0, 4, (53,), generator=gen)
    not_self = ~torch.eye(53, dtype=torch.bool)
    whole = retrieval_metrics(cosine_distance(features, features), labels, labels, not_self)
    monkeypatch.setattr(fm, "QUERY_BLOCK", 10)  # 6 blocks, the last one of 3
    blocked = fm.leave_one_out_retrieval(features, labels)
    assert blocked.keys() == whole.keys()
    for key, value in whole.items():
        assert blocked[key] == pytest.approx(value, abs=1e-6)


def test_retrieval_refuses_a_query_without_a_match() -> None:
    with pytest.raises(ValueError, match="every query needs"):
        fm.leave_one_out_retrieval(torch.randn(3, 4), torch.tensor([0, 0, 1]))


# --- the CLI on generated trees --------------------------------------------------------------


@pytest.fixture()
def generated_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A generated fashion-mnist/ and a catalogue that expects exactly these files."""
    root = tmp_path / "data"
    write_fashion(root / "fashion-mnist", train=200, test=60)
    catalog = catalog_for(tmp_path / "datasets.yaml", "fashion-mnist", root, "fashion-mnist")
    monkeypatch.setenv(CATALOG_ENV, str(catalog))
    return root


def test_runs_end_to_end_on_a_fixture(generated_root: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    args = ["fashion-mnist", "--data-root", str(generated_root), "--out", str(out), *FAST]
    assert run(*args, "--method", "ce,cir+triplet") == 0
    recs = {r["method"]: r for r in (json.loads(p.read_text()) for p in records(out))}
    assert set(recs) == {"ce", "cir+triplet"}
    assert set(recs["ce"]["metrics"]) == {"top1", "recall@1", "mAP"}
    assert set(recs["cir+triplet"]["metrics"]) == {"recall@1", "mAP"}
    per_class = recs["ce"]["details"]["per_class_top1"]
    assert set(per_class) == set(fm.CLASSES) and "Ankle boot" in per_class
    assert recs["ce"]["metrics"]["top1"] == pytest.approx(sum(per_class.values()) / 10)
    for rec in recs.values():
        assert rec["dataset"]["fingerprint"].startswith("fashion-mnist:sha256:")
        assert len(rec["history"]) == 1 and rec["config"]["train"]["stem_stride"] == 2
    assert "| cir+triplet " in capsys.readouterr().out


def test_train_batches_are_the_stored_images(generated_root: Path) -> None:
    task = TASKS.get("fashion-mnist")()
    data = task.load(generated_root)
    images = data.train[0]
    assert images.shape == (200, 1, 28, 28) and images.dtype == torch.uint8
    cfg = dataclasses.replace(task.profile("smoke"), batch_size=64)
    batches = list(task.train_batches(data, cfg, torch.Generator().manual_seed(0)))
    assert [len(y) for _, y in batches] == [64, 64, 64]
    for x, y in batches:  # label-coded grey levels: 20 * label + noise below 10
        assert torch.equal(x[:, 0, 0, 0].long() // 20, y)


# --- the system-folder fallback of the catalogue --------------------------------------------


def _catalog_with_system_folder(path: Path, system: Path, md5s: bool, tree: Path) -> Path:
    from cirbench.data.catalog import md5sum

    lines = [
        "fashion-mnist:",
        "  description: a generated Fashion-MNIST tree",
        "  folder: fashion-mnist",
        f"  system_folder: {system}",
        "  source: apt-get install dataset-fashion-mnist (generated here)",
        "  files:",
    ]
    for name in FILES:
        digest = f", md5: {md5sum(tree / name)}" if md5s else ""
        lines.append(f"    - {{path: {name}{digest}}}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_system_folder_is_used_only_when_the_data_root_lacks_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = write_fashion(tmp_path / "usr-share" / "fashion-mnist", train=50, test=20)
    catalog = _catalog_with_system_folder(tmp_path / "d.yaml", system, True, system)
    monkeypatch.setenv(CATALOG_ENV, str(catalog))
    entry = load_catalog()["fashion-mnist"]
    status = check_dataset(entry, tmp_path / "empty-root")
    assert status.ok and status.folder == system
    data = TASKS.get("fashion-mnist")().load(tmp_path / "empty-root")
    assert len(data.train[1]) == 50 and len(data.test[1]) == 20
    # a folder under the data root wins, and is checked (here: a bad copy is corrupt)
    mine = write_fashion(tmp_path / "root" / "fashion-mnist", train=30, test=20)
    assert check_dataset(entry, tmp_path / "root").state == "corrupt"
    (mine / TRAIN_IMAGES).write_bytes((system / TRAIN_IMAGES).read_bytes())
    (mine / FILES[1]).write_bytes((system / FILES[1]).read_bytes())
    status = check_dataset(entry, tmp_path / "root")
    assert status.ok and status.folder == mine


def test_relative_system_folder_is_a_catalogue_error(tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    path.write_text(
        "x:\n  description: d\n  source: s\n  folder: x\n  system_folder: usr/share/x\n",
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="system_folder 'usr/share/x' must be an absolute path"):
        load_catalog(path)


# --- bad input: exit 2, one message, no record -----------------------------------------------


def _bad_run(root: Path, out: Path, capsys) -> str:
    assert run("fashion-mnist", "--data-root", str(root), "--out", str(out), *FAST) == 2
    err = capsys.readouterr().err
    assert err.startswith("cirbench: error: ") and err.count("cirbench: error:") == 1
    assert "Traceback" not in err
    assert records(out) == []
    return err


def test_missing_everywhere_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    tree = write_fashion(tmp_path / "template", train=20, test=20)
    absent = tmp_path / "no-such-system-folder"
    catalog = _catalog_with_system_folder(tmp_path / "d.yaml", absent, True, tree)
    monkeypatch.setenv(CATALOG_ENV, str(catalog))
    err = _bad_run(tmp_path / "empty", tmp_path / "out", capsys)
    assert f"folder {tmp_path / 'empty' / 'fashion-mnist'} does not exist" in err
    assert f"(or, installed by a system package: {absent})" in err
    assert "apt-get install dataset-fashion-mnist" in err


def test_generated_files_fail_the_official_checksums(tmp_path: Path, capsys) -> None:
    write_fashion(tmp_path / "fashion-mnist")
    err = _bad_run(tmp_path, tmp_path / "out", capsys)
    assert "dataset 'fashion-mnist' is corrupt" in err
    assert (
        "file train-images-idx3-ubyte.gz: md5 mismatch: expected 8d4fb7e6c68d591d4c3dfef9ec88bf0d"
        in err
    )


def _unchecked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A catalogue without md5s over the generated tree, so the reader meets the damage."""
    root = tmp_path / "data"
    write_fashion(root / "fashion-mnist", train=40, test=20)
    catalog = catalog_for(tmp_path / "d.yaml", "fashion-mnist", root, "fashion-mnist", False)
    monkeypatch.setenv(CATALOG_ENV, str(catalog))
    return root / "fashion-mnist"


def test_label_out_of_range_through_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    folder = _unchecked(tmp_path, monkeypatch)
    write_idx(folder / TEST_LABELS, np.array([0, 1, 12] + [3] * 17, np.uint8))
    err = _bad_run(folder.parent, tmp_path / "out", capsys)
    assert "t10k-labels-idx1-ubyte.gz: labels must be in 0..9, found 12" in err


def test_truncated_images_through_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    folder = _unchecked(tmp_path, monkeypatch)
    raw = gzip.decompress((folder / TRAIN_IMAGES).read_bytes())
    (folder / TRAIN_IMAGES).write_bytes(gzip.compress(raw[:-100]))
    err = _bad_run(folder.parent, tmp_path / "out", capsys)
    assert "train-images-idx3-ubyte.gz: header says 40 x 28 x 28" in err and "(truncated)" in err


def test_image_and_label_counts_differ_through_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    folder = _unchecked(tmp_path, monkeypatch)
    write_idx(folder / FILES[1], np.zeros(39, np.uint8))
    err = _bad_run(folder.parent, tmp_path / "out", capsys)
    assert "holds 40 images but" in err and "39 labels" in err


# --- the real release (Debian's dataset-fashion-mnist, or the data root) ---------------------


@pytest.fixture(scope="module")
def real_root() -> Path:
    root = resolve_data_root(None)  # $CIRBENCH_DATA or ~/cirbench-data, then system_folder
    status = check_dataset(load_catalog()["fashion-mnist"], root)
    if not status.ok:
        pytest.skip(
            "Fashion-MNIST not installed (apt-get install dataset-fashion-mnist): "
            + "; ".join(status.problems)
        )
    return root


def test_real_data_loads_as_the_standard_split(real_root: Path) -> None:
    data = TASKS.get("fashion-mnist")().load(real_root)
    (train_x, train_y), (test_x, test_y) = data.train, data.test
    assert train_x.shape == (60_000, 1, 28, 28) and test_x.shape == (10_000, 1, 28, 28)
    assert torch.bincount(train_y).tolist() == [6000] * 10
    assert torch.bincount(test_y).tolist() == [1000] * 10
    assert data.num_classes == 10 and data.fingerprint.startswith("fashion-mnist:sha256:")
    assert 0.28 < data.mean[0] < 0.29 and 0.35 < data.std[0] < 0.36  # known FMNIST stats


@pytest.mark.slow
def test_smoke_profile_learns_on_the_real_data(real_root: Path, tmp_path: Path) -> None:
    """The smoke profile (2,048 training images, one epoch) through the CLI, on all 10,000 test
    images: ``ce`` beats the 10% chance of top-1 clearly, and ``triplet`` retrieval beats the
    10% chance precision of a random ranking."""
    out = tmp_path / "out"
    args = ["fashion-mnist", "--method", "ce,triplet", "--profile", "smoke", "--seeds", "0"]
    assert run(*args, "--data-root", str(real_root), "--out", str(out), "-q") == 0
    recs = {r["method"]: r for r in (json.loads(p.read_text()) for p in records(out))}
    assert recs["ce"]["metrics"]["top1"] > 0.2
    assert recs["triplet"]["metrics"]["mAP"] > 0.2
    assert recs["triplet"]["metrics"]["recall@1"] > 0.3
