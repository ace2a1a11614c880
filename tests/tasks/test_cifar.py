"""CIFAR tasks: profiles, models, the CLI on generated fixtures, bad input, the real subset."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import yaml
from fixture_cifar import (
    CIFAR10_FILES,
    HTML_PAGE,
    catalog_for,
    write_cifar10,
    write_cifar100,
)

from cirbench.cli import main
from cirbench.data.catalog import CATALOG_ENV, load_catalog
from cirbench.engine import Evaluation
from cirbench.errors import CirbenchError
from cirbench.methods import MethodContext, build_method
from cirbench.models.cifar_resnet import PadShortcut, cifar_resnet
from cirbench.tasks import TASKS, EvalContext
from cirbench.tasks.cifar import CifarConfig, CifarData

REPO = Path(__file__).resolve().parents[2]
FAST = ["--profile", "smoke", "--seeds", "0", "-q", "--set", "train.batch_size=20"]


def records(out: Path) -> list[Path]:
    return sorted((out / "runs").glob("*/*.json"))


def run(*args: str) -> int:
    return main(["run", *args])


# --- registration, profiles, reported numbers ------------------------------------------------


def test_tasks_and_their_datasets() -> None:
    expected = {"cifar10": "cifar10", "cifar100": "cifar100", "cifar10-subset": "cifar10-subset"}
    for name, dataset in expected.items():
        task = TASKS.get(name)
        assert task.dataset == dataset
        assert task.default_methods == ("ce", "ls", "cir+ce", "cir+ls")
        assert dataset in load_catalog()


@pytest.mark.parametrize(("name", "arch"), [("cifar10", "resnet18"), ("cifar100", "resnet56")])
def test_paper_profile(name: str, arch: str) -> None:
    task = TASKS.get(name)()
    cfg = task.profile(None)
    assert task.default_profile == "paper" and isinstance(cfg, CifarConfig)
    assert (cfg.optimizer, cfg.momentum, cfg.weight_decay) == ("sgd", 0.9, 5e-4)
    assert (cfg.batch_size, cfg.epochs, cfg.lr, cfg.schedule) == (128, 200, 0.1, "cosine")
    assert (cfg.arch, cfg.augment, cfg.pad, cfg.train_limit, cfg.amp) == (arch, True, 4, 0, True)
    assert task.profile("smoke").arch == "cnn"


def test_reported_entries_use_our_task_metric_and_method_names() -> None:
    entries = yaml.safe_load((REPO / "cirbench" / "reported.yaml").read_text())
    rows = [e for e in entries["entries"] if str(e["task"]).startswith("cifar")]
    assert {r["task"] for r in rows} == {"cifar10", "cifar100"}
    assert {r["metric"] for r in rows} == {"top1"}
    for row in rows:
        assert row["method"] in TASKS.get(row["task"]).default_methods
    muller = {(r["task"], r["method"]): r["value"] for r in rows if r["paper"] == "muller2019"}
    assert muller == {
        ("cifar100", "ce"): 72.1,
        ("cifar100", "ls"): 72.7,
        ("cifar10", "ce"): 86.8,
        ("cifar10", "ls"): 86.7,
    }


# --- models ----------------------------------------------------------------------------------


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_resnet56_is_he_et_al_cifar_network() -> None:
    """6n+2 = 56 layers (55 convs + the classifier), 0.85 M parameters (He et al. Table 6)."""
    model = cifar_resnet("resnet56", 100, (0.5,) * 3, (0.25,) * 3)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 55 and all(c.kernel_size == (3, 3) for c in convs)
    assert _params(model) == 853_018 - 64 * 10 - 10 + 64 * 100 + 100
    assert model.embed_dim == 64
    feats = model(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8))
    assert feats.shape == (2, 64) and model.head is not None
    assert model.head(feats).shape == (2, 100)


def test_resnet18_cifar_variant() -> None:
    model = cifar_resnet("resnet18", 10, (0.5,) * 3, (0.25,) * 3)
    assert _params(model) == 11_173_962
    stem = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert stem.stride == (1, 1) and stem.kernel_size == (3, 3)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 512)


def test_option_a_shortcut_subsamples_and_zero_pads() -> None:
    x = torch.randn(2, 16, 8, 8)
    out = PadShortcut(16, 32, 2)(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])
    assert not out[:, :8].any() and not out[:, 24:].any()


def test_models_normalise_uint8_input_with_the_data_stats() -> None:
    data = CifarData(10, "x", train=None, test=None, mean=(0.2, 0.4, 0.6), std=(0.1, 0.2, 0.3))
    cfg = TASKS.get("cifar10-subset")().profile(None)
    model = TASKS.get("cifar10-subset")().build_model(data, cfg)
    norm = model.body[0]
    x = torch.full((1, 3, 2, 2), 51, dtype=torch.uint8)  # 51 / 255 = 0.2
    assert torch.allclose(norm(x)[0, :, 0, 0], torch.tensor([0.0, -1.0, -4.0 / 3.0]))


# --- the CLI on generated fixtures -----------------------------------------------------------


@pytest.fixture()
def c10_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A generated cifar-10-batches-py/ and a catalogue that expects exactly these files."""
    root = tmp_path / "data"
    write_cifar10(root / "cifar-10-batches-py", per_batch=20, test=30)
    catalog = catalog_for(tmp_path / "datasets.yaml", "cifar10", root, "cifar-10-batches-py")
    monkeypatch.setenv(CATALOG_ENV, str(catalog))
    return root


def test_cifar10_runs_end_to_end_on_a_fixture(c10_root: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    args = ["cifar10", "--data-root", str(c10_root), "--out", str(out), *FAST]
    assert run(*args, "--method", "ce,cir+ls") == 0
    recs = [json.loads(p.read_text()) for p in records(out)]
    assert sorted(r["method"] for r in recs) == ["ce", "cir+ls"]
    for rec in recs:
        assert set(rec["metrics"]) == {"top1", "error"}
        assert rec["metrics"]["top1"] + rec["metrics"]["error"] == pytest.approx(1.0)
        per_class = rec["details"]["per_class_top1"]
        assert list(per_class)[:2] == ["airplane", "automobile"] and len(per_class) == 10
        assert rec["metrics"]["top1"] == pytest.approx(sum(per_class.values()) / 10)
        assert rec["dataset"]["fingerprint"].startswith("cifar10:sha256:")
        assert rec["config"]["train"]["arch"] == "cnn" and len(rec["history"]) == 1
    assert "| cir+ls " in capsys.readouterr().out


def test_cifar100_loads_fine_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "data"
    write_cifar100(root / "cifar-100-python", train=200, test=100)
    catalog = catalog_for(tmp_path / "datasets.yaml", "cifar100", root, "cifar-100-python")
    monkeypatch.setenv(CATALOG_ENV, str(catalog))
    task = TASKS.get("cifar100")()
    data = task.load(root)
    assert data.num_classes == 100 and len(data.train.names) == 100
    assert data.test.coarse_labels is not None
    model = task.build_model(data, task.profile("smoke"))
    method = build_method("ls", MethodContext(100, model.embed_dim)).eval()
    with torch.inference_mode():
        ctx = EvalContext(model.eval(), method, data, task.profile("smoke"), torch.device("cpu"))
        evaluation = task.evaluate(ctx)
    assert isinstance(evaluation, Evaluation) and len(evaluation.details["per_class_top1"]) == 100


def test_train_batches_follow_the_config(c10_root: Path) -> None:
    task = TASKS.get("cifar10")()
    data = task.load(c10_root)
    base = task.profile("smoke")
    cfg = dataclasses.replace(base, batch_size=8, train_limit=30, augment=False)
    batches = list(task.train_batches(data, cfg, torch.Generator().manual_seed(0)))
    assert [len(y) for _, y in batches] == [8, 8, 8]
    seen = torch.cat([y for _, y in batches])
    assert set(seen.tolist()) <= set(data.train.labels[:30].tolist())
    for x, y in batches:  # no augmentation: images are the stored ones, label-coded
        assert torch.equal(x[:, 0, 0, 0].long() // 20, y) and x.dtype == torch.uint8


def test_embedding_only_losses_are_rejected(c10_root: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert run("cifar10", "--method", "triplet", "--data-root", str(c10_root), "--out", str(out))
    assert "needs embedding features" in capsys.readouterr().err
    assert records(out) == []


# --- bad input: exit 2, one message, no record -----------------------------------------------


def _bad_run(root: Path, out: Path, capsys, task: str = "cifar10") -> str:
    assert run(task, "--data-root", str(root), "--out", str(out), *FAST) == 2
    err = capsys.readouterr().err
    assert err.startswith("cirbench: error: ") and err.count("cirbench: error:") == 1
    assert "Traceback" not in err
    assert records(out) == []
    return err


def test_missing_directory_names_the_files_and_where_to_get_them(tmp_path: Path, capsys) -> None:
    err = _bad_run(tmp_path / "empty", tmp_path / "out", capsys)
    assert f"folder {tmp_path / 'empty' / 'cifar-10-batches-py'} does not exist" in err
    for name in CIFAR10_FILES:
        assert f"  - {name} (md5 " in err
    assert "https://www.cs.toronto.edu/~kriz/cifar.html" in err and "--data-root" in err


def test_missing_cifar100_directory(tmp_path: Path, capsys) -> None:
    err = _bad_run(tmp_path, tmp_path / "out", capsys, task="cifar100")
    assert "cifar-100-python" in err and "  - train (md5 16019d7e3df5f24257cddd939b257f8d)" in err


def test_generated_files_fail_the_official_checksums(tmp_path: Path, capsys) -> None:
    write_cifar10(tmp_path / "cifar-10-batches-py")
    err = _bad_run(tmp_path, tmp_path / "out", capsys)
    assert "dataset 'cifar10' is corrupt" in err
    assert "file data_batch_1: md5 mismatch: expected c99cafc152244af753f735de768cd75f" in err


def test_checksum_mismatch_of_one_file(c10_root: Path, tmp_path: Path, capsys) -> None:
    path = c10_root / "cifar-10-batches-py" / "data_batch_3"
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 0xFF  # one flipped pixel byte: still a valid pickle
    path.write_bytes(bytes(raw))
    err = _bad_run(c10_root, tmp_path / "out", capsys)
    assert "file data_batch_3: md5 mismatch" in err and "data_batch_2" not in err.split("\n")[1]


def test_truncated_batch_with_the_official_catalogue(tmp_path: Path, capsys) -> None:
    folder = write_cifar10(tmp_path / "cifar-10-batches-py")
    raw = (folder / "data_batch_2").read_bytes()
    (folder / "data_batch_2").write_bytes(raw[: len(raw) // 2])
    err = _bad_run(tmp_path, tmp_path / "out", capsys)
    assert "file data_batch_2: md5 mismatch" in err


def test_truncated_batch_caught_by_the_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Without md5s in the catalogue, the reader itself reports the damage."""
    root = tmp_path / "data"
    folder = write_cifar10(root / "cifar-10-batches-py")
    raw = (folder / "data_batch_2").read_bytes()
    (folder / "data_batch_2").write_bytes(raw[: len(raw) - 500])
    catalog = catalog_for(tmp_path / "d.yaml", "cifar10", root, "cifar-10-batches-py", False)
    monkeypatch.setenv(CATALOG_ENV, str(catalog))
    err = _bad_run(root, tmp_path / "out", capsys)
    assert "data_batch_2 is not a readable CIFAR pickle (truncated or corrupted" in err
    assert "https://www.cs.toronto.edu/~kriz/cifar.html" in err


def test_html_page_saved_in_place_of_a_batch(c10_root: Path, tmp_path: Path, capsys) -> None:
    (c10_root / "cifar-10-batches-py" / "test_batch").write_bytes(HTML_PAGE)
    err = _bad_run(c10_root, tmp_path / "out", capsys)
    assert "file test_batch looks like an HTML page saved instead of the data" in err


def test_html_page_in_cifar100(tmp_path: Path, capsys) -> None:
    folder = write_cifar100(tmp_path / "cifar-100-python")
    (folder / "meta").write_bytes(HTML_PAGE)
    err = _bad_run(tmp_path, tmp_path / "out", capsys, task="cifar100")
    assert "file meta looks like an HTML page" in err


def test_subset_task_refuses_the_official_layout_without_subset_checksums(
    tmp_path: Path, capsys
) -> None:
    write_cifar10(tmp_path / "cifar10-subset" / "cifar-10-batches-py")
    err = _bad_run(tmp_path, tmp_path / "out", capsys, task="cifar10-subset")
    assert "dataset 'cifar10-subset' is corrupt" in err
    assert "data_batch_1: md5 mismatch: expected bd1aba83da67bc65c20aa6fc5d79dda0" in err


# --- datasets verify -------------------------------------------------------------------------


def test_datasets_verify_cifar(shared_data: Path, tmp_path: Path, capsys) -> None:
    assert main(["datasets", "verify", "cifar10-subset", "--data-root", str(shared_data)]) == 0
    assert "OK: 7 files verified (md5 match)" in capsys.readouterr().out
    folder = write_cifar10(tmp_path / "cifar-10-batches-py")
    (folder / "data_batch_5").unlink()
    assert main(["datasets", "verify", "cifar10", "--data-root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "file data_batch_5 is missing" in out and "data_batch_1: md5 mismatch" in out


# --- the real subset -------------------------------------------------------------------------


def test_subset_task_loads_the_real_data(shared_data: Path) -> None:
    task = TASKS.get("cifar10-subset")()
    data = task.load(shared_data)
    assert (len(data.train), len(data.test), data.num_classes) == (5085, 1017, 10)
    assert data.fingerprint.startswith("cifar10-subset:sha256:")
    assert task.load(shared_data).fingerprint == data.fingerprint
    with pytest.raises(CirbenchError, match=r"is missing|does not exist"):
        TASKS.get("cifar10")().load(shared_data)


@pytest.mark.slow
def test_subset_learns(shared_data: Path, tmp_path: Path) -> None:
    """The smoke profile (2 epochs of the small CNN) on the real subset beats chance clearly."""
    out = tmp_path / "out"
    args = ["cifar10-subset", "--method", "ce", "--profile", "smoke", "--seeds", "0"]
    assert run(*args, "--data-root", str(shared_data), "--out", str(out), "-q") == 0
    (rec,) = [json.loads(p.read_text()) for p in records(out)]
    assert rec["metrics"]["top1"] > 0.25
    assert rec["history"][-1]["ce"] < rec["history"][0]["ce"]
