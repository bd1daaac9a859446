"""Batching variable-length clips: padding, lengths and masks.

Letters: B batch, T frames (T_max the longest in the batch), C channels, H/W height/width,
D feature dim.

``collate_clips`` pads clips ``(T_i, C, H, W)`` (or features ``(T_i, D)``, any trailing dims) to
``(B, T_max, ...)`` with one copy per sample and records ``lengths (B,)`` and ``mask (B, T_max)``
(True = valid frame).
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor
from torch.utils.data import get_worker_info

# the one "no label here" value: padding of per-frame labels and captions, and unlabelled clips;
# the default ignore_index of torch.nn.functional.cross_entropy, so losses skip it
IGNORE_INDEX = -100


@dataclass
class ClipBatch:
    """A padded batch. ``labels`` is ``(B,)``, ``(B, K)`` or per-frame ``(B, T_max)`` (padded with ``IGNORE_INDEX``)."""

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


__all__ = ["IGNORE_INDEX", "ClipBatch", "pad_stack", "collate_clips"]
