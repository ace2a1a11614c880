from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cirbench.data.omniglot import check_classes, decode_png, load_set
from cirbench.errors import CirbenchError

ALPHABETS = {"Alpha": 2, "Beta": 3}  # characters per alphabet in the generated set
DRAWERS = 3


def stroke_png(seed: int) -> bytes:
    """A 105x105 1-bit image like Omniglot's: white background, a black block somewhere."""
    img = np.ones((105, 105), dtype=bool)
    img[seed % 90 : seed % 90 + 15, 10:40] = False
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def members(name: str) -> dict[str, bytes]:
    out = {}
    for a, (alphabet, n_chars) in enumerate(ALPHABETS.items()):
        for c in range(1, n_chars + 1):
            for d in range(1, DRAWERS + 1):
                path = f"{name}/{alphabet}/character{c:02d}/{a * 100 + c:04d}_{d:02d}.png"
                out[path] = stroke_png(a * 31 + c * 7 + d)
    return out


def write_zip(folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / f"{name}.zip", "w") as zf:
        for path, data in members(name).items():
            zf.writestr(path, data)


def write_tree(folder: Path, name: str) -> None:
    for path, data in members(name).items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)


def test_zip_and_unzipped_folder_give_the_same_arrays(tmp_path: Path) -> None:
    write_zip(tmp_path / "z", "set_a")
    write_tree(tmp_path / "f", "set_a")
    from_zip = load_set(tmp_path / "z", "set_a")
    from_dir = load_set(tmp_path / "f", "set_a")
    assert from_zip.images.shape == (15, 28, 28) and from_zip.images.dtype == np.uint8
    assert from_zip.classes == (
        "Alpha/character01",
        "Alpha/character02",
        *(f"Beta/character{c:02d}" for c in (1, 2, 3)),
    )
    assert np.bincount(from_zip.labels).tolist() == [3] * 5
    assert np.array_equal(from_zip.images, from_dir.images)
    assert np.array_equal(from_zip.labels, from_dir.labels)
    assert load_set(tmp_path / "z", "set_a") is from_zip  # cached


def test_strokes_are_bright_after_decoding() -> None:
    image = decode_png(stroke_png(0), 105)
    assert image[5, 20] == 255 and image[50, 80] == 0  # block (stroke) vs background
    assert decode_png(stroke_png(0), 28).shape == (28, 28)


def test_missing_set_and_broken_zip(tmp_path: Path) -> None:
    with pytest.raises(CirbenchError, match=r"set 'images_evaluation' not found"):
        load_set(tmp_path, "images_evaluation")
    (tmp_path / "images_evaluation.zip").write_bytes(b"<html>not found</html>")
    with pytest.raises(CirbenchError, match="not a readable zip"):
        load_set(tmp_path, "images_evaluation")


def test_class_count_check(tmp_path: Path) -> None:
    write_zip(tmp_path, "set_b")
    data = load_set(tmp_path, "set_b")
    check_classes(data, 5)
    with pytest.raises(CirbenchError, match="has 5 characters, expected 659"):
        check_classes(data, 659)


def test_real_sets_have_the_official_character_counts(shared_data: Path) -> None:
    folder = shared_data / "omniglot"
    small1 = load_set(folder, "images_background_small1")
    small2 = load_set(folder, "images_background_small2")
    assert (small1.num_classes, small2.num_classes) == (136, 156)
    assert (len(small1.labels), len(small2.labels)) == (2720, 3120)
    assert np.all(np.bincount(small1.labels) == 20)
    check_classes(small1)
    check_classes(small2)


def test_sets_sharing_characters_merge_each_image_once(tmp_path: Path) -> None:
    from cirbench.tasks.fewshot import merge_sets

    write_zip(tmp_path, "set_a")
    write_zip(tmp_path, "set_b")  # the same 5 characters, the same 15 images
    merged = merge_sets([load_set(tmp_path, "set_a"), load_set(tmp_path, "set_b")])
    assert merged.images.shape == (15, 1, 28, 28)
    assert np.bincount(merged.labels).tolist() == [3] * 5


def test_a_non_png_member_is_one_clear_error(tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    bad = {**members("images_background")}
    first = next(iter(bad))
    bad[first] = b"<html>not a picture</html>"
    with zipfile.ZipFile(tmp_path / "images_background.zip", "w") as zf:
        for path, data in bad.items():
            zf.writestr(path, data)
    with pytest.raises(CirbenchError, match=r"is not a readable PNG .*download"):
        load_set(tmp_path, "images_background")
