"""A datasets.yaml file entry may list several accepted md5s (official and re-zipped copies)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from cirbench.data.catalog import check_dataset, load_catalog, require_dataset
from cirbench.errors import CirbenchError

OFFICIAL, REZIPPED, OTHER = b"official zip bytes", b"re-zipped copy bytes", b"something else"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def write_catalog(path: Path, md5_field: str) -> Path:
    path.write_text(
        "toy:\n"
        "  description: a toy dataset\n"
        "  folder: toy\n"
        "  source: made by the test\n"
        "  files:\n"
        "    - path: data.zip\n"
        f"      md5: {md5_field}\n",
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize("content", [OFFICIAL, REZIPPED])
def test_any_listed_md5_is_accepted(tmp_path: Path, content: bytes) -> None:
    catalog = load_catalog(
        write_catalog(tmp_path / "c.yaml", f"[{md5(OFFICIAL)}, {md5(REZIPPED)}]")
    )
    spec = catalog["toy"].files[0]
    assert spec.accepted_md5 == (md5(OFFICIAL), md5(REZIPPED))
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "data.zip").write_bytes(content)
    assert check_dataset(catalog["toy"], tmp_path).ok


def test_unlisted_md5_names_every_accepted_one(tmp_path: Path) -> None:
    catalog = load_catalog(
        write_catalog(tmp_path / "c.yaml", f"[{md5(OFFICIAL)}, {md5(REZIPPED)}]")
    )
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "data.zip").write_bytes(OTHER)
    with pytest.raises(CirbenchError) as info:
        require_dataset("toy", tmp_path, catalog=catalog)
    assert f"expected {md5(OFFICIAL)} or {md5(REZIPPED)}, got {md5(OTHER)}" in str(info.value)


@pytest.mark.parametrize("field", ["[]", "[abc]", f"[{md5(OFFICIAL)}, 12]"])
def test_bad_md5_lists_are_packaging_errors(tmp_path: Path, field: str) -> None:
    with pytest.raises(ValueError, match="32 lowercase hex digits"):
        load_catalog(write_catalog(tmp_path / "c.yaml", field))


def test_omniglot_accepts_the_shared_and_the_official_evaluation_zip() -> None:
    spec = next(f for f in load_catalog()["omniglot"].files if f.path == "images_evaluation.zip")
    assert spec.accepted_md5 == (
        "e126e53ca4e20690be1cc4b982f6c766",  # shared/data re-zipped copy
        "6b91aef0f799c5bb55b94e3f2daec811",  # official (torchvision's Omniglot zips_md5)
    )
