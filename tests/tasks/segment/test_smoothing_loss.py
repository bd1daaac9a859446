"""MS-TCN's smoothing loss (T-MSE) that --task segment adds to the per-frame cross-entropy (--tmse)."""
from __future__ import annotations

import math

import torch

from cnnlstm.data.collate import IGNORE_INDEX
from cnnlstm.tasks.segment.task import smoothing_loss


def test_a_steady_timeline_costs_nothing_and_a_flicker_costs_its_squared_jump():
    steady = torch.tensor([[2.0, 0.0, 0.0]]).repeat(5, 1)[None]  # (1, T=5, K=3)
    labels = torch.zeros(1, 5, dtype=torch.long)
    assert float(smoothing_loss(steady, labels)) == 0.0
    flicker = steady.clone()
    flicker[0, 2] = torch.tensor([0.0, 2.0, 0.0])  # one frame jumps to class 1 and back
    logp = steady[0, 0].log_softmax(-1), flicker[0, 2].log_softmax(-1)
    jump = float((logp[1] - logp[0]).pow(2).mean())  # the same size into the flicker and out of it
    assert math.isclose(float(smoothing_loss(flicker, labels)), 2 * jump / 4, rel_tol=1e-5)  # 2 of 4 changes


def test_a_jump_is_truncated_and_the_earlier_frame_gets_no_gradient():
    logits = torch.tensor([[[50.0, 0.0], [0.0, 50.0]]], requires_grad=True)  # (1, 2, 2): a log-prob jump of 50
    loss = smoothing_loss(logits, torch.zeros(1, 2, dtype=torch.long), clamp=4.0).detach()
    assert math.isclose(loss.item(), 16.0, rel_tol=1e-6)  # clamp ** 2, whatever the jump
    small = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], requires_grad=True)
    smoothing_loss(small, torch.zeros(1, 2, dtype=torch.long)).backward()
    assert small.grad[0, 0].abs().sum() == 0  # the previous frame is held fixed (as MS-TCN detaches it)
    assert small.grad[0, 1].abs().sum() > 0  # the later frame is pulled toward it


def test_padding_does_not_count():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 4)
    labels = torch.zeros(2, 6, dtype=torch.long)
    labels[1, 4:] = IGNORE_INDEX  # the second clip has 4 real frames
    moved = logits.clone()
    moved[1, 4:] = torch.randn(2, 4) * 10  # whatever the model says on padding
    torch.testing.assert_close(smoothing_loss(logits, labels), smoothing_loss(moved, labels))
    alone = torch.cat([(logits[0, 1:].log_softmax(-1) - logits[0, :-1].log_softmax(-1)).pow(2).mean(-1),
                       (logits[1, 1:4].log_softmax(-1) - logits[1, :3].log_softmax(-1)).pow(2).mean(-1)])
    torch.testing.assert_close(smoothing_loss(logits, labels), alone.mean())  # 5 + 3 real changes
    one_frame = torch.full((1, 3), IGNORE_INDEX, dtype=torch.long)
    one_frame[0, 0] = 0
    assert float(smoothing_loss(torch.randn(1, 3, 4), one_frame)) == 0.0  # no change to measure
