"""Pooling: spatial pools turn a CNN feature map into one vector per frame; temporal pools turn
the temporal model's output into one clip summary.

Letters: B batch, T frames, N = B*T frames, D channels, h/w feature-map size, H hidden size.

A spatial pool maps (N, D, h, w) to features (N, D') and an attention map (N, h, w) or None. A
temporal pool maps a :class:`~cnnlstm.models.temporal.TemporalOutput` and mask (B, T) to a clip
summary (B, H), optional attention weights (B, T), and, for streaming, its running state.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import TemporalAttention
from .temporal import TemporalOutput

State = tuple[Tensor, ...]


# --- spatial: one vector per frame ---------------------------------------------------------------

class GlobalAvgPool(nn.Module):
    """(N, D, h, w) -> (N, D); no attention map."""

    def forward(self, fmap: Tensor) -> tuple[Tensor, None]:
        return fmap.mean((2, 3)), None


class GridPool(nn.Module):
    """(N, D, h, w) -> (N, D * g * g): average over a g x g grid of cells, flattened. Unlike a
    global average it keeps where things are, so frame-to-frame motion reaches the LSTM."""

    def __init__(self, grid: int = 2):
        super().__init__()
        self.grid = grid

    def forward(self, fmap: Tensor) -> tuple[Tensor, None]:
        return F.adaptive_avg_pool2d(fmap, self.grid).flatten(1), None


class SpatialAttentionPool(nn.Module):
    """Learned spatial attention pooling over a CNN feature map (the seed's SpatialAttentionCNN
    head, for any backbone): weights a = sigmoid(conv(relu(conv(f)))), feature = sum(a f) / sum(a)."""

    def __init__(self, channels: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or max(channels // 4, 1)
        self.attention = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, 1, 1), nn.Sigmoid()
        )

    def forward(self, fmap: Tensor) -> tuple[Tensor, Tensor]:
        """(N, D, h, w) -> features (N, D) and attention maps (N, h, w)."""
        weights = self.attention(fmap)  # (N, 1, h, w)
        feats = (fmap * weights).sum((2, 3)) / (weights.sum((2, 3)) + 1e-8)  # (N, D)
        return feats, weights.squeeze(1)


# --- temporal: one summary per clip --------------------------------------------------------------

class FinalStatePool(nn.Module):
    """The recurrent state after each clip's last real frame (the seed's ``h_n[-1]``)."""

    streamable = True

    def init_state(self, batch: int, hidden: int, device=None, dtype=None) -> State:
        return ()

    def forward(self, out: TemporalOutput, mask: Tensor | None, state: State | None = None, need_state: bool = False):
        return out.final, None, (() if need_state else None)


class MeanPool(nn.Module):
    """Mean over real frames; streams with a running (sum, count)."""

    streamable = True

    def init_state(self, batch: int, hidden: int, device=None, dtype=None) -> State:
        dtype = dtype or torch.get_default_dtype()
        return torch.zeros(batch, hidden, device=device, dtype=dtype), torch.zeros(batch, 1, device=device, dtype=dtype)

    def forward(self, out: TemporalOutput, mask: Tensor | None, state: State | None = None, need_state: bool = False):
        seq = out.sequence  # (B, T, H)
        weights = torch.ones_like(seq[..., :1]) if mask is None else mask.to(seq.dtype).unsqueeze(-1)  # (B, T, 1)
        total, count = (seq * weights).sum(1), weights.sum(1)  # (B, H), (B, 1)
        if state is not None:
            total, count = total + state[0], count + state[1]
        return total / count, None, ((total, count) if need_state else None)


class AttentionPool(nn.Module):
    """Temporal attention pooling; also returns the weights (B, T)."""

    streamable = True

    def __init__(self, hidden_size: int, attention_size: int = 128):
        super().__init__()
        self.attention = TemporalAttention(hidden_size, attention_size)

    def init_state(self, batch: int, hidden: int, device=None, dtype=None) -> State:
        return self.attention.init_state(batch, hidden, device, dtype)

    def forward(self, out: TemporalOutput, mask: Tensor | None, state: State | None = None, need_state: bool = False):
        return self.attention(out.sequence, mask, state, need_state)


__all__ = ["GlobalAvgPool", "GridPool", "SpatialAttentionPool", "FinalStatePool", "MeanPool", "AttentionPool"]
