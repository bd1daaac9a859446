"""What the ONNX exporter traces: wrapper modules around a trained model (the frame encoder, one
recurrent step with its state flattened into named tensors, the whole clip) and the spec of the
streaming state that ``preprocess.json`` records.

Letters: N frames, B streams (batch), T frames per clip, C channels, S crop side, D frame-feature
size, K classes.
"""
from __future__ import annotations

# state tensor names by the module that owns them (others get "<part>_state_<i>")
_STATE_NAMES = {
    "LSTMEncoder": ("h", "c", "last_feature"),
    "ResidualLSTMStack": ("h", "c"),
    "MeanPool": ("mean_sum", "mean_count"),
    "AttentionPool": ("attn_max", "attn_norm", "attn_sum"),
}


def graph_modules():
    """The wrapper modules (defined lazily: this module imports only the stdlib at import time)."""
    import torch
    from torch import nn

    class EncoderGraph(nn.Module):
        """frames (N, C, S, S) -> features (N, D)."""

        def __init__(self, encoder: nn.Module):
            super().__init__()
            self.encoder = encoder

        def forward(self, frames: torch.Tensor) -> torch.Tensor:
            return self.encoder(frames.unsqueeze(1))[0].squeeze(1)  # (N, 1, C, S, S) -> (N, 1, D) -> (N, D)

    class StepGraph(nn.Module):
        """feature (B, D), *state -> logits (B, K), *new state: the nested state flattened."""

        def __init__(self, model: nn.Module, num_temporal: int):
            super().__init__()
            self.model, self.num_temporal = model, num_temporal

        def forward(self, feature: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
            nested = (tuple(state[: self.num_temporal]), tuple(state[self.num_temporal:]))
            out, (temporal, pool) = self.model.step(feature, nested)
            return (out.logits, *temporal, *pool)  # (B, K), state tensors

    class ClipGraph(nn.Module):
        """clips (B, T, C, S, S), lengths (B,) -> logits (B, K) or (B, T, K).

        Every frame goes through the CNN (padding too): the temporal models only read real frames
        (causal LSTMs, reversal within length, masked pools), so the outputs at real frames are
        those of ``model(clips, lengths)``, without its data-dependent length checks.
        """

        def __init__(self, model: nn.Module):
            super().__init__()
            self.model = model

        def forward(self, clips: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            feats = self.model.encoder(clips)[0]  # (B, T, D)
            summary, _, _ = self.model.forward_temporal(feats, lengths)  # (B, H') or (B, T, H')
            return self.model.forward_head(summary)  # (B, K) or (B, T, K)

    class PlainClipGraph(nn.Module):
        """clips (B, T, C, S, S) -> logits, for models without the encoder/temporal/head split."""

        def __init__(self, model: nn.Module):
            super().__init__()
            self.model = model

        def forward(self, clips: torch.Tensor) -> torch.Tensor:
            out = self.model(clips)
            return getattr(out, "logits", out)

    return EncoderGraph, StepGraph, ClipGraph, PlainClipGraph


def state_spec(model) -> list[dict]:
    """Names, shapes (-1 on the batch axis), batch axis and initial fill of a streamable model's state."""
    import torch

    one, two = model.init_state(1), model.init_state(2)
    spec = []
    for part, module, a, b in (("temporal", model.temporal, one[0], two[0]), ("pool", model.pool, one[1], two[1])):
        names = _STATE_NAMES.get(type(module).__name__, ())
        for i, (t1, t2) in enumerate(zip(a, b, strict=True)):
            name = names[i] if i < len(names) else f"{part}_state_{i}"
            axis = next(d for d in range(t1.dim()) if t1.shape[d] != t2.shape[d])
            fill = float(t1.flatten()[0])
            if not bool(torch.all(t1 == fill)):
                raise ValueError(f"state {name!r} does not start constant, so it cannot be described by one init value")
            spec.append({"name": name, "output": f"{name}_out", "part": part, "batch_axis": axis,
                         "shape": [-1 if d == axis else int(n) for d, n in enumerate(t1.shape)],
                         "dtype": "float32", "init": fill})
    return spec


def state_probe(s: dict):
    """A random state for B=3 streams, to check the step graph at another batch size than exported."""
    import torch

    shape = [3 if d == -1 else d for d in s["shape"]]
    if s["name"] == "attn_max" or s["name"].endswith("count") or s["name"] == "attn_norm":
        return torch.rand(shape) + 1.0  # counts, normalisers (and a finite running max) are positive
    return torch.randn(shape)


__all__ = ["graph_modules", "state_spec", "state_probe"]
