"""Autoregressive per-frame labeller: each frame's label is decoded given the previous frame's label.

Letters: B batch, T frames, C channels, H/W height/width, D frame-feature size, E label-embedding
size, K classes. The model is

    frames (B, T, C, H, W) -> FrameEncoder -> (B, T, D) -> causal LSTM -> (B, T, H)
    [encoder output t, embedding of label t-1] -> decoder LSTM -> (B, T, H) -> head -> logits (B, T, K)

with a learned ``<start>`` embedding in place of the label before frame 0. The label fed at each
step is chosen by ``forward``:

* ``targets`` with ``teacher_forcing=1.0``: the previous ground-truth label (teacher forcing), all
  frames in one LSTM call;
* ``targets`` with ``teacher_forcing < 1`` (scheduled sampling): per clip and step, the ground
  truth with that probability, else the model's own argmax; a loop over T in the decoder only;
* no ``targets`` (inference): the model's own greedy predictions.

A fed ground-truth label that is unlabelled (< 0, e.g. -100) is replaced by ``<start>``. Labels of
real frames never depend on padding (everything is causal), so ``lengths`` only saves CNN work.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ._registry import register_model
from ._seq import check_lengths
from .backbones import FrameEncoder, create_encoder
from .dropout import Dropout
from .heads import ClassifierHead
from .temporal import LSTMEncoder
from .video_model import ModelOutput

DEFAULT_BACKBONE = "resnet18"


class AutoregressiveLabeller(nn.Module):
    """Frame encoder, causal temporal LSTM, and an LSTM label decoder fed its previous label."""

    per_frame = True
    streamable = False
    autoregressive = True

    def __init__(self, *, encoder: FrameEncoder, temporal: LSTMEncoder, num_classes: int, hidden_size: int,
                 label_embed: int = 32, dropout: float = 0.0):
        super().__init__()
        if not getattr(temporal, "causal", False):
            raise ValueError("the temporal model of an autoregressive labeller must be causal (a unidirectional LSTM)")
        if label_embed < 1:
            raise ValueError(f"label_embed must be >= 1; got {label_embed}")
        self.encoder = encoder
        self.temporal = temporal
        self.dropout = Dropout(dropout)
        self.start = nn.Parameter(torch.randn(label_embed) * 0.1)  # (E,) the "label" before frame 0
        self.decoder = nn.LSTM(temporal.out_features + label_embed, hidden_size, batch_first=True)
        self.head = ClassifierHead(hidden_size, 1)
        self.reset_head(num_classes)

    @property
    def num_features(self) -> int:
        """D, the size of the per-frame features that ``forward`` also accepts."""
        return self.encoder.num_features

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def reset_head(self, num_classes: int) -> None:
        """New classifier and label embedding for ``num_classes`` classes (at least 1: labels are fed back)."""
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError("an autoregressive labeller feeds its labels back, so num_classes must be >= 1; got "
                             f"{num_classes!r}")
        self.head.reset(num_classes)
        self.label_embedding = nn.Embedding(num_classes, self.start.numel())
        self.head.to(self.start.device)
        self.label_embedding.to(self.start.device)

    def init_state(self, batch_size: int, *, device=None, dtype=None):
        raise ValueError("the autoregressive labeller is not causal-streamable (it has no step()); run it on whole "
                         "clips")

    # --- stages -----------------------------------------------------------------------------
    def forward_features(self, clips: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Clips (B, T, C, H, W) -> frame features (B, T, D), spatial maps or None."""
        return self.encoder(clips, lengths)

    def _embed_fed(self, labels: Tensor) -> Tensor:
        """Labels (...) -> embeddings (..., E); unlabelled (< 0) -> ``<start>``."""
        emb = self.label_embedding(labels.clamp(min=0))  # (..., E)
        return torch.where((labels >= 0).unsqueeze(-1), emb, self.start)

    def _decode_teacher_forced(self, enc: Tensor, targets: Tensor) -> Tensor:
        """enc (B, T, H), targets (B, T) -> logits (B, T, K), the previous target fed at every step."""
        B = enc.shape[0]
        prev = self._embed_fed(targets[:, :-1])  # (B, T-1, E)
        fed = torch.cat([self.start.expand(B, 1, -1), prev], dim=1)  # (B, T, E)
        out, _ = self.decoder(torch.cat([enc, fed], dim=-1))  # (B, T, H)
        return self.head(out)  # (B, T, K)

    def _decode_loop(self, enc: Tensor, targets: Tensor | None, teacher_forcing: float) -> Tensor:
        """enc (B, T, H) -> logits (B, T, K), step by step: ground truth with probability
        ``teacher_forcing`` (per clip and step), else the model's own argmax."""
        B, T = enc.shape[:2]
        fed = self.start.expand(B, -1)  # (B, E)
        state, steps = None, []
        for t in range(T):
            out, state = self.decoder(torch.cat([enc[:, t], fed], dim=-1).unsqueeze(1), state)  # (B, 1, H)
            logits = self.head(out[:, 0])  # (B, K)
            steps.append(logits)
            if t + 1 == T:
                break
            label = logits.detach().argmax(-1)  # (B,)
            if targets is not None and teacher_forcing > 0:
                use_truth = torch.rand(B, device=enc.device) < teacher_forcing  # (B,)
                label = torch.where(use_truth, targets[:, t], label)
            fed = self._embed_fed(label)  # (B, E)
        return torch.stack(steps, dim=1)  # (B, T, K)

    def forward(self, x: Tensor, lengths: Tensor | None = None, *, targets: Tensor | None = None,
                teacher_forcing: float = 1.0, state=None, return_state: bool = False) -> ModelOutput:
        """x: clips (B, T, C, H, W) or features (B, T, D); lengths (B,); targets (B, T), -100 on padding."""
        if x.dim() not in (3, 5):
            raise ValueError(
                f"expected clips (B, T, C, H, W) or frame features (B, T, D={self.num_features}); "
                f"got shape {tuple(x.shape)}"
            )
        if state is not None or return_state:
            raise ValueError("the autoregressive labeller is not causal-streamable (it has no streaming state); run "
                             "whole clips")
        if not 0.0 <= teacher_forcing <= 1.0:
            raise ValueError(f"teacher_forcing is a probability in [0, 1]; got {teacher_forcing}")
        B, T = x.shape[:2]
        lengths = check_lengths(lengths, B, T, x.device)
        spatial = None
        if x.dim() == 5:
            x, spatial = self.forward_features(x, lengths)  # (B, T, D)
        elif x.shape[-1] != self.num_features:
            raise ValueError(f"features must have D={self.num_features} (the encoder's output size); got {x.shape[-1]}")
        enc = self.dropout(self.temporal(x, lengths).sequence)  # (B, T, H)
        if targets is not None:
            targets = torch.as_tensor(targets, device=x.device)
            if targets.shape != (B, T) or targets.dtype.is_floating_point or targets.dtype == torch.bool:
                raise ValueError(f"targets must be integer labels (B, T) = ({B}, {T}); got {targets.dtype} "
                                 f"{tuple(targets.shape)}")
            targets = targets.long()
            if targets.numel() and int(targets.max()) >= self.num_classes:
                raise ValueError(f"targets must be < K={self.num_classes} (negative = unlabelled); got max "
                                 f"{int(targets.max())}")
        if targets is not None and teacher_forcing == 1.0:
            logits = self._decode_teacher_forced(enc, targets)  # (B, T, K)
        else:
            logits = self._decode_loop(enc, targets, teacher_forcing)  # (B, T, K)
        return ModelOutput(logits, None, spatial, None)


@register_model(recipe="lstm")
def seq2seq_ar_cnn_lstm(num_classes: int, *, backbone: str = DEFAULT_BACKBONE, weights=None, pool: str | None = None,
                        hidden_size: int = 256, num_layers: int = 1, dropout: float = 0.0,
                        label_embed: int = 32) -> AutoregressiveLabeller:
    """CNN -> causal LSTM -> LSTM decoder fed the previous frame's label -> a label for every frame (B, T, K)."""
    encoder = create_encoder(backbone, weights=weights, pool=pool)
    temporal = LSTMEncoder(encoder.num_features, hidden_size, num_layers=num_layers, dropout=dropout)
    return AutoregressiveLabeller(encoder=encoder, temporal=temporal, num_classes=num_classes,
                                  hidden_size=hidden_size, label_embed=label_embed, dropout=dropout)


__all__ = ["AutoregressiveLabeller", "seq2seq_ar_cnn_lstm"]
