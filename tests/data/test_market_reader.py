from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from fixture_market import write_jpeg, write_market_fixture

from cirbench.data.market import (
    OFFICIAL_COUNTS,
    MarketCounts,
    MarketName,
    check_official_counts,
    parse_name,
    read_market,
)
from cirbench.errors import CirbenchError


def test_parse_name() -> None:
    assert parse_name("0002_c1s1_000451_03.jpg") == MarketName(2, 1, 1, 451, 3)
    assert parse_name("-1_c6s3_012345_00.jpg") == MarketName(-1, 6, 3, 12345, 0)
    assert parse_name("0000_c2s4_000001_01.jpg").pid == 0


@pytest.mark.parametrize(
    "bad",
    [
        "2_c1s1_000451_03.jpg",
        "0002_c7s1_000451_03.jpg",
        "0002_c1_000451_03.jpg",
        "0002_c1s1_000451_03.png",
        "0002_c1s1_000451.jpg",
    ],
)
def test_parse_name_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_name(bad)


def test_reader_counts_relabels_and_drops_junk(tmp_path: Path, caplog) -> None:
    fx = write_market_fixture(tmp_path)
    with caplog.at_level(logging.WARNING):
        data = read_market(fx.folder)
    assert "Thumbs.db" in caplog.text  # skipped, but not silently
    c = data.counts
    assert c == MarketCounts(
        fx.train_images, fx.train_ids, fx.query_images, fx.test_files, fx.gallery_images
    )
    assert data.junk_dropped == fx.junk
    assert sorted(set(data.train.pids.tolist())) == list(range(fx.train_ids))
    assert data.train_original_pids.tolist() == [2 * i + 1 for i in range(fx.train_ids)]
    # Relabelling is consistent with the file names.
    for path, label in zip(data.train.paths, data.train.pids, strict=True):
        assert int(path.name[:4]) == data.train_original_pids[label]
    assert -1 not in data.gallery.pids
    assert int(np.sum(data.gallery.pids == 0)) == fx.distractors
    assert set(data.query.cams.tolist()) == {0, 1}  # c1, c2 -> 0-based
    assert data.fingerprint == read_market(fx.folder).fingerprint


def test_missing_folder_names_the_expected_layout(tmp_path: Path) -> None:
    fx = write_market_fixture(tmp_path)
    (fx.folder / "query").rename(fx.folder / "queries")
    with pytest.raises(CirbenchError, match=r"query/ missing .*bounding_box_train,query"):
        read_market(fx.folder)


def test_wrong_file_name_names_the_pattern(tmp_path: Path) -> None:
    fx = write_market_fixture(tmp_path)
    write_jpeg(fx.folder / "bounding_box_train" / "person2_cam1.jpg", 1, 0)
    with pytest.raises(
        CirbenchError,
        match=r"bad file name bounding_box_train/person2_cam1.jpg.*"
        r"0002_c1s1_000451_03.jpg",
    ):
        read_market(fx.folder)


def test_unreadable_image_is_named(tmp_path: Path) -> None:
    fx = write_market_fixture(tmp_path)
    (fx.folder / "query" / "0100_c3s1_000999_01.jpg").write_bytes(b"<html>not an image")
    with pytest.raises(CirbenchError, match=r"unreadable image query/0100_c3s1_000999_01.jpg"):
        read_market(fx.folder)


def test_query_id_absent_from_gallery(tmp_path: Path) -> None:
    fx = write_market_fixture(tmp_path)
    write_jpeg(fx.folder / "query" / "0555_c1s1_000001_01.jpg", 555, 0)
    with pytest.raises(
        CirbenchError,
        match=r"query id\(s\) have no image in bounding_box_test/ "
        r"\(e.g. id 555",
    ):
        read_market(fx.folder)


def test_junk_in_training_folder_is_an_error(tmp_path: Path) -> None:
    fx = write_market_fixture(tmp_path)
    write_jpeg(fx.folder / "bounding_box_train" / "-1_c1s1_000001_01.jpg", 1, 0)
    with pytest.raises(CirbenchError, match="belong in bounding_box_test/ only"):
        read_market(fx.folder)


def test_official_counts_check() -> None:
    check_official_counts(OFFICIAL_COUNTS)
    check_official_counts(MarketCounts(10, 3, 4, 5, 5))  # not the official tree: not checked
    wrong = MarketCounts(12936, 750, 3368, 19732, 15913)
    with pytest.raises(CirbenchError, match="contents do not"):
        check_official_counts(wrong)
