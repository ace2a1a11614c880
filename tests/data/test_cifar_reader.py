"""CIFAR reader: both layouts on generated fixtures, bad files, augmentation, the real subset."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fixture_cifar import (
    CIFAR10_NAMES,
    coarse_of,
    dump,
    images_for,
    py2_pickle,
    write_cifar10,
    write_cifar100,
)

from cirbench.data.catalog import require_dataset
from cirbench.data.cifar import (
    channel_stats,
    load_pickle,
    random_crop_flip,
    read_cifar10,
    read_cifar100,
    shuffled_batches,
)
from cirbench.errors import CirbenchError


@pytest.fixture()
def cifar10(tmp_path: Path) -> Path:
    return write_cifar10(tmp_path / "cifar-10-batches-py", per_batch=20, test=30)


@pytest.fixture()
def cifar100(tmp_path: Path) -> Path:
    return write_cifar100(tmp_path / "cifar-100-python", train=200, test=100)


def test_fixture_is_written_like_python2(cifar10: Path) -> None:
    """Keys load as bytes under encoding='bytes' and the array names numpy.core (numpy 1.x)."""
    raw = (cifar10 / "data_batch_1").read_bytes()
    assert b"cnumpy.core.multiarray\n_reconstruct" in raw
    batch = pickle.loads(raw, encoding="bytes")
    assert set(batch) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert batch[b"data"].shape == (20, 3072) and batch[b"data"].dtype == np.uint8
    assert pickle.loads(raw, encoding="latin1")["labels"][:3] == [1, 2, 3]


def test_cifar10_train_concatenates_the_five_batches_in_order(cifar10: Path) -> None:
    split = read_cifar10(cifar10, "train")
    assert split.images.shape == (100, 3, 32, 32) and split.images.dtype == torch.uint8
    assert split.labels.dtype == torch.int64
    expected = np.concatenate([(np.arange(20) + i) % 10 for i in range(1, 6)])
    assert split.labels.tolist() == expected.tolist()
    assert split.names == CIFAR10_NAMES
    assert split.coarse_labels is None and split.coarse_names is None


def test_cifar10_images_stay_paired_with_labels(cifar10: Path) -> None:
    split = read_cifar10(cifar10, "test")
    assert len(split) == 30
    expected = images_for(np.arange(30) % 10).reshape(30, 3, 32, 32)
    assert np.array_equal(split.images.numpy(), expected)
    assert split.labels.tolist() == (np.arange(30) % 10).tolist()


def test_cifar10_channel_planes_are_red_green_blue(cifar10: Path) -> None:
    """3072 values = 1024 red, 1024 green, 1024 blue, each plane row-major."""
    batch = load_pickle(cifar10 / "test_batch")
    data = np.zeros((1, 3072), dtype=np.uint8)
    data[0, 0] = 10  # red (0, 0)
    data[0, 1024 + 33] = 20  # green, row 1, column 1
    data[0, 2048 + 31] = 30  # blue, row 0, column 31
    batch.update(data=data, labels=[4], filenames=[b"a.png"])
    dump(cifar10 / "test_batch", {k.encode(): v for k, v in batch.items()})
    image = read_cifar10(cifar10, "test").images[0]
    assert image[0, 0, 0] == 10 and image[1, 1, 1] == 20 and image[2, 0, 31] == 30
    assert int(image.sum()) == 60


def test_cifar100_fine_and_coarse_labels(cifar100: Path) -> None:
    train = read_cifar100(cifar100, "train")
    assert train.images.shape == (200, 3, 32, 32)
    fine = np.arange(200) % 100
    assert train.labels.tolist() == fine.tolist()
    assert train.coarse_labels is not None
    assert train.coarse_labels.tolist() == coarse_of(fine).tolist()
    assert train.names[:2] == ("fine_00", "fine_01") and len(train.names) == 100
    assert train.coarse_names is not None and len(train.coarse_names) == 20
    test = read_cifar100(cifar100, "test")
    assert test.labels.tolist() == ((np.arange(100) * 3) % 100).tolist()
    expected = images_for((np.arange(100) * 3) % 100).reshape(100, 3, 32, 32)
    assert np.array_equal(test.images.numpy(), expected)


def test_python3_pickles_with_str_keys_are_read_too(tmp_path: Path) -> None:
    """Copies re-saved by Python 3 (like the shared subset) have str keys and names."""
    folder = write_cifar10(tmp_path / "c10")
    labels = [3, 1, 4]
    batch = {"batch_label": "b", "labels": labels, "data": images_for(np.array(labels))}
    (folder / "test_batch").write_bytes(pickle.dumps({**batch, "filenames": ["x"] * 3}))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list(CIFAR10_NAMES)}))
    split = read_cifar10(folder, "test")
    assert split.labels.tolist() == labels and split.names == CIFAR10_NAMES


def test_a_pickle_naming_other_code_is_refused_without_running_it(tmp_path: Path) -> None:
    path = tmp_path / "data_batch_1"
    marker = tmp_path / "ran"
    path.write_bytes(pickle.dumps(_Evil(str(marker)), protocol=2))
    with pytest.raises(CirbenchError, match=r"references .*system.*never contains"):
        load_pickle(path)
    assert not marker.exists()


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_truncated_batch(cifar10: Path, keep: float) -> None:
    path = cifar10 / "data_batch_2"
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(CirbenchError, match=r"data_batch_2 is not a readable CIFAR pickle"):
        read_cifar10(cifar10, "train")


def test_garbage_bytes(cifar10: Path) -> None:
    (cifar10 / "test_batch").write_bytes(bytes(range(256)) * 40)
    with pytest.raises(CirbenchError, match="truncated or corrupted"):
        read_cifar10(cifar10, "test")


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ([1, 2, 3], "holds a list, not the dict"),
        ({b"labels": [0]}, r"has no key 'data' \(its keys: labels\)"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "uint8 array"),
        ({b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]}, "1024 values per image"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "1 labels for 2 images"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"outside 0\.\.9"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [b"a", b"b"]}, "list of integers"),
    ],
)
def test_wrong_structure(cifar10: Path, batch: object, message: str) -> None:
    (cifar10 / "test_batch").write_bytes(py2_pickle(batch))
    with pytest.raises(CirbenchError, match=message) as info:
        read_cifar10(cifar10, "test")
    assert "test_batch" in str(info.value)


def test_meta_without_names(cifar100: Path) -> None:
    dump(cifar100 / "meta", {b"fine_label_names": [b"x"] * 100})
    with pytest.raises(CirbenchError, match="no key 'coarse_label_names'"):
        read_cifar100(cifar100, "train")


def test_missing_file_is_a_user_error(cifar10: Path) -> None:
    (cifar10 / "data_batch_4").unlink()
    with pytest.raises(CirbenchError, match=r"cannot read CIFAR file .*data_batch_4"):
        read_cifar10(cifar10, "train")


# --- augmentation and batches ---------------------------------------------------------------


def _reference_crop_flip(images: torch.Tensor, seed: int, pad: int) -> torch.Tensor:
    """Per-image loop with the same random draws as random_crop_flip."""
    g = torch.Generator().manual_seed(seed)
    b, _, h, w = images.shape
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=g)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=g)
    flip = torch.rand(b, generator=g) < 0.5
    padded = F.pad(images, (pad, pad, pad, pad))
    out = []
    for i in range(b):
        crop = padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w]
        out.append(crop.flip(2) if flip[i] else crop)
    return torch.stack(out)


def test_random_crop_flip_matches_a_per_image_loop() -> None:
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    out = random_crop_flip(images, torch.Generator().manual_seed(7), pad=4)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    assert torch.equal(out, _reference_crop_flip(images, 7, pad=4))


def test_random_crop_flip_pads_with_zeros_and_flips_about_half() -> None:
    images = torch.full((400, 3, 32, 32), 200, dtype=torch.uint8)
    images[:, :, :, 0] = 7  # a marked left column
    out = random_crop_flip(images, torch.Generator().manual_seed(0), pad=0)
    left = (out[:, :, :, 0] == 7).all(dim=(1, 2))
    right = (out[:, :, :, -1] == 7).all(dim=(1, 2))
    assert torch.all(left ^ right)
    assert 0.4 < float(right.float().mean()) < 0.6
    shifted = random_crop_flip(images, torch.Generator().manual_seed(0), pad=4)
    zero_rows = (shifted == 0).all(dim=(1, 3)).sum(dim=1)  # rows of padding per image
    assert int(zero_rows.max()) == 4 and int(zero_rows.min()) == 0
    assert torch.equal(random_crop_flip(images, torch.Generator().manual_seed(0), 0, False), images)


def test_shuffled_batches_drop_the_last_and_follow_the_generator() -> None:
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 3, 32, 32)
    labels = torch.arange(10)
    batches = list(shuffled_batches(images, labels, 4, torch.Generator().manual_seed(0), None))
    assert [len(y) for _, y in batches] == [4, 4]
    for x, y in batches:
        assert torch.equal(x[:, 0, 0, 0].long(), y)  # images stay with their labels
    again = list(shuffled_batches(images, labels, 4, torch.Generator().manual_seed(0), None))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(batches, again, strict=True))
    augmented = next(iter(shuffled_batches(images, labels, 10, torch.Generator(), 4)))[0]
    assert augmented.shape == (10, 3, 32, 32) and augmented.dtype == torch.uint8


def test_channel_stats_match_float_computation() -> None:
    images = torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8)
    mean, std = channel_stats(images)
    as_float = images.double() / 255.0
    assert np.allclose(mean, as_float.mean(dim=(0, 2, 3)).numpy(), atol=1e-9)
    assert np.allclose(std, as_float.std(dim=(0, 2, 3), unbiased=False).numpy(), atol=1e-9)


# --- the real subset ------------------------------------------------------------------------


def test_real_subset(shared_data: Path) -> None:
    folder = require_dataset("cifar10-subset", shared_data)
    train, test = read_cifar10(folder, "train"), read_cifar10(folder, "test")
    assert train.names == CIFAR10_NAMES
    assert train.images.shape == (5085, 3, 32, 32) and len(test) == 1017
    for start in range(0, 5085, 1017):  # one batch file after the other
        counts = torch.bincount(train.labels[start : start + 1017], minlength=10)
        assert int(counts.min()) >= 83 and int(counts.max()) <= 120
    counts = torch.bincount(test.labels, minlength=10)
    assert int(counts.min()) >= 83 and int(counts.max()) <= 120
    assert counts.tolist() == [105, 93, 100, 104, 92, 87, 114, 102, 110, 110]
    # Real photographs: full value range and no two identical training images in a batch.
    assert int(train.images.min()) == 0 and int(train.images.max()) == 255
    assert len(torch.unique(train.images[:1017].view(1017, -1), dim=0)) == 1017
    mean, _ = channel_stats(train.images)
    assert 0.4 < mean[0] < 0.55 and mean[2] < mean[0]  # CIFAR-10 is less blue than red


def test_real_subset_is_not_accepted_as_the_official_release(shared_data: Path) -> None:
    with pytest.raises(CirbenchError, match="data_batch_1: md5 mismatch") as info:
        require_dataset("cifar10", shared_data / "cifar10-subset")
    assert "batches.meta" not in str(info.value).split("expected folder")[0]
