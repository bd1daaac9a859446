"""Attention modules that return their weights for visualisation.

Letters: B batch, T frames, N = B*T frames, D channels, h/w feature-map size, H hidden size.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

State = tuple[Tensor, ...]


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


class TemporalAttention(nn.Module):
    """Additive attention over time: alpha_t = softmax_t(w^T tanh(W h_t + b)), context = sum alpha_t h_t.

    Padding gets zero weight. With a streaming state it keeps a running (max, normaliser,
    weighted sum), so feeding a clip in pieces gives the same context as feeding it whole.
    """

    streamable = True

    def __init__(self, hidden_size: int, attention_size: int = 128):
        super().__init__()
        self.attention = nn.Sequential(
            nn.Linear(hidden_size, attention_size), nn.Tanh(), nn.Linear(attention_size, 1)
        )

    def init_state(self, batch: int, hidden: int, device=None, dtype=None) -> State:
        dtype = dtype or torch.get_default_dtype()
        low = torch.full((batch, 1), torch.finfo(dtype).min, device=device, dtype=dtype)
        norm = torch.zeros(batch, 1, device=device, dtype=dtype)
        return low, norm, torch.zeros(batch, hidden, device=device, dtype=dtype)

    def forward(
        self, seq: Tensor, mask: Tensor | None = None, state: State | None = None, need_state: bool = False
    ) -> tuple[Tensor, Tensor, State | None]:
        """seq (B, T, H), mask (B, T) -> context (B, H), weights (B, T), state."""
        scores = self.attention(seq).squeeze(-1)  # (B, T)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1)  # (B, T) over this piece
        if state is None and not need_state:
            return (weights.unsqueeze(-1) * seq).sum(1), weights, None  # (B, H)
        if state is None:
            state = self.init_state(seq.shape[0], seq.shape[-1], seq.device, seq.dtype)
        run_max, run_norm, run_sum = state  # (B, 1), (B, 1), (B, H)
        new_max = torch.maximum(run_max, scores.max(1, keepdim=True).values)  # (B, 1)
        keep = torch.exp(run_max - new_max)  # (B, 1) rescales the old sums
        exp = torch.exp(scores - new_max)  # (B, T), 0 on padding
        run_norm = run_norm * keep + exp.sum(1, keepdim=True)  # (B, 1)
        run_sum = run_sum * keep + (exp.unsqueeze(-1) * seq).sum(1)  # (B, H)
        return run_sum / run_norm, weights, (new_max, run_norm, run_sum)
