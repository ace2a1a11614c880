from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from fixture_tiered import SMALL, make_tiered, pixel

from cirbench.data.tiered import (
    TIERED_CLASSES,
    check_class_count,
    detect_form,
    load_split,
    read_labels,
    split_classes,
)
from cirbench.errors import CirbenchError

HTML = b"<!DOCTYPE html>\n<html><body>Sign in to continue</body></html>\n"


@pytest.mark.parametrize(
    ("form", "as_bytes"), [("pkl", False), ("pkl", True), ("npz", False), ("folders", False)]
)
def test_each_form_reads_labels_and_pixels(tmp_path: Path, form: str, as_bytes: bool) -> None:
    folder = make_tiered(tmp_path, form, per_class=3, png_as_bytes=as_bytes)
    assert detect_form(folder) == form
    for split in ("train", "val", "test"):
        assert split_classes(folder, split, form) == SMALL[split]
    test = load_split(folder, "test")
    assert test.form == form and test.num_classes == SMALL["test"]
    # label_specific is numbered across splits (test starts at 5); renumbered to 0..C-1
    assert test.labels.tolist() == np.repeat(np.arange(SMALL["test"]), 3).tolist()
    images = test.images([0, 4, 17])
    assert images.shape == (3, 84, 84, 3) and images.dtype == np.uint8
    for row, idx in enumerate([0, 4, 17]):
        assert tuple(images[row, 10, 10]) == pixel(idx // 3, idx % 3)


@pytest.mark.parametrize("form", ["pkl", "npz", "folders"])
def test_images_are_resized_on_request(tmp_path: Path, form: str) -> None:
    folder = make_tiered(tmp_path, form, per_class=2, size=16)
    images = load_split(folder, "train").images(np.array([1, 2]), size=84)
    assert images.shape == (2, 84, 84, 3)
    assert tuple(images[1, 40, 40]) == pixel(1, 0)  # flat colour survives bilinear resizing


def test_the_paper_class_counts_are_checked() -> None:
    assert dict(TIERED_CLASSES) == {"train": 351, "val": 97, "test": 160}
    check_class_count("test", 160, TIERED_CLASSES)
    with pytest.raises(CirbenchError, match=r"test split has 159 classes, expected 160"):
        check_class_count("test", 159, TIERED_CLASSES)


def test_html_saved_as_pkl_is_named(tmp_path: Path) -> None:
    folder = make_tiered(tmp_path, "pkl")
    (folder / "test_images_png.pkl").write_bytes(HTML)
    with pytest.raises(CirbenchError, match=r"test_images_png.pkl is an HTML page"):
        load_split(folder, "test")


def test_missing_split_file_is_named(tmp_path: Path) -> None:
    folder = make_tiered(tmp_path, "npz")
    (folder / "test_labels.pkl").unlink()
    with pytest.raises(CirbenchError, match=r"file missing: .*test_labels.pkl"):
        load_split(folder, "test")


def test_no_dataset_at_all(tmp_path: Path) -> None:
    with pytest.raises(CirbenchError, match="tieredImageNet not found"):
        detect_form(tmp_path)


def test_truncated_pickle_and_wrong_labels_file(tmp_path: Path) -> None:
    folder = make_tiered(tmp_path, "pkl")
    data = (folder / "train_images_png.pkl").read_bytes()
    (folder / "train_images_png.pkl").write_bytes(data[: len(data) // 2])
    with pytest.raises(CirbenchError, match="not a readable pickle"):
        load_split(folder, "train")
    (folder / "val_labels.pkl").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(CirbenchError, match="not a tieredImageNet labels file"):
        read_labels(folder / "val_labels.pkl")


def test_image_and_label_counts_must_agree(tmp_path: Path) -> None:
    folder = make_tiered(tmp_path, "npz")
    images = np.load(folder / "test_images.npz")["images"]
    np.savez(folder / "test_images.npz", images=images[:-1])
    with pytest.raises(CirbenchError, match=r"images but .* labels"):
        load_split(folder, "test")
