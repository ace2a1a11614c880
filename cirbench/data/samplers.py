"""P x K identity batches: P identities, K samples each, for triplet / circle / proto training.

Per epoch (all randomness from one ``torch.Generator``, so every rank draws the same plan):
each identity's indices are shuffled and cut into chunks of K; an identity with fewer than K
samples is first filled up to K by drawing with replacement (as reid-strong-baseline's
``RandomIdentitySampler`` does), and a trailing chunk shorter than K is dropped. Then, step after
step, ``P * world_size`` distinct identities that still have chunks are drawn at random; rank r
takes identities ``[r*P, (r+1)*P)`` of that draw, one chunk each. So within a step every identity
goes to exactly one rank, and the epoch ends when fewer than ``P * world_size`` identities have
chunks left. Defaults P=16, K=4 are the strong baseline's (Luo et al. 2019).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from cirbench import distributed
from cirbench.errors import CirbenchError


def identity_chunks(
    labels: Sequence[int], k: int, generator: torch.Generator
) -> dict[int, list[list[int]]]:
    """Shuffled chunks of K indices per identity (fewer than K: drawn with replacement)."""
    by_id: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_id.setdefault(int(label), []).append(index)
    chunks: dict[int, list[list[int]]] = {}
    for pid in sorted(by_id):
        idx = torch.tensor(by_id[pid])
        if len(idx) < k:
            idx = idx[torch.randint(len(idx), (k,), generator=generator)]
        else:
            idx = idx[torch.randperm(len(idx), generator=generator)]
        full = len(idx) // k * k
        chunks[pid] = [idx[i : i + k].tolist() for i in range(0, full, k)]
    return chunks


class PKSampler:
    """Batch sampler yielding lists of P*K dataset indices (use as ``batch_sampler=``)."""

    def __init__(
        self,
        labels: Sequence[int],
        p: int = 16,
        k: int = 4,
        generator: torch.Generator | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        n_ids = len(set(int(x) for x in labels))
        if p < 1 or k < 1:
            raise ValueError(f"P and K must be >= 1, got P={p}, K={k}")
        if n_ids < p * world_size:
            raise ValueError(
                f"P x K sampling needs at least P*world_size = {p * world_size} identities, "
                f"the data has {n_ids}"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.labels = list(labels)
        self.p, self.k, self.rank, self.world_size = p, k, rank, world_size
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)

    def __iter__(self) -> Iterator[list[int]]:
        chunks = identity_chunks(self.labels, self.k, self.generator)
        need = self.p * self.world_size
        while True:
            available = [pid for pid, c in chunks.items() if c]
            if len(available) < need:
                return
            order = torch.randperm(len(available), generator=self.generator)[:need].tolist()
            picked = [available[i] for i in order]
            drawn = {pid: chunks[pid].pop() for pid in picked}
            mine = picked[self.rank * self.p : (self.rank + 1) * self.p]
            yield [index for pid in mine for index in drawn[pid]]

    def __len__(self) -> int:
        """Upper bound on batches per epoch (exact when no identity runs out early)."""
        per_id: dict[int, int] = {}
        for label in self.labels:
            per_id[int(label)] = per_id.get(int(label), 0) + 1
        total_chunks = sum(max(1, n // self.k) for n in per_id.values())
        return total_chunks // (self.p * self.world_size)


def sharded_pk_sampler(
    labels: Sequence[int], p: int, k: int, generator: torch.Generator
) -> PKSampler:
    """P x K batches for this process: ``p`` is the number of identities of the global batch,
    split evenly over the training processes (one process: the plain sampler)."""
    rank, size = distributed.world()
    if p % size:
        raise CirbenchError(
            f"P = {p} identities per batch cannot be split over {size} processes: "
            f"use --nproc dividing {p} or set P to a multiple of {size}"
        )
    return PKSampler(labels, p // size, k, generator, rank, size)
