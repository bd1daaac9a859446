"""Multi-label metrics: pure functions over scores (N, K) and multi-hot targets (N, K) in {0, 1}.

- **AP per class** as Charades reports it: rank the videos by the class's score, and average the
  precision at each positive's rank (the area under the precision-recall curve, every point
  counted, no interpolation). Videos with equal scores are one threshold (they enter the ranking
  together), as in scikit-learn's ``average_precision_score``; without ties the two definitions
  agree exactly. A class with no positive video has no AP: it is left out of the mean and named in
  ``classes_without_positives``.
- **mAP**: the mean of those APs (0.0 when no class has a positive).
- **F1@0.5** at a score threshold (probability ``sigmoid(logit) >= threshold``): *micro* pools the
  true/false positives and false negatives of every (video, class) pair; *macro* averages the
  per-class F1 over the classes that have a positive or a prediction (a class with neither has
  nothing to score; scikit-learn's ``zero_division=np.nan``).
- **Exact match** (subset accuracy): the share of videos whose predicted label set is exactly
  the true one.

Ranking uses the scores as given (logits and probabilities rank the same; logits do not
saturate into ties). Results are python floats and lists, so reports go straight to ``json.dumps``.

Letters: N videos, K classes.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..metrics import as_tensor, ratio


def check_threshold(threshold: float) -> float:
    """``threshold`` if it is a probability in [0, 1], else ValueError."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a probability in [0, 1] (a class counts as present when its score is "
                         f"at least that); got {threshold!r}")
    return float(threshold)


def as_multi_hot(targets: Any, name: str = "targets") -> Tensor:
    """Targets (N, K) holding only 0 and 1 (bool, int or float), as a bool tensor."""
    t = as_tensor(targets)
    if t.ndim != 2:
        raise ValueError(f"{name} must be multi-hot (N, K); got shape {tuple(t.shape)}")
    if t.numel() and not bool(((t == 0) | (t == 1)).all()):
        bad = t[(t != 0) & (t != 1)][:3].tolist()
        raise ValueError(f"{name} must hold only 0 and 1 (a class is present or not); got values like {bad}")
    return t.bool()


def _scores_targets(scores: Any, targets: Any) -> tuple[Tensor, Tensor]:
    s, t = as_tensor(scores).double(), as_multi_hot(targets)
    if s.shape != t.shape:
        raise ValueError(f"scores and targets must have the same shape (N, K); got {tuple(s.shape)} and "
                         f"{tuple(t.shape)}")
    if torch.isnan(s).any():
        raise ValueError("scores hold NaN; a ranking needs numbers (check the model's outputs)")
    return s, t


def average_precision(scores: Any, targets: Any) -> float | None:
    """AP of one class: ``scores`` (N,), ``targets`` (N,) in {0, 1}; None when no target is positive."""
    s, t = _scores_targets(as_tensor(scores).reshape(-1, 1), as_tensor(targets).reshape(-1, 1))
    s, t = s[:, 0], t[:, 0]
    positives = int(t.sum())
    if positives == 0:
        return None
    order = torch.argsort(s, descending=True, stable=True)
    s, t = s[order], t[order]
    tp = torch.cumsum(t, 0).double()  # (N,) true positives among the first n
    last = torch.ones_like(t)
    last[:-1] = s[1:] != s[:-1]  # the last video of each run of equal scores ends a threshold
    tp, seen = tp[last], torch.arange(1, len(s) + 1, dtype=torch.float64)[last]
    precision, recall = tp / seen, tp / positives
    gained = torch.diff(recall, prepend=recall.new_zeros(1))  # recall added at each threshold
    return float((gained * precision).sum())


def mean_average_precision(scores: Any, targets: Any) -> tuple[float, list[float | None]]:
    """(mAP over the classes with a positive, AP per class with None for the others); (N, K) each."""
    s, t = _scores_targets(scores, targets)
    per_class = [average_precision(s[:, k], t[:, k]) for k in range(s.shape[1])]
    scored = [ap for ap in per_class if ap is not None]
    return (sum(scored) / len(scored) if scored else 0.0), per_class


def f1_scores(predicted: Any, targets: Any) -> dict:
    """F1 of predicted label sets (N, K) in {0, 1}: ``micro``, ``macro`` and per-class
    ``precision``, ``recall``, ``f1`` lists (K,), with ``tp``, ``fp``, ``fn`` counts per class."""
    p, t = as_multi_hot(predicted, "predicted"), as_multi_hot(targets)
    if p.shape != t.shape:
        raise ValueError(f"predicted and targets must have the same shape (N, K); got {tuple(p.shape)} and "
                         f"{tuple(t.shape)}")
    tp, fp, fn = (p & t).sum(0).tolist(), (p & ~t).sum(0).tolist(), (~p & t).sum(0).tolist()
    precision = [ratio(a, a + b) for a, b in zip(tp, fp, strict=True)]
    recall = [ratio(a, a + c) for a, c in zip(tp, fn, strict=True)]
    f1 = [ratio(2 * a, 2 * a + b + c) for a, b, c in zip(tp, fp, fn, strict=True)]
    scored = [f for f, a, b, c in zip(f1, tp, fp, fn, strict=True) if a + b + c > 0]
    return {"micro": ratio(2 * sum(tp), 2 * sum(tp) + sum(fp) + sum(fn)),
            "macro": sum(scored) / len(scored) if scored else 0.0,
            "precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def multilabel_report(logits: Any, targets: Any, classes: Sequence[str], *, threshold: float = 0.5,
                      skipped: list[dict] | None = None) -> dict:
    """Everything an evaluation reports, JSON-ready; ``logits`` (N, K), a class counts as predicted
    when ``sigmoid(logit) >= threshold``.

    Keys: ``map``, ``f1@0.5_micro`` and ``f1@0.5_macro`` (at ``threshold``, named for the usual
    0.5), ``exact_match``, ``threshold``, ``num_videos``, ``label_cardinality`` (mean true labels
    per video), ``per_class`` (``class``, ``ap`` (None without positives), ``positives``,
    ``predicted``, ``precision``, ``recall``, ``f1``), ``classes_without_positives``, ``classes``,
    ``skipped`` (videos that could not be decoded).
    """
    check_threshold(threshold)
    s, t = _scores_targets(logits, targets)
    if len(classes) != s.shape[1]:
        raise ValueError(f"got {len(classes)} class names for scores with K={s.shape[1]}")
    mean_ap, aps = mean_average_precision(s, t)
    predicted = s.sigmoid() >= threshold  # (N, K)
    f1 = f1_scores(predicted, t)
    rows = [{"class": str(name), "ap": ap, "positives": int(t[:, k].sum()), "predicted": int(predicted[:, k].sum()),
             "precision": f1["precision"][k], "recall": f1["recall"][k], "f1": f1["f1"][k]}
            for k, (name, ap) in enumerate(zip(classes, aps, strict=True))]
    return {
        "map": mean_ap,
        "f1@0.5_micro": f1["micro"],
        "f1@0.5_macro": f1["macro"],
        "exact_match": float((predicted == t).all(1).double().mean()) if len(t) else 0.0,
        "threshold": threshold,
        "num_videos": int(s.shape[0]),
        "label_cardinality": float(t.double().sum(1).mean()) if len(t) else 0.0,
        "per_class": rows,
        "classes_without_positives": [r["class"] for r in rows if r["ap"] is None],
        "classes": [str(c) for c in classes],
        "skipped": list(skipped or []),
    }


def format_per_class(rows: Sequence[dict]) -> str:
    """Aligned text table of the report's ``per_class`` rows."""
    header = ("class", "AP", "positives", "predicted", "precision", "recall", "f1")
    lines = [[r["class"], "-" if r["ap"] is None else f"{r['ap']:.1%}", str(r["positives"]), str(r["predicted"]),
              *(f"{r[k]:.1%}" for k in ("precision", "recall", "f1"))] for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths,
                                                                                            strict=True)))

    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *(fmt(line) for line in lines)])


__all__ = ["check_threshold", "as_multi_hot", "average_precision", "mean_average_precision", "f1_scores",
           "multilabel_report", "format_per_class"]
