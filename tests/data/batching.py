"""Batching helpers that only the tests use: collating features stored under another key, and
length-bucketed batch sampling (batches of clips of similar length, so less of each batch is padding).

Training does not use them (it needs resumable, shardable batches: ``EpochBatchSampler``); they
live here with their tests, as references for padding experiments.
"""
from __future__ import annotations

import math
from typing import Any, Iterator, Sequence

import torch
from torch.utils.data import Sampler

from cnnlstm.data.collate import ClipBatch, collate_clips


def collate_features(samples: Sequence[Any], *, key: str = "features", **kwargs: Any) -> ClipBatch:
    """:func:`collate_clips` for cached features ``(T_i, D)`` stored under ``key``; ``clips`` is ``(B, T_max, D)``."""
    return collate_clips(samples, key=key, **kwargs)


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of indices whose lengths are similar, so less of each batch is padding.

    Each epoch the indices are shuffled, cut into pools of ``batch_size * bucket_size_multiplier``,
    each pool is sorted by length and cut into batches, and the batch order is shuffled. The
    order depends only on ``seed`` and the epoch (call ``set_epoch`` every epoch). Without
    ``drop_last`` every index appears exactly once per epoch (one batch may be smaller).

    With ``num_replicas > 1`` (DDP) rank ``r`` gets batches ``r, r + R, ...`` of the same global
    list, so ranks see disjoint data and the same number of batches; to even the count the list
    is truncated (``drop_last``) or padded by repeating its first batches, as DistributedSampler does.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        bucket_size_multiplier: int = 50,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        self.lengths = torch.as_tensor(lengths, dtype=torch.long)  # (N,)
        if self.lengths.ndim != 1:
            raise ValueError(f"lengths must be a flat sequence of ints; got shape {tuple(self.lengths.shape)}")
        for name, value in (("batch_size", batch_size), ("bucket_size_multiplier", bucket_size_multiplier),
                            ("num_replicas", num_replicas)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1; got {value}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, num_replicas={num_replicas}); got {rank}")
        self.batch_size, self.shuffle, self.drop_last, self.seed = batch_size, shuffle, drop_last, seed
        self.bucket_size_multiplier, self.num_replicas, self.rank = bucket_size_multiplier, num_replicas, rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _num_global_batches(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _global_batches(self) -> list[list[int]]:
        n = len(self.lengths)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)  # (N,)
        batches: list[list[int]] = []
        # (an empty tensor would split into one empty chunk, hence the guard)
        pools = order.split(self.batch_size * self.bucket_size_multiplier) if n else ()
        for pool in pools:
            pool = pool[torch.argsort(self.lengths[pool], stable=True)]  # sorted by length
            batches.extend(b.tolist() for b in pool.split(self.batch_size))
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._global_batches()
        if self.num_replicas > 1:
            per_rank = len(self)
            total = per_rank * self.num_replicas
            if total > len(batches) and batches:
                batches = (batches * math.ceil(total / len(batches)))[:total]
            batches = batches[self.rank : total : self.num_replicas]
        return iter(batches)

    def __len__(self) -> int:
        n = self._num_global_batches()
        if self.num_replicas == 1:
            return n
        return n // self.num_replicas if self.drop_last else math.ceil(n / self.num_replicas)


def padding_fraction(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Fraction of the padded ``(B, T_max)`` slots that are padding, summed over ``batches``."""
    lengths = torch.as_tensor(lengths, dtype=torch.long)
    total = valid = 0
    for batch in batches:
        b = lengths[torch.as_tensor(list(batch), dtype=torch.long)]
        total += int(b.max()) * len(b)
        valid += int(b.sum())
    return 1 - valid / total if total else 0.0
