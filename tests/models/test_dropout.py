"""Dropout masks per global-batch row: the same masks whether one process or several hold the batch."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnlstm import create_model
from cnnlstm.models.dropout import Dropout, batch_rows, dropout, seeded
from cnnlstm.models.temporal import LSTMEncoder


def test_outside_batch_rows_it_is_nn_dropout():
    x = torch.randn(4, 10)
    torch.manual_seed(5)
    expected = F.dropout(x, 0.5, True)
    torch.manual_seed(5)
    assert torch.equal(Dropout(0.5)(x), expected)
    assert torch.equal(Dropout(0.5).eval()(x), x) and not seeded()
    assert Dropout(0.3).state_dict() == {} and repr(Dropout(0.3)) == "Dropout(p=0.3, inplace=False)"


def test_slices_of_the_global_batch_get_the_rows_of_its_masks():
    x = torch.randn(6, 3, 8)  # (G, T, H)
    with batch_rows(11, total=6):
        whole = [dropout(x, 0.5), dropout(x, 0.5)]  # two layers, one forward pass
        assert seeded()
    for world in (2, 3):
        b = 6 // world
        parts = []
        for rank in range(world):
            with batch_rows(11, total=6, start=rank * b, size=b):
                parts.append([dropout(x[rank * b:(rank + 1) * b], 0.5), dropout(x[rank * b:(rank + 1) * b], 0.5)])
        for call in range(2):
            assert torch.equal(torch.cat([p[call] for p in parts]), whole[call]), f"{world} processes, call {call}"
    assert not torch.equal(whole[0] != 0, whole[1] != 0), "two dropout calls must not share a mask"
    kept = whole[0] != 0
    torch.testing.assert_close(whole[0][kept], x[kept] * 2)  # kept values scaled by 1 / (1 - p)
    assert 0.3 < kept.float().mean() < 0.7
    with batch_rows(12, total=6):
        assert not torch.equal(dropout(x, 0.5) != 0, kept), "another step, other masks"


def test_inputs_that_are_not_this_process_batch_fall_back():
    with batch_rows(1, total=4, start=0, size=2):
        torch.manual_seed(3)
        out = dropout(torch.ones(5, 4), 0.5)  # (B*T, H): rows are not samples
    torch.manual_seed(3)
    assert torch.equal(out, F.dropout(torch.ones(5, 4), 0.5, True))
    with pytest.raises(ValueError, match="start \\+ size <= total"):
        with batch_rows(1, total=4, start=2, size=4):
            pass


def test_a_stacked_lstm_runs_layer_by_layer_with_row_dropout():
    torch.manual_seed(0)
    encoder = LSTMEncoder(5, 7, num_layers=3, dropout=0.5).train()
    x = torch.randn(4, 6, 5)  # (B, T, D)
    with batch_rows(2, total=4):
        whole = encoder(x).sequence
    halves = []
    for rank in range(2):
        with batch_rows(2, total=4, start=2 * rank, size=2):
            halves.append(encoder(x[2 * rank:2 * rank + 2]).sequence)
    torch.testing.assert_close(torch.cat(halves), whole, rtol=0, atol=1e-6)
    whole.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())
    encoder.lstm.dropout = 0.0  # without dropout the layer-by-layer path is nn.LSTM itself
    with batch_rows(2, total=4):
        torch.testing.assert_close(encoder._layer_by_layer(x), encoder.lstm(x)[0], rtol=0, atol=0)


@pytest.mark.parametrize("name, extra", [("cnn_lstm", {}), ("cnn_lstm", {"bidirectional": True}),
                                         ("deep_cnn_lstm", {})], ids=["cnn_lstm", "bidirectional", "deep_cnn_lstm"])
def test_a_model_gives_the_same_outputs_whole_or_split(name, extra):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, backbone="test_tiny", hidden_size=16, dropout=0.5, **extra).train()
    model.encoder.freeze()  # BatchNorm in eval mode: per-process statistics are another matter (--sync-bn)
    clips, lengths = torch.randn(4, 3, 3, 32, 32), torch.tensor([3, 2, 3, 1])
    with batch_rows(9, total=4):
        whole = model(clips, lengths).logits
    with batch_rows(9, total=4):
        again = model(clips, lengths).logits
    torch.testing.assert_close(whole, again, rtol=0, atol=0)  # reproducible for a seed
    halves = []
    for rank in range(2):
        with batch_rows(9, total=4, start=2 * rank, size=2):
            halves.append(model(clips[2 * rank:2 * rank + 2], lengths[2 * rank:2 * rank + 2]).logits)
    torch.testing.assert_close(torch.cat(halves), whole, rtol=0, atol=1e-5)
    torch.manual_seed(1)
    unseeded = model(clips, lengths).logits
    assert not torch.allclose(unseeded, whole), "dropout is on: other masks give other outputs"
