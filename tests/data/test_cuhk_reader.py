"""CUHK-SYSU reader on generated .mat files with the release's nested structure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
from fixture_cuhk import CuhkFixture, write_cuhk_fixture

from cirbench.data.cuhk_sysu import (
    UNLABELED,
    _xywh,
    load_cuhk_sysu,
    load_protocol,
    xywh_to_xyxy,
)
from cirbench.errors import CirbenchError


@pytest.fixture()
def fx(tmp_path: Path) -> CuhkFixture:
    return write_cuhk_fixture(tmp_path / "cuhk_sysu")


def xyxy(b: tuple[int, int, int, int]) -> list[float]:
    return [b[0], b[1], b[0] + b[2], b[1] + b[3]]


def test_fixture_has_the_structure_the_reference_loaders_index() -> None:
    """The indexing of ShuangLI59/person_search psdb.py and SeqNet cuhk_sysu.py works."""
    import tempfile

    root = Path(tempfile.mkdtemp()) / "c"
    write_cuhk_fixture(root)
    img = scipy.io.loadmat(root / "annotation/Images.mat")["Img"].squeeze()
    name, _, boxes = img[0]
    assert str(name[0]) == "s1.jpg"
    assert np.asarray([b[0] for b in boxes[0]]).reshape(-1, 4).shape == (4, 4)
    pool = scipy.io.loadmat(root / "annotation/pool.mat")["pool"].squeeze()
    assert str(pool[0][0]) == "s100.jpg"
    train = scipy.io.loadmat(root / "annotation/test/train_test/Train.mat")["Train"].squeeze()
    scene_name, box, _ = train[0][0, 0][2].squeeze()[0]
    assert str(scene_name[0]) == "s1.jpg" and box.squeeze().shape == (4,)
    protoc = scipy.io.loadmat(root / "annotation/test/train_test/TestG50.mat")["TestG50"]
    protoc = protoc.squeeze()
    assert str(protoc["Query"][0]["imname"][0, 0][0]) == "s100.jpg"
    assert protoc["Query"][0]["idlocate"][0, 0][0].shape == (4,)
    assert str(protoc[0]["Query"][0, 0][0][0]) == "s100.jpg"
    gallery = protoc["Gallery"][0].squeeze()
    assert gallery[0][1][0].size == 4 and gallery[-1][1][0].size == 0  # distractor: empty


def test_train_split_identities_and_dropped_boxes(fx: CuhkFixture) -> None:
    ds = load_cuhk_sysu(fx.root)
    assert [s.name for s in ds.train] == sorted(fx.train_images)
    assert [s.name for s in ds.gallery] == fx.pool
    assert ds.num_identities == fx.num_identities == 6
    assert ds.dropped_boxes == fx.dropped_boxes == 3
    assert ds.unmatched_train_boxes == 0
    for scene in ds.train:
        people = fx.people[scene.name]
        np.testing.assert_array_equal(scene.boxes, [xyxy(p[:4]) for p in people])
        want = [int(p[4][1:]) - 1 if p[4] else UNLABELED for p in people]
        assert scene.pids.tolist() == want
        assert scene.boxes.dtype == np.float32
    assert all((s.pids == UNLABELED).all() for s in ds.gallery)
    counts = np.bincount(np.concatenate([s.pids[s.pids >= 0] for s in ds.train]))
    assert counts.tolist() == [4] * 6  # every identity in 4 training scenes


def test_protocol_queries_and_galleries(fx: CuhkFixture) -> None:
    queries = load_protocol(fx.root, 100)
    assert len(queries) == len(fx.queries) == 3
    for q, (name, box, gallery) in zip(queries, fx.queries, strict=True):
        assert q.image == name
        np.testing.assert_array_equal(q.box, xyxy(box))
        assert [g.image for g in q.gallery] == [g for g, _ in gallery]
        for item, (_, b) in zip(q.gallery, gallery, strict=True):
            assert (item.box is None) == (b is None)
            if b is not None:
                np.testing.assert_array_equal(item.box, xyxy(b))
    # the full gallery uses TestG50's queries
    assert [q.image for q in load_protocol(fx.root, -1)] == [q.image for q in queries]


def test_uint8_coordinates_are_widened_before_adding() -> None:
    box = _xywh(np.array([[200, 10, 100, 250]], dtype=np.uint8))
    assert xywh_to_xyxy(box).tolist() == [200.0, 10.0, 300.0, 260.0]


@pytest.mark.parametrize(
    "rel", ["annotation/Images.mat", "annotation/pool.mat", "annotation/test/train_test/Train.mat"]
)
def test_missing_mat_file(fx: CuhkFixture, rel: str) -> None:
    (fx.root / rel).unlink()
    with pytest.raises(CirbenchError, match=f"{rel} is missing"):
        load_cuhk_sysu(fx.root)


def test_mat_with_a_different_structure(fx: CuhkFixture) -> None:
    # Img as a plain numeric matrix instead of the struct array
    scipy.io.savemat(fx.root / "annotation/Images.mat", {"Img": np.ones((3, 4))})
    with pytest.raises(CirbenchError, match="does not have the structure of the release"):
        load_cuhk_sysu(fx.root)


def test_mat_without_the_expected_variable(fx: CuhkFixture) -> None:
    scipy.io.savemat(fx.root / "annotation/pool.mat", {"test_pool": np.ones(2)})
    with pytest.raises(CirbenchError, match=r"has no variable 'pool'.*found: test_pool"):
        load_cuhk_sysu(fx.root)


def test_not_a_mat_file(fx: CuhkFixture) -> None:
    (fx.root / "annotation/test/train_test/Train.mat").write_text("<html>expired</html>")
    with pytest.raises(CirbenchError, match="not a readable MATLAB file"):
        load_cuhk_sysu(fx.root)


def test_protocol_with_a_different_structure(fx: CuhkFixture) -> None:
    bad = np.empty((1, 2), dtype=[("Query", "O"), ("Other", "O")])
    bad[0, 0] = bad[0, 1] = (np.ones((1, 4)), np.ones((1, 4)))
    scipy.io.savemat(fx.root / "annotation/test/train_test/TestG100.mat", {"TestG100": bad})
    with pytest.raises(CirbenchError, match=r"TestG100.mat does not have the structure"):
        load_protocol(fx.root, 100)


def test_image_listed_but_missing_on_disk(fx: CuhkFixture) -> None:
    (fx.root / "Image/SSM/s101.jpg").unlink()
    with pytest.raises(CirbenchError, match=r"1 images named in the annotation.*s101.jpg"):
        load_cuhk_sysu(fx.root)


def test_gallery_size_without_its_file(fx: CuhkFixture) -> None:
    with pytest.raises(CirbenchError, match=r"gallery size 500 needs .*TestG500.mat"):
        load_protocol(fx.root, 500)
    with pytest.raises(CirbenchError, match="no gallery size 77"):
        load_protocol(fx.root, 77)
