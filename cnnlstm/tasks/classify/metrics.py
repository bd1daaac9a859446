"""Classification metrics: pure functions over logits (N, K) and integer targets (N,).

The conventions (inputs, unlabelled targets below zero, empty ratios) are those of
:mod:`cnnlstm.tasks.metrics`, which holds the confusion matrix and per-class table this module
reports.

Letters: N videos (or clips), K classes.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from torch import Tensor

from ..metrics import as_confusion, as_labels, as_tensor, confusion_matrix, per_class_table


def _logits_targets(logits: Any, targets: Any) -> tuple[Tensor, Tensor]:
    lg, tg = as_tensor(logits), as_labels(targets, "targets")
    if lg.ndim != 2 or lg.shape[1] == 0:
        raise ValueError(f"logits must be (N, K) with K >= 1; got shape {tuple(lg.shape)}")
    if lg.shape[0] != tg.shape[0]:
        raise ValueError(f"logits and targets disagree on N: logits {tuple(lg.shape)}, targets {tuple(tg.shape)}")
    num_classes = lg.shape[1]
    if tg.numel() and int(tg.max()) >= num_classes:
        raise ValueError(f"targets must be < K={num_classes} (negative means unlabelled); got max {int(tg.max())}")
    keep = tg >= 0
    return lg[keep].float(), tg[keep]


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


def mean_class_accuracy(confusion: Any) -> float:
    """Mean recall over the classes that have at least one labelled example (0.0 if none do)."""
    c = as_confusion(confusion)
    support = c.sum(dim=1)  # (K,)
    has = support > 0
    if not bool(has.any()):
        return 0.0
    return (c.diagonal()[has].double() / support[has].double()).mean().item()


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
        "num_unlabelled": int(as_tensor(targets).numel() - tg.numel()),
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


__all__ = ["topk_accuracy", "mean_class_accuracy", "classification_report", "format_per_class"]
