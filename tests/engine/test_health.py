"""The learning-health check speaks once, after warmup, when a run sits at the label prior."""
from __future__ import annotations

import math

import torch

from cnnlstm.engine.health import EPOCHS_AFTER_WARMUP, LabelCounts, LearningHealth


def _health(labels, warmup=1.0) -> LearningHealth:
    health = LearningHealth(warmup_epochs=warmup)
    counts = LabelCounts()
    counts.observe(torch.tensor(labels))
    health.labels.add(counts.counts)
    return health


def test_label_counts_ignore_padding_and_give_the_prior_entropy():
    counts = LabelCounts()
    counts.observe(torch.tensor([[0, 1, -100], [2, 3, -100]]))
    counts.observe(None)
    assert counts.counts.tolist() == [1, 1, 1, 1] and counts.total == 4
    assert math.isclose(counts.entropy(), math.log(4)) and counts.majority_share() == 0.25


def test_a_stalled_run_is_reported_once_and_not_before_warmup_plus_two_epochs():
    health = _health([0, 1, 2, 3] * 10)
    first = math.ceil(1.0) + EPOCHS_AFTER_WARMUP
    assert health.check(first - 1, train_loss=math.log(4)) is None  # too early
    message = health.check(first, train_loss=math.log(4) * 0.99)
    assert message and "not learning" in message and "--lr" in message
    assert health.check(first + 1, train_loss=math.log(4)) is None  # said once


def test_a_learning_run_is_left_alone():
    health = _health([0, 1, 2, 3] * 10)
    assert health.check(5, train_loss=0.5 * math.log(4), val_top1=0.9) is None
    assert not health.warned


def test_validation_at_the_majority_share_is_reported_even_when_the_loss_falls():
    health = _health([0] * 30 + [1] * 10)  # majority share 75%
    message = health.check(4, train_loss=0.1, val_top1=0.75)
    assert message and "majority" in message
