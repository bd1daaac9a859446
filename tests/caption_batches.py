"""Teacher-forcing batches of encoded captions, for tests that drive the caption decoder by hand."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from cnnlstm.data.collate import IGNORE_INDEX
from cnnlstm.tasks.caption.text import Vocabulary


def decoder_batch(sequences: Sequence[Sequence[int]], *, pad: int = Vocabulary.pad) -> tuple[Tensor, Tensor]:
    """Teacher-forcing pair from encoded captions ``[<bos>, w1, ..., <eos>]``: decoder inputs
    (B, L) = each sequence without its last token, padded with ``pad``; targets (B, L) = each
    without its first token, padded with ``IGNORE_INDEX`` (-100) so the loss skips the padding."""
    if not sequences or any(len(s) < 2 for s in sequences):
        raise ValueError("decoder_batch needs at least one sequence, each with at least <bos> and one more token")
    L = max(len(s) for s in sequences) - 1
    inputs = torch.full((len(sequences), L), pad, dtype=torch.long)  # (B, L)
    targets = torch.full((len(sequences), L), IGNORE_INDEX, dtype=torch.long)  # (B, L)
    for b, seq in enumerate(sequences):
        seq = torch.as_tensor(list(seq), dtype=torch.long)
        inputs[b, : len(seq) - 1] = seq[:-1]
        targets[b, : len(seq) - 1] = seq[1:]
    return inputs, targets
