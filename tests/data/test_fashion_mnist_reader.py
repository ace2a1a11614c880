"""The IDX reader (cirbench.data.idx) on files built here, its bad inputs, and the real release."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
from fixture_fashion import FILES, coded_split, idx_bytes, write_idx

from cirbench.data import idx
from cirbench.data.catalog import check_dataset, load_catalog, resolve_data_root
from cirbench.errors import CirbenchError

# md5 of the decompressed official IDX files (see the provenance comment of datasets.yaml)
RAW_MD5 = {
    "train-images-idx3-ubyte.gz": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte.gz": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte.gz": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte.gz": "15d484375f8d13e6eb1aabb0c3f46965",
}


@pytest.mark.parametrize("gz", [True, False])
def test_round_trip_gzipped_or_plain(tmp_path: Path, gz: bool) -> None:
    images, labels = coded_split(30, seed=3)
    image_path = write_idx(tmp_path / "i", images, gz=gz)
    label_path = write_idx(tmp_path / "l", labels, gz=gz)
    got_images, got_labels = idx.read_pair(image_path, label_path, 10)
    assert np.array_equal(got_images, images) and got_images.shape == (30, 28, 28)
    assert np.array_equal(got_labels, labels) and got_labels.dtype == np.int64


def test_header_is_big_endian_with_the_published_magic_numbers() -> None:
    raw = idx_bytes(np.zeros((2, 3, 4), np.uint8))
    assert raw[:4] == b"\x00\x00\x08\x03" and raw[4:16] == bytes.fromhex("000000020000000300000004")
    assert idx_bytes(np.zeros(5, np.uint8))[:8] == bytes.fromhex("0000080100000005")


def _error(call) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(CirbenchError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


def test_truncated_gzip(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "x.gz", coded_split(20, 0)[0])
    path.write_bytes(path.read_bytes()[:-40])
    message = _error(lambda: idx.read_images(path))
    assert "is not a readable gzip file (truncated or corrupted" in message
    assert "x.gz" in message and "cirbench datasets verify" in message


def test_corrupt_gzip_body(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "x.gz", coded_split(20, 0)[0])
    raw = bytearray(path.read_bytes())
    raw[20:60] = bytes(40)
    path.write_bytes(bytes(raw))
    assert "not a readable gzip file" in _error(lambda: idx.read_images(path))


def test_truncated_payload(tmp_path: Path) -> None:
    raw = idx_bytes(coded_split(20, 0)[0])
    path = tmp_path / "x"
    path.write_bytes(gzip.compress(raw[:-28]))
    message = _error(lambda: idx.read_images(path))
    assert "header says 20 x 28 x 28 = 15680 values, the file holds 15652 (truncated)" in message


def test_trailing_bytes(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(idx_bytes(np.zeros(7, np.uint8)) + b"\x00")
    assert "holds 8 (trailing bytes)" in _error(lambda: idx.read_labels(path, 10))


def test_shorter_than_the_header(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(b"\x00\x00\x08\x03\x00")
    assert "5 bytes, shorter than the 16-byte IDX header" in _error(lambda: idx.read_images(path))


def test_wrong_magic_labels_read_as_images(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "x", np.zeros(10, np.uint8))
    message = _error(lambda: idx.read_images(path))
    assert "magic number 0x00000801, expected 0x00000803 (an image file" in message


def test_wrong_magic_value_type(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "x", np.zeros(10, np.uint8), magic=0x00000D01)  # float values
    assert "magic number 0x00000d01, expected 0x00000801" in _error(
        lambda: idx.read_labels(path, 10)
    )


def test_count_mismatch_between_images_and_labels(tmp_path: Path) -> None:
    images, labels = coded_split(20, 0)
    image_path = write_idx(tmp_path / "i.gz", images)
    label_path = write_idx(tmp_path / "l.gz", labels[:19])
    message = _error(lambda: idx.read_pair(image_path, label_path, 10))
    assert "holds 20 images but" in message and "19 labels" in message


def test_label_out_of_range(tmp_path: Path) -> None:
    labels = np.array([0, 3, 10, 2], np.uint8)
    path = write_idx(tmp_path / "l.gz", labels)
    assert "labels must be in 0..9, found 10" in _error(lambda: idx.read_labels(path, 10))


def test_unreadable_file(tmp_path: Path) -> None:
    assert "cannot read IDX file" in _error(lambda: idx.read_images(tmp_path / "absent.gz"))


# --- the real release, where the system package or the data root has it ---------------------


def _real_folder() -> Path:
    entry = load_catalog()["fashion-mnist"]
    status = check_dataset(entry, resolve_data_root(None))  # then its system_folder
    if not status.ok or status.folder is None:
        pytest.skip(
            "Fashion-MNIST not installed (apt-get install dataset-fashion-mnist): "
            + "; ".join(status.problems)
        )
    return status.folder


def test_real_release_is_the_official_content() -> None:
    folder = _real_folder()
    for name in FILES:
        raw = gzip.decompress((folder / name).read_bytes())
        assert hashlib.md5(raw, usedforsecurity=False).hexdigest() == RAW_MD5[name]


def test_real_release_reads_as_the_standard_split() -> None:
    folder = _real_folder()
    for images_name, labels_name, count in (
        (FILES[0], FILES[1], 60_000),
        (FILES[2], FILES[3], 10_000),
    ):
        images, labels = idx.read_pair(folder / images_name, folder / labels_name, 10)
        assert images.shape == (count, 28, 28) and images.dtype == np.uint8
        assert np.bincount(labels, minlength=10).tolist() == [count // 10] * 10
