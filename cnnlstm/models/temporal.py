"""Temporal models over frame features (B, T, D) with lengths (B,).

Letters: B batch, T frames, D input features, H hidden size, L layers.
Each module returns a :class:`TemporalOutput`: per-step outputs (B, T, H'), the final hidden state
at each clip's last real frame (B, H'), and, for causal modules asked for it, the recurrent state.
Variable length costs no packing where it is not needed: a unidirectional LSTM runs padded (it is
causal, so padding after a clip cannot reach it) and its final state is gathered at ``lengths - 1``;
the backward direction of a bidirectional LSTM runs on each clip reversed within its length.
``benchmarks/lstm_lengths.py`` measures this against packing.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ._seq import gather_last, is_ragged, lengths_to_mask, reverse_within_length
from .dropout import Dropout, seeded
from .dropout import dropout as row_dropout

State = tuple[Tensor, ...]


class TemporalOutput(NamedTuple):
    sequence: Tensor  # (B, T, H') per-step outputs (garbage on padding; mask it)
    final: Tensor  # (B, H') state after each clip's last real frame (both directions if bidirectional)
    state: State | None  # recurrent state to continue from (causal modules only)


def run_lstm(lstm: nn.LSTM, x: Tensor, lengths: Tensor | None, state: State | None, need_state: bool):
    """Run a unidirectional ``lstm`` on padded ``x`` (B, T, D) -> (B, T, H), state or None.

    Padded is exact for the outputs at real frames; only the final (h, c) of a ragged batch
    needs packing, so we pack only when that state is asked for. One step (T = 1, streaming)
    takes :func:`lstm_step`.
    """
    if x.shape[1] == 1 and _cell_path_ok(lstm, x):
        return lstm_step(lstm, x, state, need_state)
    if need_state and is_ragged(lengths, x.shape[1]):
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, new_state = lstm(packed, state)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # (B, T, H)
        return out, new_state
    out, new_state = lstm(x, state)  # (B, T, H)
    return out, (new_state if need_state else None)


def _cell_path_ok(lstm: nn.LSTM, x: Tensor) -> bool:
    """One step by LSTM cells gives what nn.LSTM gives: no projection, no dropout between layers in play."""
    return (not lstm.bidirectional and not lstm.proj_size and lstm.bias and lstm.batch_first
            and (not lstm.training or not lstm.dropout or lstm.num_layers == 1))


def lstm_step(lstm: nn.LSTM, x: Tensor, state: State | None, need_state: bool):
    """One time step of a unidirectional ``lstm``: x (B, 1, D) -> (B, 1, H), new (h, c) (L, B, H) each.

    Streaming calls this once per frame. nn.LSTM at T = 1 pays per call for what a sequence
    amortises (on CPU, oneDNN builds an RNN primitive per call: ~4.7 ms for hidden 512, 2 layers,
    where the arithmetic is ~8 MFLOP); ``lstm_cell`` per layer is two matrix-vector products and
    the gates (``benchmarks/stream_scaling.py`` measures both). Same maths as nn.LSTM, to float rounding.
    Under autocast the step runs in the weights' dtype (the recurrent state stays fp32 over an
    unbounded stream).
    """
    weight = lstm.weight_ih_l0
    if state is None:
        state = _zeros_state(lstm, x.shape[0], x.device, weight.dtype)
    h0, c0 = state  # (L, B, H) each
    inp = x[:, 0].to(weight.dtype)  # (B, D)
    hs, cs = [], []
    with torch.autocast(x.device.type, enabled=False):
        for layer, weights in enumerate(lstm.all_weights):  # [w_ih, w_hh, b_ih, b_hh] per layer
            h, c = torch.lstm_cell(inp, (h0[layer].to(weight.dtype), c0[layer].to(weight.dtype)), *weights)  # (B, H)
            hs.append(h)
            cs.append(c)
            inp = h
    new_state = (torch.stack(hs), torch.stack(cs)) if need_state else None  # (L, B, H) each
    return inp[:, None], new_state  # (B, 1, H)


def _zeros_state(lstm: nn.LSTM, batch: int, device, dtype) -> State:
    shape = (lstm.num_layers, batch, lstm.hidden_size)
    return torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype)


def with_changes(x: Tensor, prev: Tensor | None = None) -> Tensor:
    """Each frame's features and their change since the frame before: (B, T, D) -> (B, T, 2D),
    ``[f_t, f_t - f_(t-1)]``. Before the first frame comes ``prev`` (B, D): the last frame a stream
    has seen, zeros at its start, so a clip and the same frames streamed one at a time agree."""
    before = x.new_zeros(x.shape[0], 1, x.shape[2]) if prev is None else prev[:, None].to(x.dtype)  # (B, 1, D)
    return torch.cat([x, x - torch.cat([before, x[:, :-1]], dim=1)], dim=-1)  # (B, T, 2D)


class LSTMEncoder(nn.Module):
    """A stacked LSTM, unidirectional (causal, streamable) or bidirectional.

    ``feature_diff`` feeds it each frame's features and their change since the previous frame
    (:func:`with_changes`): an LSTM can compute that difference itself, but only once it has learned
    to, and until then a CNN learning from scratch gets no gradient toward motion (on seg6, per-frame
    labels: training loss 1.34 against 1.65 after 15 epochs; docs/training.md). A causal encoder's
    state then also holds the last frame's features (B, D).
    """

    def __init__(self, input_size: int, hidden_size: int, *, num_layers: int = 1, dropout: float = 0.0,
                 bidirectional: bool = False, feature_diff: bool = False):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1; got {num_layers}")
        self.bidirectional = bidirectional
        self.causal = not bidirectional
        self.hidden_size = hidden_size
        self.out_features = hidden_size * (2 if bidirectional else 1)
        self.input_size, self.feature_diff = input_size, feature_diff
        if feature_diff:
            input_size = 2 * input_size  # [f_t, f_t - f_(t-1)]
        if not bidirectional:
            self.lstm = nn.LSTM(input_size, hidden_size, num_layers=num_layers, batch_first=True,
                                dropout=dropout if num_layers > 1 else 0.0)
            return
        # one forward and one backward LSTM per layer, so each direction can start at the clip's
        # own last real frame; the same parameters as nn.LSTM(bidirectional=True)
        self.layers = nn.ModuleList(
            nn.ModuleDict({
                "fwd": nn.LSTM(input_size if i == 0 else 2 * hidden_size, hidden_size, batch_first=True),
                "bwd": nn.LSTM(input_size if i == 0 else 2 * hidden_size, hidden_size, batch_first=True),
            })
            for i in range(num_layers)
        )
        self.dropout = Dropout(dropout)

    def _layer_by_layer(self, x: Tensor) -> Tensor:
        """The stacked LSTM one layer at a time with :mod:`~cnnlstm.models.dropout`'s row-seeded dropout
        between layers (nn.LSTM's own dropout draws from the process's RNG). Same parameters, same
        outputs as ``self.lstm`` without dropout. (B, T, D) -> (B, T, H)."""
        from torch.func import functional_call

        lstm = self.lstm
        for k in range(lstm.num_layers):
            if k > 0:
                x = row_dropout(x, lstm.dropout, True)
            layer = nn.LSTM(lstm.input_size if k == 0 else lstm.hidden_size, lstm.hidden_size, batch_first=True,
                            bias=lstm.bias, device="meta")  # a shape only: its parameters are layer k's
            params = {name: getattr(lstm, name.replace("_l0", f"_l{k}")) for name, _ in layer.named_parameters()}
            x, _ = functional_call(layer, params, (x,))  # (B, T, H)
        return x

    def init_state(self, batch: int, device=None, dtype=None) -> State:
        """(h, c) (L, B, H) each, and with ``feature_diff`` the last frame's features (B, D): zeros."""
        if not self.causal:
            raise ValueError("a bidirectional LSTM has no streaming state: it needs the future")
        dtype = dtype or torch.get_default_dtype()
        last = (torch.zeros(batch, self.input_size, device=device, dtype=dtype),) if self.feature_diff else ()
        return (*_zeros_state(self.lstm, batch, device, dtype), *last)

    def forward(self, x: Tensor, lengths: Tensor | None = None, state: State | None = None,
                need_state: bool = False) -> TemporalOutput:
        if not self.causal and (state is not None or need_state):
            raise ValueError("a bidirectional LSTM cannot be streamed; use a unidirectional model")
        last = ()
        if self.feature_diff:
            if need_state:
                last = (gather_last(x, lengths).float(),)  # (B, D): the frame before the next step's first
            x = with_changes(x, None if state is None else state[2])  # (B, T, 2D)
            state = None if state is None else state[:2]
        if self.causal:
            if self.training and self.lstm.dropout > 0 and seeded() and state is None and not need_state:
                seq = self._layer_by_layer(x)  # (B, T, H)
                return TemporalOutput(seq, gather_last(seq, lengths), None)
            seq, state = run_lstm(self.lstm, x, lengths, state, need_state)  # (B, T, H)
            return TemporalOutput(seq, gather_last(seq, lengths), None if state is None else (*state, *last))
        for i, layer in enumerate(self.layers):
            if i > 0:
                x = self.dropout(x)
            fwd, _ = layer["fwd"](x)  # (B, T, H)
            bwd, _ = layer["bwd"](reverse_within_length(x, lengths))  # (B, T, H) on reversed clips
            x = torch.cat([fwd, reverse_within_length(bwd, lengths)], dim=-1)  # (B, T, 2H)
        H = self.hidden_size
        final = torch.cat([gather_last(x[..., :H], lengths), x[:, 0, H:]], dim=-1)  # (B, 2H)
        return TemporalOutput(x, final, None)


class ResidualLSTMStack(nn.Module):
    """Input projection, then single-layer LSTMs with residual connections and LayerNorm (causal)."""

    causal = True

    def __init__(self, input_size: int, hidden_size: int, *, num_layers: int = 4, dropout: float = 0.3):
        super().__init__()
        self.out_features = hidden_size
        self.input_proj = nn.Linear(input_size, hidden_size)
        self.lstm_layers = nn.ModuleList(nn.LSTM(hidden_size, hidden_size, batch_first=True) for _ in range(num_layers))
        self.layer_norms = nn.ModuleList(nn.LayerNorm(hidden_size) for _ in range(num_layers))
        self.dropout = Dropout(dropout)

    def init_state(self, batch: int, device=None, dtype=None) -> State:
        shape = (len(self.lstm_layers), batch, self.out_features)
        dtype = dtype or torch.get_default_dtype()
        return torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype)

    def forward(self, x: Tensor, lengths: Tensor | None = None, state: State | None = None,
                need_state: bool = False) -> TemporalOutput:
        x = self.input_proj(x)  # (B, T, H)
        hs, cs = [], []
        for i, (lstm, norm) in enumerate(zip(self.lstm_layers, self.layer_norms, strict=True)):
            layer_state = None if state is None else (state[0][i : i + 1], state[1][i : i + 1])
            out, new = run_lstm(lstm, x, lengths, layer_state, need_state)  # (B, T, H)
            x = norm(self.dropout(out) + x)  # (B, T, H)
            if new is not None:
                hs.append(new[0])
                cs.append(new[1])
        new_state = (torch.cat(hs), torch.cat(cs)) if need_state else None  # (L, B, H) each
        return TemporalOutput(x, gather_last(x, lengths), new_state)


class SelfAttentionLSTM(nn.Module):
    """An LSTM, then multi-head self-attention over its outputs, residual + LayerNorm.

    Padding is excluded as attention keys. Self-attention sees every frame, so this is not causal.
    """

    causal = False

    def __init__(self, input_size: int, hidden_size: int, *, num_heads: int = 8, dropout: float = 0.0):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size must be divisible by num_heads; got {hidden_size} and {num_heads}")
        self.out_features = hidden_size
        self.lstm = nn.LSTM(input_size, hidden_size, batch_first=True)
        self.self_attn = nn.MultiheadAttention(hidden_size, num_heads, dropout=dropout, batch_first=True)
        self.layer_norm = nn.LayerNorm(hidden_size)

    def forward(self, x: Tensor, lengths: Tensor | None = None, state: State | None = None,
                need_state: bool = False) -> TemporalOutput:
        if state is not None or need_state:
            raise ValueError("self-attention over the whole clip cannot be streamed; use a causal model")
        lstm_out, _ = self.lstm(x)  # (B, T, H)
        pad = None if lengths is None else ~lengths_to_mask(lengths, x.shape[1])  # (B, T) True on padding
        attn_out, _ = self.self_attn(lstm_out, lstm_out, lstm_out, key_padding_mask=pad,
                                     need_weights=False)  # (B, T, H)
        out = self.layer_norm(lstm_out + attn_out)  # (B, T, H)
        return TemporalOutput(out, gather_last(out, lengths), None)


class Identity(nn.Module):
    """No temporal model: per-frame features pass through (for order-blind baselines)."""

    causal = True

    def __init__(self, input_size: int):
        super().__init__()
        self.out_features = input_size

    def init_state(self, batch: int, device=None, dtype=None) -> State:
        return ()

    def forward(self, x: Tensor, lengths: Tensor | None = None, state: State | None = None,
                need_state: bool = False) -> TemporalOutput:
        return TemporalOutput(x, gather_last(x, lengths), () if need_state else None)
