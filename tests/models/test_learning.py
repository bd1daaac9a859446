"""Models learn a task that needs temporal order; the order-blind baseline cannot."""
from __future__ import annotations

import torch

from cnnlstm import create_model


def direction_task(n: int, T: int = 8, D: int = 32, generator=None):
    """A bump moves across the D feature channels: class 0 left-to-right, class 1 right-to-left.
    Both classes contain exactly the same frames, only their order differs."""
    start = torch.randint(0, D - T, (n,), generator=generator)
    labels = torch.randint(0, 2, (n,), generator=generator)
    steps = torch.arange(T)
    pos = start[:, None] + torch.where(labels[:, None] == 0, steps, T - 1 - steps)  # (n, T)
    feats = torch.nn.functional.one_hot(pos, D).float() + 0.05 * torch.randn(n, T, D, generator=generator)
    return feats, labels


def train_accuracy(name: str, steps: int = 150) -> float:
    g = torch.Generator().manual_seed(0)
    kwargs = {} if name == "mean_pool" else {"hidden_size": 32}
    model = create_model(name, num_classes=2, backbone="test_tiny", pool="avg", **kwargs)  # features of D = 32
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        x, y = direction_task(32, generator=g)
        loss = torch.nn.functional.cross_entropy(model(x).logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x, y = direction_task(512, generator=g)
    with torch.no_grad():
        return (model(x).logits.argmax(1) == y).float().mean().item()


def test_cnn_lstm_learns_temporal_order_and_mean_pool_cannot():
    assert train_accuracy("cnn_lstm") > 0.95
    assert train_accuracy("mean_pool") < 0.7
