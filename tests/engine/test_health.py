"""The learning-health check speaks once, after warmup, when a run sits at the label prior (class
indices under a cross-entropy, multi-hot targets under a binary cross-entropy per class)."""
from __future__ import annotations

import math

import pytest
import torch

from cnnlstm.engine.health import EPOCHS_AFTER_WARMUP, LabelCounts, LearningHealth, MultiHotCounts


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


def test_multi_hot_counts_give_the_prior_loss_of_a_binary_cross_entropy_per_class():
    counts = MultiHotCounts()
    counts.observe(torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]))  # (B, K)
    other = MultiHotCounts()
    other.observe(torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]))
    counts.merge(other)
    counts.observe(None)
    assert counts.total == 4 and counts.positives.tolist() == [2.0, 0.0, 4.0]
    # rates 1/2, 0, 1: only the first class costs anything, log 2 under the mean over 3 classes
    assert math.isclose(counts.prior_loss(), math.log(2) / 3, rel_tol=1e-9)
    assert counts.majority_share() is None
    # the prior is what BCE-with-logits reaches with the best constant logit
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]).repeat(2, 1)
    p = targets.mean(0).clamp(1e-6, 1 - 1e-6)
    best = torch.nn.functional.binary_cross_entropy_with_logits(torch.logit(p).expand_as(targets), targets)
    assert math.isclose(counts.prior_loss(), float(best), abs_tol=1e-4)


def test_weighted_positives_change_the_prior_to_the_weighted_optimum():
    weight = torch.tensor([3.0, 1.0])
    counts = MultiHotCounts(pos_weight=weight)
    targets = torch.tensor([[1.0, 1.0], [0.0, 0.0], [0.0, 0.0], [0.0, 1.0]])  # rates 1/4, 1/2
    counts.observe(targets)
    losses = []
    for z in torch.linspace(-3, 3, 601):  # class 0's best constant logit, by search (class 1's is 0: rate 1/2)
        logits = torch.tensor([[float(z), 0.0]]).expand_as(targets)
        losses.append(float(torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, pos_weight=weight)))
    assert math.isclose(counts.prior_loss(), min(losses), abs_tol=1e-4)


def test_a_stalled_multi_label_run_is_reported_without_a_top1_rule():
    health = LearningHealth(warmup_epochs=1.0, labels=MultiHotCounts())
    health.labels.observe(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]]))
    prior = health.labels.prior_loss()
    assert math.isclose(prior, math.log(2))
    assert health.check(3, train_loss=0.3) is None  # learning
    message = health.check(3, train_loss=prior * 0.99, val_top1=None)
    assert message and "label frequencies" in message and "majority" not in message
    with pytest.raises(ValueError, match=r"\(B, K\)"):
        MultiHotCounts().observe(torch.tensor([1.0, 0.0]))
