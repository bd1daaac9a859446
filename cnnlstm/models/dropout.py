"""Dropout whose masks do not depend on how many processes share the batch.

``nn.Dropout`` draws its masks from the process's RNG: the same global batch split over N
processes gets other masks than in one process, so DDP training follows another path than the
single-process run (measured: weights 90% of the distance trained apart after 2 epochs).

Inside :func:`batch_rows` (the training loop enters it around every step's forward pass),
:class:`Dropout` and :func:`dropout` draw the mask of the whole global batch, ``(G, ...)``, from a
generator seeded by (run seed, step, call number) and keep this process's rows: row ``i`` of the
global batch gets the same mask with 1 or N processes (on the same kind of device). The calls of
one forward pass are numbered in order, so two dropout layers never share a mask. An input whose
first dimension is not this process's batch falls back to ``nn.functional.dropout``. Outside
:func:`batch_rows` (evaluation, inference, your own loop) this is plain ``nn.Dropout``.

Not covered (their masks still come from the process's RNG): the dropout inside PyTorch's own
layers (``nn.TransformerEncoderLayer``, ``nn.MultiheadAttention``) and scheduled-sampling coin
flips. :class:`~cnnlstm.models.temporal.LSTMEncoder` runs a stacked LSTM layer by layer inside
:func:`batch_rows` so that its between-layer dropout is this one.

Letters: G global batch, B this process's batch.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class _Rows:
    seed: int  # (run seed, step)
    total: int  # G: rows of the global batch
    start: int  # this process's first row
    size: int  # B: this process's rows
    calls: int = 0  # dropout calls so far in this forward pass


_ROWS: ContextVar[_Rows | None] = ContextVar("cnnlstm_dropout_rows", default=None)


def step_seed(seed: int, step: int) -> int:
    """A seed per (run seed, optimizer step)."""
    return (seed * 1_000_003 + step * 7_919 + 17) % (2**63 - 1)


@contextmanager
def batch_rows(seed: int, *, total: int, start: int = 0, size: int | None = None):
    """Dropout masks per row of a global batch of ``total`` rows, of which this process holds
    ``size`` rows from ``start`` (one process: ``start=0``). ``seed``: e.g. :func:`step_seed`."""
    size = total - start if size is None else size
    if total < 1 or start < 0 or size < 0 or start + size > total:
        raise ValueError(f"need 0 <= start and start + size <= total >= 1; got start {start}, size {size}, total "
                         f"{total}")
    token = _ROWS.set(_Rows(seed, total, start, size))
    try:
        yield
    finally:
        _ROWS.reset(token)


def seeded() -> bool:
    """Whether dropout masks are drawn per global-batch row now (inside :func:`batch_rows`)."""
    return _ROWS.get() is not None


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """``F.dropout(x, p, training)``; inside :func:`batch_rows`, with the mask of x's rows of the global batch."""
    rows = _ROWS.get()
    if rows is None or not training or p == 0.0 or x.ndim == 0 or x.shape[0] != rows.size:
        return F.dropout(x, p, training)
    if p == 1.0:
        return x * 0.0
    rows.calls += 1
    generator = torch.Generator(device=x.device).manual_seed(step_seed(rows.seed, rows.calls))
    uniform = torch.rand((rows.total, *x.shape[1:]), generator=generator, device=x.device)  # (G, ...)
    keep = uniform[rows.start : rows.start + rows.size] >= p  # (B, ...)
    return x * keep.to(x.dtype) / (1.0 - p)


class Dropout(nn.Dropout):
    """``nn.Dropout`` (same arguments, same state) whose masks follow :func:`batch_rows`."""

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)


__all__ = ["Dropout", "dropout", "batch_rows", "seeded", "step_seed"]
