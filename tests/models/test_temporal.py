"""Temporal modules against PyTorch's own LSTM: padded runs equal packed runs."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from cnnlstm.models._seq import gather_last, reverse_within_length
from cnnlstm.models.temporal import LSTMEncoder, run_lstm


def _copy_bidirectional(ours: LSTMEncoder, ref: nn.LSTM) -> None:
    with torch.no_grad():
        for i, layer in enumerate(ours.layers):
            for direction, suffix in (("fwd", ""), ("bwd", "_reverse")):
                for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(layer[direction], f"{kind}_l0").copy_(getattr(ref, f"{kind}_l{i}{suffix}"))


def test_bidirectional_stack_equals_packed_nn_lstm():
    ref = nn.LSTM(6, 5, num_layers=2, batch_first=True, bidirectional=True)
    ours = LSTMEncoder(6, 5, num_layers=2, bidirectional=True)
    _copy_bidirectional(ours, ref)
    x, lengths = torch.randn(3, 7, 6), torch.tensor([7, 4, 1])
    packed, (h_n, _) = ref(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    expected, _ = pad_packed_sequence(packed, batch_first=True)
    got = ours(x, lengths)
    mask = torch.arange(7)[None] < lengths[:, None]
    torch.testing.assert_close(got.sequence[mask], expected[mask])
    torch.testing.assert_close(got.final, torch.cat([h_n[-2], h_n[-1]], dim=1))  # the seed's summary


def test_unidirectional_padded_equals_packed():
    lstm = nn.LSTM(4, 3, num_layers=2, batch_first=True)
    x, lengths = torch.randn(3, 6, 4), torch.tensor([6, 2, 5])
    padded, _ = run_lstm(lstm, x, lengths, None, need_state=False)
    packed, (h, c) = run_lstm(lstm, x, lengths, None, need_state=True)
    mask = torch.arange(6)[None] < lengths[:, None]
    torch.testing.assert_close(padded[mask], packed[mask])
    torch.testing.assert_close(h[-1], packed[torch.arange(3), lengths - 1])


def test_reverse_within_length_keeps_padding_in_place():
    x = torch.arange(10).view(2, 5)
    got = reverse_within_length(x, torch.tensor([5, 3]))
    assert got.tolist() == [[4, 3, 2, 1, 0], [7, 6, 5, 8, 9]]


def test_gather_last_takes_each_last_real_step_with_no_index_op_in_its_backward():
    x = torch.randn(3, 5, 4, dtype=torch.bfloat16, requires_grad=True)  # (B, T, H)
    x.data[1, 3:] = float("nan")  # padding may hold anything: it must not leak into the result
    lengths = torch.tensor([5, 3, 1])
    got = gather_last(x, lengths)  # (B, H)
    assert got.dtype == x.dtype and torch.equal(got, x.detach()[torch.arange(3), lengths - 1])
    # x[arange(B), lengths - 1] backpropagates through index_put, which torch.compile traces under CUDA bf16
    # autocast and fails on (torch 2.11, H200); select-and-sum does not
    nodes, seen = [got.grad_fn], set()
    while nodes:
        node = nodes.pop()
        if node is not None and node not in seen:
            seen.add(node)
            nodes += [next_fn for next_fn, _ in node.next_functions]
    assert not [n.name() for n in seen if "Index" in n.name()]
    got.float().sum().backward()
    expected = torch.zeros(3, 5, 4)
    expected[torch.arange(3), lengths - 1] = 1
    assert torch.equal(x.grad.float(), expected)
