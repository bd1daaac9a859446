"""Classification metrics: pure functions over logits and integer targets.

Inputs may be torch tensors, numpy arrays or lists; results are python floats, ints and lists,
so a report goes straight to ``json.dumps``. Targets below zero mean "unlabelled" and are left
out of every metric. Ratios with an empty denominator (a class never predicted, no labelled
videos) are 0.0, as in scikit-learn's ``zero_division=0``.

Letters: N videos (or clips), K classes.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "topk_accuracy",
    "confusion_matrix",
    "mean_class_accuracy",
    "per_class_table",
    "classification_report",
    "format_per_class",
    "RunningMean",
]


def _tensor(x: Any) -> Tensor:
    return (x if isinstance(x, Tensor) else torch.as_tensor(x)).detach().cpu()


def _labels(x: Any, name: str) -> Tensor:
    """Integer labels (N,) as int64; float arrays holding whole numbers are accepted."""
    t = _tensor(x)
    if t.ndim != 1:
        raise ValueError(f"{name} must be 1-D (N,); got shape {tuple(t.shape)}")
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name} must hold integer class indices; got dtype {t.dtype}")
    if t.is_floating_point() and not torch.equal(t, t.round()):
        raise TypeError(f"{name} must hold integer class indices; got non-integer values of dtype {t.dtype}")
    return t.long()


def _logits_targets(logits: Any, targets: Any) -> tuple[Tensor, Tensor]:
    lg, tg = _tensor(logits), _labels(targets, "targets")
    if lg.ndim != 2 or lg.shape[1] == 0:
        raise ValueError(f"logits must be (N, K) with K >= 1; got shape {tuple(lg.shape)}")
    if lg.shape[0] != tg.shape[0]:
        raise ValueError(f"logits and targets disagree on N: logits {tuple(lg.shape)}, targets {tuple(tg.shape)}")
    num_classes = lg.shape[1]
    if tg.numel() and int(tg.max()) >= num_classes:
        raise ValueError(f"targets must be < K={num_classes} (negative means unlabelled); got max {int(tg.max())}")
    keep = tg >= 0
    return lg[keep].float(), tg[keep]


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


def topk_accuracy(logits: Any, targets: Any, ks: Iterable[int] = (1, 5)) -> dict[int, float]:
    """Fraction of labelled rows whose target is among the k largest logits, for each k.

    ``logits`` (N, K), ``targets`` (N,). A k larger than K counts as K. Ties between logits
    are broken by ``torch.topk`` (arbitrary but deterministic).
    """
    ks = tuple(ks)
    bad = [k for k in ks if isinstance(k, bool) or not isinstance(k, int) or k < 1]
    if not ks or bad:
        raise ValueError(f"ks must be positive integers; got {ks!r}")
    lg, tg = _logits_targets(logits, targets)
    num_classes = lg.shape[1]
    if tg.numel() == 0:
        return {k: 0.0 for k in ks}
    top = lg.topk(min(max(ks), num_classes), dim=1).indices  # (N, k_max)
    hits = top.eq(tg[:, None])  # (N, k_max)
    return {k: hits[:, : min(k, num_classes)].any(dim=1).float().mean().item() for k in ks}


def confusion_matrix(preds: Any, targets: Any, num_classes: int) -> Tensor:
    """Counts (K, K): rows are the true class, columns the predicted class.

    ``preds`` is (N,) class indices, or (N, K) logits/scores (their argmax is used).
    Rows with a negative target are ignored.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer; got {num_classes!r}")
    p = _tensor(preds)
    if p.ndim == 2:
        if p.shape[1] != num_classes:
            raise ValueError(f"scores (N, K) must have K={num_classes} columns; got shape {tuple(p.shape)}")
        p = p.argmax(dim=1)
    p, t = _labels(p, "preds"), _labels(targets, "targets")
    if p.shape != t.shape:
        raise ValueError(f"preds and targets disagree on N: preds {tuple(p.shape)}, targets {tuple(t.shape)}")
    keep = t >= 0
    p, t = p[keep], t[keep]
    for name, v in (("preds", p), ("targets", t)):
        if v.numel() and (int(v.min()) < 0 or int(v.max()) >= num_classes):
            raise ValueError(f"{name} must lie in [0, {num_classes}); got range [{int(v.min())}, {int(v.max())}]")
    flat = torch.bincount(t * num_classes + p, minlength=num_classes * num_classes)  # (K*K,)
    return flat.reshape(num_classes, num_classes)  # (K, K)


def _confusion(confusion: Any) -> Tensor:
    c = _tensor(confusion)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"confusion must be square (K, K); got shape {tuple(c.shape)}")
    return c.long() if not c.is_floating_point() else c.double()


def mean_class_accuracy(confusion: Any) -> float:
    """Mean recall over the classes that have at least one labelled example (0.0 if none do)."""
    c = _confusion(confusion)
    support = c.sum(dim=1)  # (K,)
    has = support > 0
    if not bool(has.any()):
        return 0.0
    return (c.diagonal()[has].double() / support[has].double()).mean().item()


def per_class_table(confusion: Any, classes: Sequence[str]) -> list[dict]:
    """One row per class: ``class``, ``support``, ``correct``, ``recall``, ``precision``, ``f1``."""
    c = _confusion(confusion)
    if len(classes) != c.shape[0]:
        raise ValueError(f"got {len(classes)} class names for a {tuple(c.shape)} confusion matrix")
    support, predicted, correct = c.sum(dim=1).tolist(), c.sum(dim=0).tolist(), c.diagonal().tolist()
    rows = []
    for name, s, p, tp in zip(classes, support, predicted, correct, strict=True):
        recall, precision = _ratio(tp, s), _ratio(tp, p)
        f1 = _ratio(2 * precision * recall, precision + recall)
        rows.append({"class": str(name), "support": s, "correct": tp,
                     "recall": recall, "precision": precision, "f1": f1})
    return rows


def classification_report(
    logits: Any, targets: Any, classes: Sequence[str], *, skipped: list[dict] | None = None
) -> dict:
    """Everything an evaluation writes to ``metrics.json``, JSON-ready.

    Keys: ``top1``, ``top5`` (top-min(5, K), with that k in ``top5_k``), ``mean_class_accuracy``,
    ``num_videos`` (labelled rows scored), ``num_unlabelled``, ``confusion_matrix`` (K lists of K
    ints), ``per_class``, ``classes``, ``skipped`` (videos that could not be decoded).
    """
    lg, tg = _logits_targets(logits, targets)
    num_classes = lg.shape[1]
    if len(classes) != num_classes:
        raise ValueError(f"got {len(classes)} class names for logits with K={num_classes}")
    k5 = min(5, num_classes)
    acc = topk_accuracy(lg, tg, ks=(1, k5))
    cm = confusion_matrix(lg, tg, num_classes)
    return {
        "top1": acc[1],
        "top5": acc[k5],
        "top5_k": k5,
        "mean_class_accuracy": mean_class_accuracy(cm),
        "num_videos": int(tg.numel()),
        "num_unlabelled": int(_tensor(targets).numel() - tg.numel()),
        "confusion_matrix": cm.tolist(),
        "per_class": per_class_table(cm, classes),
        "classes": [str(c) for c in classes],
        "skipped": list(skipped or []),
    }


def format_per_class(table: Sequence[dict]) -> str:
    """Aligned text table of :func:`per_class_table` rows, with a macro average over supported classes."""
    header = ("class", "support", "correct", "recall", "precision", "f1")
    lines = [[str(r["class"]), str(r["support"]), str(r["correct"]),
              *(f"{r[k]:.1%}" for k in ("recall", "precision", "f1"))] for r in table]
    supported = [r for r in table if r["support"] > 0]
    if supported:
        macro = [sum(r[k] for r in supported) / len(supported) for k in ("recall", "precision", "f1")]
        lines.append(["macro avg", str(sum(r["support"] for r in table)),
                      str(sum(r["correct"] for r in table)), *(f"{m:.1%}" for m in macro)])
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]

    def fmt(cells: Sequence[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs)

    out = [fmt(header), "  ".join("-" * w for w in widths), *(fmt(line) for line in lines)]
    if supported:  # rule above the macro line
        out.insert(len(out) - 1, out[1])
    return "\n".join(out)


class RunningMean:
    """Weighted running mean of per-batch values (losses): ``update(batch_mean, n=batch_size)``."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def update(self, value: float | Tensor, n: int = 1) -> None:
        """Add ``value`` (the mean over ``n`` items); a tensor is read with ``.item()``."""
        if isinstance(n, bool) or int(n) != n or n < 0:
            raise ValueError(f"n must be a non-negative integer; got {n!r}")
        v = float(value.detach().item()) if isinstance(value, Tensor) else float(value)
        self.total += v * n  # a NaN loss stays visible in the mean; the loop decides what to do
        self.count += int(n)

    @property
    def mean(self) -> float:
        """The mean so far (0.0 before any update)."""
        return self.total / self.count if self.count else 0.0

    def reset(self) -> None:
        self.total, self.count = 0.0, 0

    def __repr__(self) -> str:
        return f"RunningMean(mean={self.mean:.6g}, count={self.count})"
