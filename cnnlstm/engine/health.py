"""A learning-health check: say once, early, when a run is not learning.

A model that learned nothing predicts the label frequencies, and its loss is then the loss of
the label prior: for a cross-entropy over class indices (clip classes, frame labels, caption
tokens) the entropy of the prior (``log K`` for K balanced classes), counted by
:class:`LabelCounts`; for a binary cross-entropy per class over multi-hot targets (several labels
per clip) the mean over classes of each class's binary entropy, counted by
:class:`MultiHotCounts`. Each task says which (``Task.label_counts``). When the training loss is
still at that value a couple of epochs after warmup, or the validation top-1 sits at the majority
class's share, the run is dead or stalled: :class:`LearningHealth` says so once, with the likely
causes, and training goes on.

Letters: B batch, K classes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import torch

STALL_FRACTION = 0.95  # a training loss above this share of the prior's entropy counts as "not learning"
EPOCHS_AFTER_WARMUP = 2  # how long a run may sit at the prior before the check speaks


class LabelStatistics(Protocol):
    """What the check needs from the training targets seen: their number and the loss of the prior."""

    def observe(self, labels: torch.Tensor | None) -> None:
        """Count one batch's targets."""

    def merge(self, other: LabelStatistics) -> None:
        """Add the counts of another accumulator of the same kind (an epoch's)."""

    @property
    def total(self) -> int:
        """Targets counted (0: nothing to judge)."""

    def prior_loss(self) -> float:
        """The task's loss (nats) when the model predicts the label frequencies."""

    def majority_share(self) -> float | None:
        """The top-1 accuracy of always predicting the most frequent class (None: no such rule)."""


@dataclass
class LabelCounts:
    """How often each label index occurs among the training targets seen (negatives are padding);
    the prior's loss under a cross-entropy is the entropy of these frequencies."""

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

    def merge(self, other: LabelCounts) -> None:
        self.add(other.counts)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def prior_loss(self) -> float:
        return self.entropy()

    def entropy(self) -> float:
        """Entropy (nats) of the label frequencies: the loss of always predicting the prior."""
        p = self.counts.double() / max(self.total, 1)
        p = p[p > 0]
        return float(-(p * p.log()).sum())

    def majority_share(self) -> float:
        return float(self.counts.max()) / self.total if self.total else 0.0


@dataclass
class MultiHotCounts:
    """Multi-hot targets (B, K) in {0, 1} under a binary cross-entropy per class (mean over B and K):
    per class, how many items were positive out of how many. ``pos_weight`` (K,) is the loss's
    weight on positives (None: 1)."""

    pos_weight: torch.Tensor | None = None
    positives: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.float64))  # (K,)
    items: int = 0

    def observe(self, labels: torch.Tensor | None) -> None:
        if labels is None or labels.numel() == 0:
            return
        if labels.ndim != 2:
            raise ValueError(f"multi-hot targets must be (B, K); got shape {tuple(labels.shape)}")
        self.merge(MultiHotCounts(positives=labels.detach().double().sum(0).cpu(), items=labels.shape[0]))

    def merge(self, other: MultiHotCounts) -> None:
        if other.items:
            self.positives = other.positives.clone() if not self.items else self.positives + other.positives
            self.items += other.items

    @property
    def total(self) -> int:
        return self.items

    def prior_loss(self) -> float:
        """Mean over classes of the weighted binary cross-entropy of the best constant score: with
        positive rate p and weight w, the score q = w p / (w p + 1 - p) (q = p when w = 1)."""
        if not self.items:
            return 0.0
        p = (self.positives / self.items).clamp(0, 1)  # (K,)
        w = self.pos_weight.double().cpu() if self.pos_weight is not None else torch.ones_like(p)
        q = w * p / (w * p + 1 - p).clamp_min(1e-12)
        loss = -(w * torch.xlogy(p, q) + torch.xlogy(1 - p, 1 - q))  # (K,) 0 log 0 = 0
        return float(loss.mean())

    def majority_share(self) -> None:
        return None  # no single class is predicted


@dataclass
class LearningHealth:
    """Collects the training labels and checks each epoch's losses against the prior."""

    warmup_epochs: float
    labels: LabelStatistics = field(default_factory=LabelCounts)  # the task's kind (Task.label_counts)
    warned: bool = False

    def check(self, epoch: int, train_loss: float, val_top1: float | None = None) -> str | None:
        """A warning (once) when, ``EPOCHS_AFTER_WARMUP`` epochs after warmup, the run is still at the
        prior; ``epoch`` counts from 1. None while healthy, too early, or already said."""
        if self.warned or not self.labels.total or epoch < math.ceil(self.warmup_epochs) + EPOCHS_AFTER_WARMUP:
            return None
        prior, majority = self.labels.prior_loss(), self.labels.majority_share()
        reasons = []
        if train_loss >= STALL_FRACTION * prior:
            reasons.append(f"the training loss {train_loss:.3f} is still the loss of predicting the label "
                           f"frequencies ({prior:.3f})")
        if val_top1 is not None and majority is not None and val_top1 <= majority + 1e-6:
            reasons.append(f"validation top-1 {val_top1:.1%} is the majority class's share ({majority:.1%})")
        if not reasons:
            return None
        self.warned = True
        return (f"not learning after {epoch} epochs: {' and '.join(reasons)}. Likely causes: the learning rate "
                "(--lr: try 3x lower; higher if the loss does not move at all), augmentation that hides the signal "
                "(check with --min-crop-scale 1 --temporal-jitter false), a frozen randomly initialised backbone "
                "(--weights none needs --schedule full), or motion the features cannot show (--pool grid keeps "
                "where things are). Training goes on.")


__all__ = ["LabelStatistics", "LabelCounts", "MultiHotCounts", "LearningHealth", "STALL_FRACTION",
           "EPOCHS_AFTER_WARMUP"]
