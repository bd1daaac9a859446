"""The optimizer's parameter groups and the warmup + cosine schedule."""
from __future__ import annotations

import math

import pytest
import torch

from cnnlstm import create_model
from cnnlstm.config import TrainConfig
from cnnlstm.engine.optim import build_optimizer, build_scheduler


def decay_of(optimizer) -> dict[int, float]:
    return {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}


def test_weight_decay_skips_biases_norms_positions_and_cls_token():
    model = create_model("temporal_transformer", num_classes=3, backbone="test_tiny", d_model=16, num_heads=2,
                         num_layers=1)
    decay = decay_of(build_optimizer(model, TrainConfig(weight_decay=0.05), 1e-3))
    named = dict(model.named_parameters())
    assert len(decay) == len(named), "every trainable parameter is in exactly one group"
    for name, p in named.items():
        expected = 0.0 if p.ndim <= 1 or name.endswith(("pos_embed", "cls_token")) else 0.05
        assert decay[id(p)] == expected, name
    assert decay[id(named["temporal.pos_embed"])] == 0.0 and decay[id(named["head.fc.weight"])] == 0.05


@pytest.mark.parametrize("weights,scale", [("none", 1.0), ("imagenet", 0.1)])
def test_backbone_lr_scale_follows_the_weights(weights, scale):
    model = create_model("cnn_lstm", num_classes=3, backbone="test_tiny", hidden_size=8)
    optimizer = build_optimizer(model, TrainConfig(weights=weights), 1e-3)
    backbone = {id(p) for n, p in model.named_parameters() if n.startswith("encoder.stages.")}
    assert backbone, "test_tiny has stages"
    for group in optimizer.param_groups:
        in_backbone = {id(p) in backbone for p in group["params"]}
        assert len(in_backbone) == 1, "a group is all backbone or none of it"
        assert group["lr"] == pytest.approx(1e-3 * (scale if in_backbone.pop() else 1.0))


def test_schedule_warms_up_then_decays_to_zero():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(optimizer, total_steps=10, warmup_steps=2)
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert lrs[3:] == sorted(lrs[3:], reverse=True) and lrs[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 8)))
