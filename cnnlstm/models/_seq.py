"""Tensor helpers for padded variable-length sequences.

Letters: B batch, T frames (padded length), D/H feature sizes. ``lengths`` (B,) counts the real
frames of each clip; ``mask`` (B, T) is True on real frames.
"""
from __future__ import annotations

import torch
from torch import Tensor


def check_lengths(lengths, batch: int, max_len: int, device: torch.device) -> Tensor | None:
    """Validate ``lengths`` and return it as a LongTensor on ``device`` (None stays None)."""
    if lengths is None:
        return None
    lengths = torch.as_tensor(lengths, device=device)
    if lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise TypeError(f"lengths must be integers; got dtype {lengths.dtype}")
    if lengths.shape != (batch,):
        raise ValueError(f"lengths must have shape ({batch},) for a batch of {batch}; got {tuple(lengths.shape)}")
    lengths = lengths.long()
    lo, hi = int(lengths.min()), int(lengths.max())
    if lo < 1 or hi > max_len:
        raise ValueError(
            f"every length must be in [1, {max_len}] (the padded number of frames); got min {lo}, max {hi}"
        )
    return lengths


def is_ragged(lengths: Tensor | None, max_len: int) -> bool:
    """True when some clip is shorter than the padded length."""
    return lengths is not None and bool((lengths != max_len).any())


def lengths_to_mask(lengths: Tensor, max_len: int) -> Tensor:
    """(B,) lengths -> (B, T) bool mask, True on real frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]  # (B, T)


def reverse_within_length(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence's first ``lengths[b]`` steps, leaving padding in place. (B, T, ...)"""
    if lengths is None:
        return x.flip(1)
    B, T = x.shape[:2]
    steps = torch.arange(T, device=x.device).expand(B, T)  # (B, T)
    flipped = lengths[:, None] - 1 - steps  # (B, T)
    index = torch.where(flipped >= 0, flipped, steps)  # (B, T) padding maps to itself
    index = index.view(B, T, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


def gather_last(x: Tensor, lengths: Tensor | None) -> Tensor:
    """The step at each sequence's last real frame: (B, T, H) -> (B, H)."""
    if lengths is None:
        return x[:, -1]
    # A select-and-sum rather than x[arange(B), lengths - 1]: the same values, and its backward has no
    # index_put, which a compiled graph traces under CUDA bf16 autocast and fails on
    # ("Unexpected floating ScalarType in at::autocast::prioritize", torch 2.11, H200).
    last = torch.arange(x.shape[1], device=x.device)[None, :] == (lengths - 1)[:, None]  # (B, T)
    return torch.where(last.view(*last.shape, *([1] * (x.dim() - 2))), x, 0).sum(1)  # (B, H)


def masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over real frames: (B, T, H) -> (B, H)."""
    if mask is None:
        return x.mean(1)
    weights = mask.to(x.dtype).unsqueeze(-1)  # (B, T, 1)
    return (x * weights).sum(1) / weights.sum(1)
