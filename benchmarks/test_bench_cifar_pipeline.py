"""Images/s of the CIFAR training input pipeline: one epoch of shuffled batches of 128 with the
standard augmentation (zero-pad 4, random 32 x 32 crop, horizontal flip) on uint8 tensors.

Data: the real CIFAR-10 subset (5,085 training images) when ``../shared/data`` is beside the
repository, else 5,085 random uint8 images of the same shape (the pipeline does not look at
pixel values, so speed is the same). ``cirbench`` augments a whole batch with one indexing op
(:func:`cirbench.data.cifar.random_crop_flip`); the reference is torchvision.transforms.v2
(``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip()``) applied image by image to the same
uint8 tensors and stacked, the usual per-sample Dataset pipeline without worker processes.
``test_batched_vs_torchvision_v2`` times both, interleaved in one run, and reports the speed-up
``v2_over_batched`` in ``extra_info``. Timings go to the benchmark report, never to pass/fail.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from pytest_benchmark.fixture import BenchmarkFixture
from torch import Tensor
from torchvision.transforms import v2

from cirbench.data.catalog import require_dataset
from cirbench.data.cifar import read_cifar10, shuffled_batches
from cirbench.errors import CirbenchError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BATCH, PAD, IMAGES = 128, 4, 5085
ROUNDS = 5

Epoch = Callable[[], int]


def load_images() -> tuple[Tensor, Tensor, str]:
    try:
        split = read_cifar10(require_dataset("cifar10-subset", SHARED_DATA), "train")
        return split.images, split.labels, "cifar10-subset (real)"
    except CirbenchError:
        g = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (IMAGES, 3, 32, 32), dtype=torch.uint8, generator=g)
        return images, torch.randint(0, 10, (IMAGES,), generator=g), "generated"


@pytest.fixture(scope="module")
def data() -> tuple[Tensor, Tensor, str]:
    return load_images()


def per_image_v2(
    images: Tensor, labels: Tensor, generator: torch.Generator
) -> Iterator[tuple[Tensor, Tensor]]:
    """The same epoch, augmented one image at a time by torchvision.transforms.v2."""
    transform = v2.Compose([v2.RandomCrop(32, padding=PAD), v2.RandomHorizontalFlip()])
    order = torch.randperm(len(labels), generator=generator)
    for start in range(0, len(labels) - BATCH + 1, BATCH):
        idx = order[start : start + BATCH]
        yield torch.stack([transform(image) for image in images[idx]]), labels[idx]


def epoch_of(batches: Callable[[torch.Generator], Iterator[tuple[Tensor, Tensor]]]) -> Epoch:
    def run() -> int:
        seen = 0
        for x, _ in batches(torch.Generator().manual_seed(0)):
            seen += len(x)
        return seen

    return run


def timed(epoch: Epoch) -> tuple[float, int]:
    start = time.perf_counter()
    seen = epoch()
    return time.perf_counter() - start, seen


@pytest.mark.parametrize("augment", [True, False], ids=["augmented", "plain"])
def test_batched_pipeline(benchmark: BenchmarkFixture, data, augment: bool) -> None:
    images, labels, source = data
    pad = PAD if augment else None
    epoch = epoch_of(lambda g: shuffled_batches(images, labels, BATCH, g, pad))
    benchmark.group = "cifar-pipeline"
    seen = benchmark(epoch)
    benchmark.extra_info.update(data=source, images_per_epoch=seen, batch=BATCH)
    if not benchmark.disabled:
        benchmark.extra_info["images_per_s"] = seen / benchmark.stats.stats.median
    assert seen == len(labels) // BATCH * BATCH


def test_batched_vs_torchvision_v2(benchmark: BenchmarkFixture, data) -> None:
    images, labels, source = data
    batched = epoch_of(lambda g: shuffled_batches(images, labels, BATCH, g, PAD))
    per_image = epoch_of(lambda g: per_image_v2(images, labels, g))
    rounds = 1 if benchmark.disabled else ROUNDS
    t_batched: list[float] = []
    t_v2: list[float] = []
    for i in range(rounds):  # interleaved, alternating which goes first
        pair = (batched, per_image) if i % 2 == 0 else (per_image, batched)
        first, second = timed(pair[0])[0], timed(pair[1])[0]
        t_batched.append(first if i % 2 == 0 else second)
        t_v2.append(second if i % 2 == 0 else first)
    seen = len(labels) // BATCH * BATCH
    batched_s, v2_s = statistics.median(t_batched), statistics.median(t_v2)
    benchmark.group = "cifar-pipeline-vs-v2"
    benchmark.extra_info.update(
        data=source,
        rounds=rounds,
        batched_images_per_s=seen / batched_s,
        v2_per_image_images_per_s=seen / v2_s,
        v2_over_batched=v2_s / batched_s,
    )
    assert benchmark.pedantic(batched, rounds=rounds, iterations=1) == seen
