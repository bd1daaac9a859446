"""Temporal action segmentation metrics: frame accuracy, Edit, F1@k and segment mAP@tIoU.

Frame accuracy, Edit and F1@{10,25,50} are those of the evaluation script of MS-TCN / ASFormer
(``eval.py``, yabufarha/ms-tcn), exactly: segments are runs of equal frame labels (end exclusive),
and the background class is left out of both sequences, as the script leaves out its
``bg_class=["background"]`` (here the run's background class, index 0, ``--background``). Edit is
the normalised Levenshtein distance between the two segment label sequences, averaged over
videos. F1@k: each predicted segment, in time order, takes the ground-truth segment with the
highest IoU over *all* ground-truth segments (IoU 0 for another label; the first on a tie); it is
a true positive when that IoU >= k and that ground truth is not matched yet, else a false
positive (so two predictions whose best match is the same segment give 1 TP and 1 FP); unmatched
ground truth are false negatives. TP/FP/FN are summed over all videos, then one F1 is computed.
The one difference from the script: a video where neither sequence has a segment scores Edit 1.0
(the script divides 0 by 0). Everything is on a 0..1 scale (the script prints 0..100).

Detection mAP (:func:`segment_map`) follows ActivityNet: per class, predictions of all videos
sorted by score, each a true positive when its best still-unmatched ground truth of that class in
the same video has tIoU >= threshold; AP is the area under the precision-recall curve with
precision made monotone (all-point interpolation, as ActivityNet and PASCAL VOC 2010+); the mean
is over the classes that have ground truth.

Labels below zero (``ignore_index``) mark unlabelled frames: they are dropped from both sequences
before anything is computed. Empty denominators give 0.0, as in :mod:`cnnlstm.tasks.metrics`.

Letters: T frames, K classes.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ...data.collate import IGNORE_INDEX
from ..metrics import as_labels, confusion_matrix, per_class_table, ratio
from .segments import label_runs, labels_to_segments

__all__ = [
    "frame_accuracy",
    "edit_score",
    "f1_at_k",
    "segment_counts",
    "segment_map",
    "segmentation_report",
    "sequence_scores",
    "F1_OVERLAPS",
    "MAP_THRESHOLDS",
]

F1_OVERLAPS = (0.10, 0.25, 0.50)
MAP_THRESHOLDS = (0.3, 0.5, 0.7)


def _labels(x, name: str) -> Tensor:
    return as_labels(x, name, "per-frame labels of shape (T,)")


def _pair(pred, target, ignore_index: int = IGNORE_INDEX) -> tuple[Tensor, Tensor]:
    """Labels (T,) of the frames whose target is labelled (>= 0 and not ``ignore_index``)."""
    p, t = _labels(pred, "pred"), _labels(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"pred and target must have the same number of frames; got {p.numel()} and {t.numel()}")
    keep = (t >= 0) & (t != ignore_index)
    return p[keep], t[keep]


def _segments(labels: Tensor, background: int | None) -> list[tuple[int, int, int]]:
    """(label, start, end) runs of equal labels (end exclusive), leaving out ``background`` runs."""
    return [(label, s, e) for label, s, e in label_runs(labels) if label != background]


def frame_accuracy(pred, target, ignore_index: int = IGNORE_INDEX) -> float:
    """Fraction of labelled frames predicted right (0.0 when no frame is labelled)."""
    p, t = _pair(pred, target, ignore_index)
    return ratio(int((p == t).sum()), t.numel())


def _levenshtein(a: Sequence[int], b: Sequence[int]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, start=1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def edit_score(pred, target, background: int | None = None) -> float:
    """1 - Levenshtein(pred segments, target segments) / max(their counts); 1.0 when both are empty.

    Only the order of segment labels counts, not their lengths: over-segmentation lowers it.
    ``background``: a class whose segments are left out (None counts every class).
    """
    p, t = _pair(pred, target)
    return _edit(_segments(p, background), _segments(t, background))


def _edit(predicted: list[tuple[int, int, int]], truth: list[tuple[int, int, int]]) -> float:
    a, b = [s[0] for s in predicted], [s[0] for s in truth]
    if not a and not b:
        return 1.0
    return 1.0 - _levenshtein(a, b) / max(len(a), len(b))


def _iou(s1: float, e1: float, s2: float, e2: float) -> float:
    inter = max(0.0, min(e1, e2) - max(s1, s2))
    union = (e1 - s1) + (e2 - s2) - inter
    return inter / union if union > 0 else 0.0


def segment_counts(pred, target, overlap: float, background: int | None = None) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of predicted segments at IoU >= ``overlap``,
    counted as the MS-TCN script's ``f_score`` counts them.

    Each predicted segment, in time order, looks at its IoU with every ground-truth segment (0 for
    another label) and takes the best one (the earliest on a tie), matched or not: a true positive
    when that IoU >= ``overlap`` and it is not matched yet, else a false positive. Unmatched
    ground-truth segments are false negatives. ``background``: a class left out of both (None
    counts every class).
    """
    if not 0.0 <= overlap <= 1.0:
        raise ValueError(f"overlap must be an IoU in [0, 1] (e.g. 0.5 for F1@50); got {overlap}")
    p, t = _pair(pred, target)
    return _counts(_segments(p, background), _segments(t, background), overlap)


def _counts(predicted: list[tuple[int, int, int]], truth: list[tuple[int, int, int]],
            overlap: float) -> tuple[int, int, int]:
    used = [False] * len(truth)
    tp = fp = 0
    for label, s, e in predicted:
        # the script's IoU: (min end - max start) / (max end - min start), negative when apart, 0 for another label
        ious = [(min(e, ge) - max(s, gs)) / (max(e, ge) - min(s, gs)) * (gl == label) for gl, gs, ge in truth]
        best = max(range(len(ious)), key=ious.__getitem__, default=-1)  # the first of equal maxima
        if best >= 0 and ious[best] >= overlap and not used[best]:
            used[best] = True
            tp += 1
        else:
            fp += 1
    return tp, fp, len(truth) - sum(used)


def _f1(tp: int, fp: int, fn: int) -> float:
    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    return ratio(2 * precision * recall, precision + recall)


def f1_at_k(pred, target, overlap: float, background: int | None = None) -> float:
    """Segment F1 of one video at IoU >= ``overlap`` (0.1, 0.25, 0.5 give F1@10, @25, @50)."""
    return _f1(*segment_counts(pred, target, overlap, background))


def _average_precision(scores: list[float], hits: list[bool], num_gt: int) -> float:
    """All-point interpolated AP (ActivityNet / VOC 2010+) of detections given as (score, hit)."""
    if num_gt == 0 or not scores:
        return 0.0
    order = torch.argsort(torch.tensor(scores, dtype=torch.float64), descending=True, stable=True)
    tp = torch.tensor(hits, dtype=torch.float64)[order].cumsum(0)  # (N,)
    fp = (1 - torch.tensor(hits, dtype=torch.float64)[order]).cumsum(0)
    recall = torch.cat([torch.zeros(1, dtype=torch.float64), tp / num_gt, torch.ones(1, dtype=torch.float64)])
    precision = torch.cat([torch.zeros(1, dtype=torch.float64), tp / (tp + fp), torch.zeros(1, dtype=torch.float64)])
    precision = precision.flip(0).cummax(0).values.flip(0)  # monotone from the right
    steps = torch.nonzero(recall[1:] != recall[:-1]).flatten() + 1
    return float(((recall[steps] - recall[steps - 1]) * precision[steps]).sum())


def segment_map(
    pred_segments: Sequence[Sequence[dict]],
    gt_segments: Sequence[Sequence[dict]],
    num_classes: int,
    iou_thresholds: Sequence[float] = MAP_THRESHOLDS,
) -> dict[float, float]:
    """Detection mAP at each tIoU threshold: ``{threshold: mAP}``.

    ``pred_segments[v]`` / ``gt_segments[v]`` are the segments of video ``v`` as dicts with
    ``label``, ``start``, ``end`` (and ``score`` for predictions; missing means 1.0), in any one
    unit (frames or seconds). Leave the background out of both lists. Classes ``0..K-1`` with
    ground truth are averaged; with none, mAP is 0.0.
    """
    if len(pred_segments) != len(gt_segments):
        raise ValueError(f"need the segments of the same videos; got {len(pred_segments)} predicted and "
                         f"{len(gt_segments)} ground-truth lists")
    bad = [thr for thr in iou_thresholds if not 0.0 < thr <= 1.0]
    if bad:
        raise ValueError(f"iou_thresholds must lie in (0, 1]; got {bad}")
    result = {}
    for thr in iou_thresholds:
        aps = []
        for k in range(num_classes):
            truth = [[(g["start"], g["end"]) for g in video if int(g["label"]) == k] for video in gt_segments]
            num_gt = sum(len(v) for v in truth)
            if num_gt == 0:
                continue
            dets = [(float(p.get("score", 1.0)), v, p["start"], p["end"])
                    for v, video in enumerate(pred_segments) for p in video if int(p["label"]) == k]
            dets.sort(key=lambda d: -d[0])  # stable: ties keep video/time order
            used = [[False] * len(v) for v in truth]
            hits = []
            for _, v, s, e in dets:
                ious = [(-1.0 if used[v][j] else _iou(s, e, gs, ge)) for j, (gs, ge) in enumerate(truth[v])]
                j = max(range(len(ious)), key=ious.__getitem__, default=-1)
                hit = j >= 0 and ious[j] >= thr
                if hit:
                    used[v][j] = True
                hits.append(hit)
            aps.append(_average_precision([d[0] for d in dets], hits, num_gt))
        result[thr] = sum(aps) / len(aps) if aps else 0.0
    return result


def _sequence_scores(pairs: list[tuple[Tensor, Tensor]], background: int | None) -> dict:
    """Frame accuracy, Edit and F1@{10,25,50} of (pred, target) label pairs whose unlabelled frames are
    gone; each sequence is cut into segments once."""
    segments = [(_segments(p, background), _segments(t, background)) for p, t in pairs]
    scores = {"frame_accuracy": ratio(sum(int((p == t).sum()) for p, t in pairs), sum(t.numel() for _, t in pairs)),
              "edit": ratio(sum(_edit(a, b) for a, b in segments), len(pairs))}
    for overlap in F1_OVERLAPS:
        counts = [_counts(a, b, overlap) for a, b in segments]
        scores[f"f1@{round(overlap * 100)}"] = _f1(*(sum(c[i] for c in counts) for i in range(3)))
    return scores


def sequence_scores(preds: Sequence[Tensor], targets: Sequence[Tensor], *, background: int | None = 0) -> dict:
    """The label-sequence part of :func:`segmentation_report` (``frame_accuracy``, ``edit``, ``f1@10``,
    ``f1@25``, ``f1@50``; no mAP, no per-class table): cheap enough to score many post-processings."""
    return _sequence_scores([_pair(p, t) for p, t in zip(preds, targets, strict=True)], background)


def segmentation_report(
    preds: Sequence[Tensor],
    targets: Sequence[Tensor],
    probs: Sequence[Tensor] | None,
    classes: Sequence[str],
    *,
    background: int | None = 0,
) -> dict:
    """All segmentation metrics over videos, each 0..1.

    ``preds[v]``, ``targets[v]``: labels (T_v,) of video ``v`` (targets < 0 are unlabelled);
    ``probs[v]``: class probabilities (T_v, K) scoring the predicted segments for mAP (1.0 without).
    Keys: ``frame_accuracy`` (over all labelled frames), ``edit`` (mean over videos), ``f1@10``,
    ``f1@25``, ``f1@50`` (true/false positives summed over videos), ``map@0.3``, ``map@0.5``,
    ``map@0.7``, ``num_videos``, ``per_class`` (rows of :func:`cnnlstm.tasks.metrics.per_class_table` plus
    ``frames``, the labelled frames of the class; ``recall`` is its frame accuracy).

    Edit, F1 and mAP leave out the ``background`` class (None keeps it), as the MS-TCN script
    leaves out its ``bg_class`` (``"background"``: GTEA's background; 50Salads has none).
    """
    if len(preds) != len(targets) or (probs is not None and len(probs) != len(preds)):
        raise ValueError(f"need one prediction, target (and probs) per video; got {len(preds)}, {len(targets)}"
                         f"{'' if probs is None else f', {len(probs)}'}")
    K = len(classes)
    pairs, pred_segs, gt_segs = [], [], []
    for v, (pred, target) in enumerate(zip(preds, targets, strict=True)):
        p, t = _labels(pred, "pred"), _labels(target, "target")
        if p.shape != t.shape:
            raise ValueError(f"video {v}: pred and target must have the same number of frames; got {p.numel()} and "
                             f"{t.numel()}")
        keep = t >= 0
        pr = None
        if probs is not None:
            pr = torch.as_tensor(probs[v]).detach().cpu()
            if pr.shape != (p.numel(), K):
                raise ValueError(f"video {v}: probs must be (T, K) = ({p.numel()}, {K}); got {tuple(pr.shape)}")
            pr = pr[keep]
        p, t = p[keep], t[keep]
        pairs.append((p, t))
        pred_segs.append(labels_to_segments(p, pr, background=background))
        gt_segs.append(labels_to_segments(t, background=background))
    report = _sequence_scores(pairs, background)
    all_p = torch.cat([p for p, _ in pairs]) if pairs else torch.zeros(0, dtype=torch.long)
    all_t = torch.cat([t for _, t in pairs]) if pairs else torch.zeros(0, dtype=torch.long)
    for thr, value in segment_map(pred_segs, gt_segs, K, MAP_THRESHOLDS).items():
        report[f"map@{thr}"] = value
    report["num_videos"] = len(pairs)
    rows = per_class_table(confusion_matrix(all_p, all_t, K), classes)
    report["per_class"] = [{**row, "frames": row["support"]} for row in rows]
    return report
