"""Tests for the dataset catalogue: datasets.yaml, data root, and on-disk checks."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import pytest

from cirbench.data import catalog
from cirbench.data.catalog import (
    check_dataset,
    explain,
    format_status_table,
    load_catalog,
    require_dataset,
    resolve_data_root,
)
from cirbench.errors import CirbenchError

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
EXPECTED = {
    "digits",
    "cifar10",
    "cifar10-subset",
    "cifar100",
    "market1501",
    "omniglot",
    "tieredimagenet",
    "cuhk-sysu",
    "fashion-mnist",
}
HTML_PAGE = b"\n  <!DOCTYPE html>\n<html><head><title>Google Drive</title></head></html>\n"


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _fake_files() -> dict[str, bytes]:
    batch = pickle.dumps({"data": bytes(range(256)) * 12, "labels": [0, 1, 2]})
    return {"batch_1": batch, "meta/batches.meta": pickle.dumps({"label_names": ["a", "b"]})}


def _write_catalog(path: Path, files: dict[str, bytes]) -> Path:
    lines = [
        "toy:",
        "  description: a toy dataset written by the test",
        "  folder: toy-data",
        "  source: made by tests/data/test_catalog.py (https://example.org/toy)",
        "  files:",
    ]
    lines += [f"    - {{path: {name}, md5: {_md5(data)}}}" for name, data in files.items()]
    lines += ["  counts:", "    - {glob: images/*.png, count: 3}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _write_dataset(root: Path, files: dict[str, bytes], images: int = 3) -> Path:
    folder = root / "toy-data"
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    (folder / "images").mkdir(exist_ok=True)
    for i in range(images):
        (folder / "images" / f"{i:04d}.png").write_bytes(b"\x89PNG fake")
    return folder


@pytest.fixture
def toy(tmp_path: Path) -> tuple[catalog.DatasetEntry, Path, Path]:
    """(entry, data root, dataset folder) of a complete fake dataset."""
    files = _fake_files()
    entries = load_catalog(_write_catalog(tmp_path / "datasets.yaml", files))
    root = tmp_path / "data"
    folder = _write_dataset(root, files)
    return entries["toy"], root, folder


# --- the shipped datasets.yaml -----------------------------------------------------------


def test_shipped_catalog_has_all_nine_datasets() -> None:
    entries = load_catalog()
    assert set(entries) == EXPECTED
    assert entries["digits"].bundled and entries["digits"].folder is None
    for name in EXPECTED - {"digits"}:
        assert entries[name].folder, name
        assert entries[name].source.strip(), name


def test_shipped_fashion_mnist_accepts_the_official_and_debians_gz() -> None:
    entry = load_catalog()["fashion-mnist"]
    assert entry.system_folder == "/usr/share/datasets/fashion-mnist"
    md5s = {f.path: f.accepted_md5 for f in entry.files}
    assert md5s["train-images-idx3-ubyte.gz"] == (
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d",  # zalandoresearch/fashion-mnist README
        "cf8536b0aa1a6ac5fa3f23001093305c",  # Debian's recompressed copy
    )
    assert md5s["t10k-labels-idx1-ubyte.gz"][0] == "bb300cfdad3c16e7a12a480ee83cd310"


def test_shipped_catalog_cifar_md5s_are_torchvisions() -> None:
    cifar10 = {f.path: f.md5 for f in load_catalog()["cifar10"].files}
    assert cifar10["data_batch_1"] == "c99cafc152244af753f735de768cd75f"
    assert cifar10["test_batch"] == "40351d587109b95175f43aff81a1287e"
    assert cifar10["batches.meta"] == "5ff9c542aee3614f3951f8cda6e48888"
    cifar100 = {f.path: f.md5 for f in load_catalog()["cifar100"].files}
    assert cifar100 == {
        "train": "16019d7e3df5f24257cddd939b257f8d",
        "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
        "meta": "7973b15100ade9c7d40fb424638fde48",
    }


def test_catalog_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write_catalog(tmp_path / "other.yaml", _fake_files())
    monkeypatch.setenv("CIRBENCH_DATASETS_YAML", str(path))
    assert set(load_catalog()) == {"toy"}
    monkeypatch.setenv("CIRBENCH_DATASETS_YAML", str(tmp_path / "nope.yaml"))
    with pytest.raises(CirbenchError, match="CIRBENCH_DATASETS_YAML"):
        load_catalog()


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("x:\n  description: d\n  source: s\n  folder: f\n  colour: red\n", "unknown key"),
        ("x:\n  description: d\n  source: https://example.org\n", "folder"),
        ("x:\n  description: d\n  source: s\n  folder: f\n  files: [{path: a, md5: xyz}]\n", "md5"),
        ("x:\n  description: d\n  source: s\n  folder: ../f\n", "relative"),
        ("x:\n  description: d\n  source: sklearn\n  folder: f\n", "sklearn"),
    ],
)
def test_bad_catalog_raises_value_error_naming_entry(tmp_path: Path, body: str, match: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ValueError, match=match) as info:
        load_catalog(path)
    assert "'x'" in str(info.value)


# --- data root ---------------------------------------------------------------------------


def test_data_root_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CIRBENCH_DATA", raising=False)
    assert resolve_data_root(None) == tmp_path / "home" / "cirbench-data"
    monkeypatch.setenv("CIRBENCH_DATA", str(tmp_path / "env"))
    assert resolve_data_root(None) == tmp_path / "env"
    assert resolve_data_root(str(tmp_path / "cli")) == tmp_path / "cli"


def test_data_root_is_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_data_root("relative/data") == tmp_path / "relative" / "data"


# --- check_dataset on generated fixtures ---------------------------------------------------


def test_complete_dataset_is_found(toy: tuple[catalog.DatasetEntry, Path, Path]) -> None:
    entry, root, folder = toy
    status = check_dataset(entry, root)
    assert status.state == "found", status.problems
    assert status.folder == folder
    assert explain(status).startswith("OK: 2 files verified")
    assert require_dataset("toy", root, catalog={"toy": entry}) == folder


def test_missing_folder_names_absolute_path(
    toy: tuple[catalog.DatasetEntry, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    entry, root, _ = toy
    monkeypatch.chdir(root.parent)
    status = check_dataset(entry, Path("elsewhere"))
    expected = root.parent / "elsewhere" / "toy-data"
    assert status.state == "missing"
    assert status.problems == (f"folder {expected} does not exist",)


def test_missing_file(toy: tuple[catalog.DatasetEntry, Path, Path]) -> None:
    entry, root, folder = toy
    (folder / "meta" / "batches.meta").unlink()
    status = check_dataset(entry, root)
    assert status.state == "missing"
    assert len(status.problems) == 1
    assert "meta/batches.meta is missing" in status.problems[0]


def test_empty_file_is_corrupt(toy: tuple[catalog.DatasetEntry, Path, Path]) -> None:
    entry, root, folder = toy
    (folder / "batch_1").write_bytes(b"")
    status = check_dataset(entry, root)
    assert status.state == "corrupt"
    assert status.problems == ("file batch_1 is empty (0 bytes)",)


def test_wrong_md5_is_corrupt_naming_both(toy: tuple[catalog.DatasetEntry, Path, Path]) -> None:
    entry, root, folder = toy
    (folder / "batch_1").write_bytes(b"not the real batch")
    status = check_dataset(entry, root)
    expected = next(f.md5 for f in entry.files if f.path == "batch_1")
    assert status.state == "corrupt"
    assert status.problems == (
        f"file batch_1: md5 mismatch: expected {expected}, got {_md5(b'not the real batch')}",
    )


def test_wrong_md5_passes_without_checksums(
    toy: tuple[catalog.DatasetEntry, Path, Path],
) -> None:
    entry, root, folder = toy
    (folder / "batch_1").write_bytes(b"not the real batch")
    status = check_dataset(entry, root, checksums=False)
    assert status.state == "found"
    assert "md5 not checked" in explain(status)


def test_html_page_instead_of_pickle(toy: tuple[catalog.DatasetEntry, Path, Path]) -> None:
    entry, root, folder = toy
    (folder / "batch_1").write_bytes(HTML_PAGE)
    for checksums in (True, False):
        status = check_dataset(entry, root, checksums=checksums)
        assert status.state == "corrupt"
        assert status.problems == (
            "file batch_1 looks like an HTML page saved instead of the data (a failed download)",
        )


def test_count_mismatch(toy: tuple[catalog.DatasetEntry, Path, Path]) -> None:
    entry, root, folder = toy
    (folder / "images" / "0000.png").unlink()
    status = check_dataset(entry, root)
    assert status.state == "corrupt"
    assert status.problems == ("images/*.png: expected 3 files, found 2",)


def test_all_problems_are_reported(toy: tuple[catalog.DatasetEntry, Path, Path]) -> None:
    entry, root, folder = toy
    (folder / "batch_1").write_bytes(HTML_PAGE)
    (folder / "meta" / "batches.meta").unlink()
    for png in (folder / "images").iterdir():
        png.unlink()
    status = check_dataset(entry, root)
    assert status.state == "corrupt"
    assert len(status.problems) == 3
    text = explain(status)
    assert all(problem in text for problem in status.problems)


def test_require_dataset_message(
    toy: tuple[catalog.DatasetEntry, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    entry, root, folder = toy
    (folder / "batch_1").unlink()
    with pytest.raises(CirbenchError) as info:
        require_dataset("toy", root, catalog={"toy": entry})
    message = str(info.value)
    assert info.value.exit_code == 2
    assert "'toy'" in message
    assert "batch_1 is missing" in message
    assert f"expected folder: {folder}" in message
    assert "meta/batches.meta (md5 " in message
    assert "images/*.png: 3 files" in message
    assert entry.source in message
    assert "--data-root" in message and "CIRBENCH_DATA" in message


def test_require_dataset_missing_folder_names_path_and_source(tmp_path: Path) -> None:
    entry = load_catalog()["market1501"]
    with pytest.raises(CirbenchError) as info:
        require_dataset("market1501", tmp_path, catalog={"market1501": entry})
    message = str(info.value)
    assert str(tmp_path / "Market-1501-v15.09.15") in message
    assert "bounding_box_train/*.jpg: 12936 files" in message
    assert "project_reid.html" in message


def test_bundled_digits(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    entry = load_catalog()["digits"]
    monkeypatch.setattr(catalog, "_module_available", lambda name: True)
    assert check_dataset(entry, tmp_path).state == "found"
    monkeypatch.setattr(catalog, "_module_available", lambda name: False)
    status = check_dataset(entry, tmp_path)
    assert status.state == "missing"
    assert "pip install scikit-learn" in status.problems[0]


def test_status_table(toy: tuple[catalog.DatasetEntry, Path, Path], tmp_path: Path) -> None:
    entry, root, _ = toy
    found = check_dataset(entry, root)
    missing = check_dataset(entry, tmp_path / "empty")
    table = format_status_table([found, missing])
    lines = table.splitlines()
    assert lines[0].split() == ["dataset", "state", "folder", "problems"]
    assert "found" in lines[2] and "missing" in lines[3]
    assert "does not exist" in lines[3]


# --- real data beside the project ----------------------------------------------------------


@pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"real shared data folder {SHARED_DATA} is not present"
)
@pytest.mark.parametrize("name", ["cifar10-subset", "omniglot"])
def test_real_shared_data_verifies(name: str) -> None:
    status = check_dataset(load_catalog()[name], SHARED_DATA, checksums=True)
    assert status.state == "found", status.problems
    assert explain(status).startswith("OK: ")


def test_a_malformed_user_catalogue_is_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cirbench.cli import main

    bad = tmp_path / "datasets.yaml"
    bad.write_text("digits: [unclosed\n")
    monkeypatch.setenv("CIRBENCH_DATASETS_YAML", str(bad))
    assert main(["datasets", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cirbench: error: $CIRBENCH_DATASETS_YAML") and "Traceback" not in err
