"""A learning-health check: say once, early, when a run is not learning.

A model that learned nothing predicts the label frequencies, and its cross-entropy is then the
entropy of the label prior (``log K`` for K balanced classes). When the training loss is still at
that value a couple of epochs after warmup, or the validation top-1 sits at the majority class's
share, the run is dead or stalled: :class:`LearningHealth` says so once, with the likely causes,
and training goes on. Every task's loss is a cross-entropy over labels (clip classes, frame
labels, caption tokens), so one rule serves them all.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

STALL_FRACTION = 0.95  # a training loss above this share of the prior's entropy counts as "not learning"
EPOCHS_AFTER_WARMUP = 2  # how long a run may sit at the prior before the check speaks


@dataclass
class LabelCounts:
    """How often each label index occurs among the training targets seen (negatives are padding)."""

    counts: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))

    def observe(self, labels: torch.Tensor | None) -> None:
        if labels is None:
            return
        labels = labels[labels >= 0].flatten().cpu()
        if labels.numel():
            self.add(torch.bincount(labels))

    def add(self, counts: torch.Tensor) -> None:
        size = max(len(self.counts), len(counts))
        self.counts = (torch.nn.functional.pad(self.counts, (0, size - len(self.counts)))
                       + torch.nn.functional.pad(counts, (0, size - len(counts))))

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def entropy(self) -> float:
        """Entropy (nats) of the label frequencies: the loss of always predicting the prior."""
        p = self.counts.double() / max(self.total, 1)
        p = p[p > 0]
        return float(-(p * p.log()).sum())

    def majority_share(self) -> float:
        return float(self.counts.max()) / self.total if self.total else 0.0


@dataclass
class LearningHealth:
    """Collects the training labels and checks each epoch's losses against the prior."""

    warmup_epochs: float
    labels: LabelCounts = field(default_factory=LabelCounts)
    warned: bool = False

    def check(self, epoch: int, train_loss: float, val_top1: float | None = None) -> str | None:
        """A warning (once) when, ``EPOCHS_AFTER_WARMUP`` epochs after warmup, the run is still at the
        prior; ``epoch`` counts from 1. None while healthy, too early, or already said."""
        if self.warned or not self.labels.total or epoch < math.ceil(self.warmup_epochs) + EPOCHS_AFTER_WARMUP:
            return None
        prior, majority = self.labels.entropy(), self.labels.majority_share()
        reasons = []
        if train_loss >= STALL_FRACTION * prior:
            reasons.append(f"the training loss {train_loss:.3f} is still the loss of predicting the label "
                           f"frequencies ({prior:.3f})")
        if val_top1 is not None and val_top1 <= majority + 1e-6:
            reasons.append(f"validation top-1 {val_top1:.1%} is the majority class's share ({majority:.1%})")
        if not reasons:
            return None
        self.warned = True
        return (f"not learning after {epoch} epochs: {' and '.join(reasons)}. Likely causes: the learning rate "
                "(--lr: try 3x lower; higher if the loss does not move at all), augmentation that hides the signal "
                "(check with --min-crop-scale 1 --temporal-jitter false), a frozen randomly initialised backbone "
                "(--weights none needs --schedule full), or motion the features cannot show (--pool grid keeps "
                "where things are). Training goes on.")


__all__ = ["LabelCounts", "LearningHealth", "STALL_FRACTION", "EPOCHS_AFTER_WARMUP"]
