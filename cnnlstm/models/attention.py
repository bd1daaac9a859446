"""Attention mechanisms; each returns its weights for visualisation.

- :class:`TemporalAttention`: additive attention over the frames of a clip (a temporal pool's core).
- :class:`AdditiveAttention` (Bahdanau) and :class:`GeneralAttention` (Luong "general"): the caption
  decoder's attention over the frames, queried by its hidden state at every word.

Letters: B batch, T frames, H hidden size, S decoder hidden size, A attention size.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

State = tuple[Tensor, ...]


class TemporalAttention(nn.Module):
    """Additive attention over time: alpha_t = softmax_t(w^T tanh(W h_t + b)), context = sum alpha_t h_t.

    Padding gets zero weight. With a streaming state it keeps a running (max, normaliser,
    weighted sum), so feeding a clip in pieces gives the same context as feeding it whole.
    """

    streamable = True

    def __init__(self, hidden_size: int, attention_size: int = 128):
        super().__init__()
        # no bias on the score: a constant added to every score before a softmax over time changes
        # nothing and never gets a gradient (the seed's class has one: one parameter fewer here)
        self.attention = nn.Sequential(
            nn.Linear(hidden_size, attention_size), nn.Tanh(), nn.Linear(attention_size, 1, bias=False)
        )

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # runs saved before the bias was dropped hold attention.2.bias: a shift of every score, exact to drop
        state_dict.pop(prefix + "attention.2.bias", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

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


class AdditiveAttention(nn.Module):
    """Bahdanau: score_t = v^T tanh(W_k m_t + W_q h)."""

    def __init__(self, query_size: int, memory_size: int, attention_size: int):
        super().__init__()
        self.key = nn.Linear(memory_size, attention_size, bias=False)
        self.query = nn.Linear(query_size, attention_size)
        self.score = nn.Linear(attention_size, 1, bias=False)

    def keys(self, memory: Tensor) -> Tensor:
        return self.key(memory)  # (B, T, A)

    def forward(self, query: Tensor, keys: Tensor) -> Tensor:
        """query (B, S), keys (B, T, A) -> scores (B, T)."""
        return self.score(torch.tanh(keys + self.query(query).unsqueeze(1))).squeeze(-1)  # (B, T)


class GeneralAttention(nn.Module):
    """Luong "general": score_t = h^T W m_t."""

    def __init__(self, query_size: int, memory_size: int):
        super().__init__()
        self.key = nn.Linear(memory_size, query_size, bias=False)

    def keys(self, memory: Tensor) -> Tensor:
        return self.key(memory)  # (B, T, S)

    def forward(self, query: Tensor, keys: Tensor) -> Tensor:
        return torch.bmm(keys, query.unsqueeze(-1)).squeeze(-1)  # (B, T)


__all__ = ["TemporalAttention", "AdditiveAttention", "GeneralAttention"]
