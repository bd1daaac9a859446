"""Batching variable-length clips: padding, lengths, masks, and length-bucketed batch sampling.

Letters: B batch, T frames (T_max the longest in the batch), C channels, H/W height/width,
D feature dim.

``collate_clips`` pads clips ``(T_i, C, H, W)`` (or features ``(T_i, D)``, any trailing dims) to
``(B, T_max, ...)`` with one copy per sample and records ``lengths (B,)`` and ``mask (B, T_max)``
(True = valid frame). ``BucketBatchSampler`` groups clips of similar length so less of each batch
is padding.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import Tensor
from torch.utils.data import Sampler, get_worker_info

IGNORE_INDEX = -100  # label padding; the default ignore_index of torch.nn.functional.cross_entropy


@dataclass
class ClipBatch:
    """A padded batch. ``labels`` is ``(B,)``, ``(B, K)`` or per-frame ``(B, T_max)`` (padded with -100)."""

    clips: Tensor  # (B, T_max, C, H, W) or (B, T_max, D)
    lengths: Tensor  # (B,) int64
    mask: Tensor  # (B, T_max) bool, True = valid frame
    labels: Tensor | None = None
    meta: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)  # bad videos dropped from this batch: path, error, message

    def __len__(self) -> int:
        return self.clips.shape[0]

    def _map(self, fn) -> ClipBatch:
        new = copy.copy(self)  # meta and skipped are shared, tensors mapped
        new.clips, new.lengths, new.mask = fn(self.clips), fn(self.lengths), fn(self.mask)
        new.labels = fn(self.labels) if self.labels is not None else None
        return new

    def to(self, device: torch.device | str, *, non_blocking: bool = False) -> ClipBatch:
        """A copy with every tensor on ``device`` (``meta`` is shared)."""
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> ClipBatch:
        """Called by ``DataLoader(pin_memory=True)``; pinned batches copy to the GPU asynchronously."""
        return self._map(lambda t: t.pin_memory())


def _as_dict(sample: Any, index: int) -> dict:
    if isinstance(sample, Mapping):
        return dict(sample)
    if dataclasses.is_dataclass(sample) and not isinstance(sample, type):
        return {f.name: getattr(sample, f.name) for f in dataclasses.fields(sample)}  # no deep copy
    if hasattr(sample, "_asdict"):  # NamedTuple
        return sample._asdict()
    raise TypeError(f"sample {index} must be a dict, dataclass or NamedTuple; got {type(sample).__name__}")


def _alloc(shape: tuple[int, ...], like: Tensor) -> Tensor:
    out = torch.empty(shape, dtype=like.dtype, device=like.device)
    if get_worker_info() is not None and like.device.type == "cpu":
        out.share_memory_()  # like default_collate: the batch goes back to the main process without a copy
    return out


def pad_stack(tensors: Sequence[Tensor], padding_value: float = 0) -> Tensor:
    """Stack ``(T_i, ...)`` tensors into ``(B, T_max, ...)``, padding the tail of each with ``padding_value``."""
    first = tensors[0]
    t_max = max(t.shape[0] for t in tensors)
    out = _alloc((len(tensors), t_max, *first.shape[1:]), first)  # (B, T_max, ...)
    for i, t in enumerate(tensors):  # one copy per sample, not per frame
        out[i, : t.shape[0]].copy_(t)
        out[i, t.shape[0]:].fill_(padding_value)
    return out


def _collate_labels(labels: list[Any], padding_value: int) -> Tensor:
    if all(isinstance(y, (int, float)) and not isinstance(y, bool) for y in labels):
        return torch.tensor(labels)  # (B,)
    tensors = [torch.as_tensor(y) for y in labels]
    if all(t.ndim == 0 for t in tensors):
        return torch.stack(tensors)  # (B,)
    if any(t.ndim == 0 for t in tensors) or len({(t.shape[1:], t.dtype) for t in tensors}) > 1:
        shapes = [f"{t.dtype} {tuple(t.shape)}" for t in tensors]
        raise ValueError(f"labels must all be scalars, or tensors that differ only in length; got {shapes}")
    return pad_stack(tensors, padding_value)  # (B, L_max, ...), e.g. per-frame labels (B, T_max)


def collate_clips(
    samples: Sequence[Any],
    *,
    key: str = "clip",
    label_key: str = "label",
    pad_value: float = 0,
    label_pad_value: int = IGNORE_INDEX,
) -> ClipBatch:
    """Pad samples into a :class:`ClipBatch`; use it as ``DataLoader(collate_fn=collate_clips)``.

    Each sample (dict, dataclass or NamedTuple) holds ``key`` -> ``(T_i, ...)`` (uint8 or float
    frames ``(T_i, C, H, W)`` or features ``(T_i, D)``) and optionally ``label_key`` (an int, a
    tensor, or a per-frame LongTensor ``(T_i,)`` padded with ``label_pad_value``). Every other
    field goes to ``meta``. Change the keyword defaults with ``functools.partial``.
    """
    if len(samples) == 0:
        raise ValueError("collate_clips got an empty list of samples; need at least one")
    records = [_as_dict(s, i) for i, s in enumerate(samples)]
    clips = []
    for i, r in enumerate(records):
        clip = r.get(key)
        if not isinstance(clip, Tensor) or clip.ndim < 2 or clip.shape[0] == 0:
            got = f"{tuple(clip.shape)}" if isinstance(clip, Tensor) else type(clip).__name__
            raise ValueError(
                f"sample {i}: '{key}' must be a tensor (T, ...) with T >= 1; got {got} (keys: {sorted(r)})"
            )
        clips.append(clip)
    if len({(c.shape[1:], c.dtype) for c in clips}) > 1:
        shapes = [f"{c.dtype} {tuple(c.shape)}" for c in clips]
        raise ValueError(f"clips must share dtype and every dim but T; got {shapes}. Resize/crop them in the transform")
    lengths = torch.tensor([c.shape[0] for c in clips], dtype=torch.long)  # (B,)
    batch = pad_stack(clips, pad_value)  # (B, T_max, ...)
    mask = torch.arange(batch.shape[1]) < lengths[:, None]  # (B, T_max)

    has_label = [label_key in r and r[label_key] is not None for r in records]
    if any(has_label) and not all(has_label):
        missing = [i for i, h in enumerate(has_label) if not h]
        raise ValueError(f"samples {missing} have no '{label_key}' but others do; label every sample or none")
    labels = _collate_labels([r[label_key] for r in records], label_pad_value) if all(has_label) else None
    meta = [{k: v for k, v in r.items() if k not in (key, label_key)} for r in records]
    return ClipBatch(batch, lengths, mask, labels, meta)


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


__all__ = [
    "IGNORE_INDEX",
    "ClipBatch",
    "pad_stack",
    "collate_clips",
    "collate_features",
    "BucketBatchSampler",
    "padding_fraction",
]
