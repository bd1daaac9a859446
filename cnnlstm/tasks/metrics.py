"""Label metrics every task builds on: checked label tensors, safe ratios, the confusion matrix
and its per-class table (clips for classification, frames for segmentation).

Inputs may be torch tensors, numpy arrays or lists; results are python floats, ints and lists, so
reports go straight to ``json.dumps``. Labels below zero mean "unlabelled" (the label padding
:data:`~cnnlstm.data.collate.IGNORE_INDEX` included) and are left out. Ratios with an empty
denominator (a class never predicted, no labelled item) are 0.0, as in scikit-learn's
``zero_division=0``.

Letters: N items (clips or frames), K classes.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


def as_tensor(x: Any) -> Tensor:
    """``x`` as a detached CPU tensor."""
    return (x if isinstance(x, Tensor) else torch.as_tensor(x)).detach().cpu()


def as_labels(x: Any, name: str, shape: str = "1-D (N,)") -> Tensor:
    """Integer labels as int64, 1-D; float arrays holding whole numbers are accepted.

    ``shape`` describes the expected shape in the error message (e.g. "per-frame labels of shape (T,)")."""
    t = as_tensor(x)
    if t.ndim != 1:
        raise ValueError(f"{name} must be {shape}; got shape {tuple(t.shape)}")
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name} must hold integer class indices; got dtype {t.dtype}")
    if t.is_floating_point() and not torch.equal(t, t.round()):
        raise TypeError(f"{name} must hold integer class indices; got non-integer values of dtype {t.dtype}")
    return t.long()


def ratio(num: float, den: float) -> float:
    """``num / den``, or 0.0 when ``den`` is 0."""
    return float(num) / float(den) if den else 0.0


def confusion_matrix(preds: Any, targets: Any, num_classes: int) -> Tensor:
    """Counts (K, K): rows are the true class, columns the predicted class.

    ``preds`` is (N,) class indices, or (N, K) logits/scores (their argmax is used).
    Rows with a negative target are ignored.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer; got {num_classes!r}")
    p = as_tensor(preds)
    if p.ndim == 2:
        if p.shape[1] != num_classes:
            raise ValueError(f"scores (N, K) must have K={num_classes} columns; got shape {tuple(p.shape)}")
        p = p.argmax(dim=1)
    p, t = as_labels(p, "preds"), as_labels(targets, "targets")
    if p.shape != t.shape:
        raise ValueError(f"preds and targets disagree on N: preds {tuple(p.shape)}, targets {tuple(t.shape)}")
    keep = t >= 0
    p, t = p[keep], t[keep]
    for name, v in (("preds", p), ("targets", t)):
        if v.numel() and (int(v.min()) < 0 or int(v.max()) >= num_classes):
            raise ValueError(f"{name} must lie in [0, {num_classes}); got range [{int(v.min())}, {int(v.max())}]")
    flat = torch.bincount(t * num_classes + p, minlength=num_classes * num_classes)  # (K*K,)
    return flat.reshape(num_classes, num_classes)  # (K, K)


def as_confusion(confusion: Any) -> Tensor:
    """A square confusion matrix (K, K) as int64 (float64 when it holds fractions)."""
    c = as_tensor(confusion)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"confusion must be square (K, K); got shape {tuple(c.shape)}")
    return c.long() if not c.is_floating_point() else c.double()


def per_class_table(confusion: Any, classes: Sequence[str]) -> list[dict]:
    """One row per class: ``class``, ``support``, ``correct``, ``recall``, ``precision``, ``f1``."""
    c = as_confusion(confusion)
    if len(classes) != c.shape[0]:
        raise ValueError(f"got {len(classes)} class names for a {tuple(c.shape)} confusion matrix")
    support, predicted, correct = c.sum(dim=1).tolist(), c.sum(dim=0).tolist(), c.diagonal().tolist()
    rows = []
    for name, s, p, tp in zip(classes, support, predicted, correct, strict=True):
        recall, precision = ratio(tp, s), ratio(tp, p)
        f1 = ratio(2 * precision * recall, precision + recall)
        rows.append({"class": str(name), "support": s, "correct": tp,
                     "recall": recall, "precision": precision, "f1": f1})
    return rows


__all__ = ["as_tensor", "as_labels", "ratio", "confusion_matrix", "as_confusion", "per_class_table"]
