from __future__ import annotations

from collections import Counter

import pytest
import torch

from cirbench.data.samplers import PKSampler


def labels_with_sizes(sizes: list[int]) -> list[int]:
    return [pid for pid, n in enumerate(sizes) for _ in range(n)]


def test_batches_are_p_identities_times_k_distinct_samples() -> None:
    labels = labels_with_sizes([9, 8, 12, 4, 7, 6, 10, 5])
    batches = list(PKSampler(labels, p=4, k=4, generator=torch.Generator().manual_seed(0)))
    assert batches
    for batch in batches:
        assert len(batch) == 16
        counts = Counter(labels[i] for i in batch)
        assert len(counts) == 4 and set(counts.values()) == {4}
        for pid in counts:
            mine = [i for i in batch if labels[i] == pid]
            assert len(set(mine)) == 4  # no repeats when the identity has >= K samples
    used = [i for b in batches for i in b]
    assert len(used) == len(set(used))  # each sample at most once per epoch


def test_identity_with_fewer_than_k_samples_is_filled_by_replacement() -> None:
    labels = labels_with_sizes([2, 4, 4, 4])
    sampler = PKSampler(labels, p=4, k=4, generator=torch.Generator().manual_seed(1))
    (batch,) = list(sampler)
    small = [i for i in batch if labels[i] == 0]
    assert len(small) == 4 and set(small) <= {0, 1}


def test_same_generator_seed_same_epoch_and_epochs_differ() -> None:
    labels = labels_with_sizes([8] * 10)
    a = PKSampler(labels, p=2, k=4, generator=torch.Generator().manual_seed(3))
    b = PKSampler(labels, p=2, k=4, generator=torch.Generator().manual_seed(3))
    first_a, first_b = list(a), list(b)
    assert first_a == first_b
    assert list(a) != first_a  # the next epoch is a new draw
    assert len(a) == len(first_a) == 10


def test_ranks_share_a_step_plan_and_never_share_an_identity() -> None:
    labels = labels_with_sizes([8] * 12)
    per_rank = [
        list(
            PKSampler(
                labels, p=3, k=4, generator=torch.Generator().manual_seed(5), rank=r, world_size=2
            )
        )
        for r in range(2)
    ]
    assert len(per_rank[0]) == len(per_rank[1]) > 0
    for b0, b1 in zip(*per_rank, strict=True):
        assert not {labels[i] for i in b0} & {labels[i] for i in b1}
        assert not set(b0) & set(b1)


def test_too_few_identities_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least"):
        PKSampler(labels_with_sizes([4, 4]), p=3, k=2)


def test_sharded_sampler_splits_p_over_processes(monkeypatch) -> None:
    from cirbench.data import samplers
    from cirbench.errors import CirbenchError

    labels = labels_with_sizes([8] * 12)
    monkeypatch.setattr(samplers.distributed, "world", lambda: (1, 2))
    sampler = samplers.sharded_pk_sampler(labels, p=4, k=4, generator=torch.Generator())
    assert (sampler.p, sampler.rank, sampler.world_size) == (2, 1, 2)
    assert all(len(b) == 8 for b in sampler)
    with pytest.raises(CirbenchError, match="cannot be split over 2 processes"):
        samplers.sharded_pk_sampler(labels, p=3, k=4, generator=torch.Generator())
