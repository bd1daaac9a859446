"""The classification head: (..., H) -> (..., K), per clip or per frame.

Letters: B batch, T frames, H features, K classes.
"""
from __future__ import annotations

from torch import Tensor, nn

from .dropout import Dropout


class ClassifierHead(nn.Module):
    """Dropout, then a linear layer (or a small MLP when ``hidden`` is set): (..., H) -> (..., K).

    Works per clip (B, H) and per frame (B, T, H). ``num_classes=0`` gives an identity head.
    """

    def __init__(self, in_features: int, num_classes: int, *, dropout: float = 0.0, hidden: int | None = None):
        super().__init__()
        self.in_features = in_features
        self.hidden = hidden
        self.dropout = Dropout(dropout)
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
