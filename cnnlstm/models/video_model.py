"""VideoModel = frame encoder -> temporal model -> pool over time -> head.

Letters: B batch, T frames, C channels, H/W height/width, D frame-feature size, K classes.

``model(clips, lengths)`` takes clips (B, T, C, H, W), or precomputed frame features (B, T, D)
(e.g. from a feature cache, skipping the CNN), with optional ``lengths`` (B,), and returns a
:class:`ModelOutput`. Causal models also stream: ``state = model.init_state(B)`` then
``out, state = model.step(frame_or_features, state)``; feeding a clip frame by frame gives the
same outputs as feeding it whole.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ._seq import check_lengths, lengths_to_mask
from .backbones import FrameEncoder
from .heads import ClassifierHead

State = tuple[tuple[Tensor, ...], tuple[Tensor, ...]]


@dataclass
class ModelOutput:
    logits: Tensor  # (B, K) per clip, or (B, T, K) per frame
    attention: Tensor | None = None  # (B, T) temporal attention weights, 0 on padding
    spatial_attention: Tensor | None = None  # (B, T, h, w) spatial attention maps
    state: State | None = None  # recurrent state after the last frame (when asked for)


class VideoModel(nn.Module):
    """Encoder, temporal model, pool (None for per-frame outputs) and head, composed."""

    def __init__(self, *, encoder: FrameEncoder, temporal: nn.Module, pool: nn.Module | None, head: ClassifierHead):
        super().__init__()
        self.encoder = encoder
        self.temporal = temporal
        self.pool = pool
        self.head = head

    @property
    def num_features(self) -> int:
        """D, the size of the per-frame features that ``forward`` also accepts."""
        return self.encoder.num_features

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    @property
    def per_frame(self) -> bool:
        """True when the model labels every frame: logits (B, T, K)."""
        return self.pool is None

    @property
    def streamable(self) -> bool:
        """True when the model is causal and can run one frame at a time with ``step``."""
        return bool(getattr(self.temporal, "causal", False)) and (self.pool is None or self.pool.streamable)

    def reset_head(self, num_classes: int) -> None:
        """Replace the classifier for ``num_classes`` classes (0: the head returns pooled features)."""
        self.head.reset(num_classes)

    # --- the three stages -------------------------------------------------------------------
    def forward_features(self, clips: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Clips (B, T, C, H, W) -> frame features (B, T, D), spatial maps (B, T, h, w) or None."""
        return self.encoder(clips, lengths)

    def forward_temporal(self, feats: Tensor, lengths: Tensor | None = None, state: State | None = None,
                         need_state: bool = False):
        """Features (B, T, D) -> summary (B, H') or per-frame (B, T, H'), attention, state."""
        temporal_state, pool_state = state if state is not None else (None, None)
        out = self.temporal(feats, lengths, temporal_state, need_state)
        if self.pool is None:
            return out.sequence, None, ((out.state, ()) if need_state else None)
        mask = None if lengths is None else lengths_to_mask(lengths, feats.shape[1])
        summary, attention, pool_state = self.pool(out, mask, pool_state, need_state)
        return summary, attention, ((out.state, pool_state) if need_state else None)

    def forward_head(self, x: Tensor) -> Tensor:
        """(B, H') -> (B, K) or (B, T, H') -> (B, T, K)."""
        return self.head(x)

    def forward(self, x: Tensor, lengths: Tensor | None = None, *, state: State | None = None,
                return_state: bool = False) -> ModelOutput:
        """x: clips (B, T, C, H, W) or features (B, T, D); lengths (B,) counts real frames."""
        if x.dim() not in (3, 5):
            raise ValueError(
                f"expected clips (B, T, C, H, W) or frame features (B, T, D={self.num_features}); "
                f"got shape {tuple(x.shape)}"
            )
        need_state = return_state or state is not None
        if need_state and not self.streamable:
            raise ValueError(f"{type(self.temporal).__name__} is not causal, so this model has no streaming state")
        lengths = check_lengths(lengths, x.shape[0], x.shape[1], x.device)
        spatial = None
        if x.dim() == 5:
            x, spatial = self.forward_features(x, lengths)  # (B, T, D)
        elif x.shape[-1] != self.num_features:
            raise ValueError(f"features must have D={self.num_features} (the encoder's output size); got {x.shape[-1]}")
        summary, attention, state = self.forward_temporal(x, lengths, state, need_state)
        logits = self.forward_head(summary)  # (B, K) or (B, T, K)
        return ModelOutput(logits, attention, spatial, state)

    # --- streaming --------------------------------------------------------------------------
    def init_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        """Zero state for ``batch_size`` streams (causal models only)."""
        if not self.streamable:
            raise ValueError(f"{type(self.temporal).__name__} is not causal, so this model cannot stream")
        ref = next(self.parameters())
        device, dtype = device or ref.device, dtype or ref.dtype
        hidden = self.temporal.out_features
        pool_state = () if self.pool is None else self.pool.init_state(batch_size, hidden, device, dtype)
        return self.temporal.init_state(batch_size, device, dtype), pool_state

    def step(self, x: Tensor, state: State) -> tuple[ModelOutput, State]:
        """One new frame (B, C, H, W) or feature (B, D) -> output for the clip so far, new state.

        Per-frame models return this frame's logits (B, K); clip models the clip's logits (B, K).
        """
        if x.dim() not in (2, 4):
            raise ValueError(f"step expects one frame (B, C, H, W) or one feature (B, D); got shape {tuple(x.shape)}")
        out = self(x.unsqueeze(1), state=state, return_state=True)  # T = 1
        logits = out.logits[:, -1] if self.per_frame else out.logits  # (B, K)
        spatial = out.spatial_attention[:, -1] if out.spatial_attention is not None else None
        return ModelOutput(logits, None, spatial, out.state), out.state
