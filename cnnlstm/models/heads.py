"""Pooling over time and classification heads.

Letters: B batch, T frames, H features, K classes.
A pool maps a :class:`~cnnlstm.models.temporal.TemporalOutput` and mask (B, T) to a clip summary
(B, H), optional attention weights (B, T), and, for streaming, its running state.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .attention import TemporalAttention
from .temporal import TemporalOutput

State = tuple[Tensor, ...]


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


class ClassifierHead(nn.Module):
    """Dropout, then a linear layer (or a small MLP when ``hidden`` is set): (..., H) -> (..., K).

    Works per clip (B, H) and per frame (B, T, H). ``num_classes=0`` gives an identity head.
    """

    def __init__(self, in_features: int, num_classes: int, *, dropout: float = 0.0, hidden: int | None = None):
        super().__init__()
        self.in_features = in_features
        self.hidden = hidden
        self.dropout = nn.Dropout(dropout)
        self.mlp = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU()) if hidden else nn.Identity()
        self.reset(num_classes)

    def reset(self, num_classes: int) -> None:
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0 = no classifier); got {num_classes}")
        self.num_classes = num_classes
        width = self.hidden or self.in_features
        self.fc = nn.Linear(width, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.mlp(self.dropout(x)))  # (..., K)
