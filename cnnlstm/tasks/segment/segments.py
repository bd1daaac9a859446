"""Per-frame labels and segments: the targets of a sampled clip, and segments from predictions.

:func:`frame_targets` turns a video's annotated segments (:mod:`cnnlstm.data.annotations.segments`)
into a class index per sampled frame; :func:`clean_labels` smooths predicted per-frame labels (a
majority filter, merging of short runs) and :func:`labels_to_segments` cuts them into segments.

Letters: T frames, K classes.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ...data.annotations.formats import VideoItem
from ...data.annotations.readers import SHOW
from ...data.annotations.segments import Segment


class SegmentTargets:
    """Per-frame class indices (T,) at the sampled frames of a video, from its segments."""

    def __init__(self, segments: dict, classes: list[str], background: int = 0):
        self.segments, self.background = segments, background
        self.index = {c: i for i, c in enumerate(classes)}

    def __call__(self, item: VideoItem, frame_indices: torch.Tensor, fps: float | None, generator=None) -> torch.Tensor:
        segments = self.segments.get(item.path, [])
        if fps is None and any(s.unit == "s" for s in segments):
            raise ValueError(f"{item.path}: segments in seconds need the video's fps, which this sample lacks "
                             "(a feature cache written by an older version: delete RUN/cache)")
        return frame_targets(segments, frame_indices, fps or 1.0, self.index, background=self.background)


def frame_targets(
    segments: Sequence[Segment], frame_indices: Tensor, fps: float, class_index: dict[str, int], background: int = 0
) -> Tensor:
    """Class index of each sampled frame: LongTensor (T,).

    Frame ``i`` covers ``[i / fps, (i + 1) / fps)`` and takes the label of the segment holding its
    centre ``(i + 0.5) / fps``; for frame-unit segments, of the segment with ``start <= i < end``.
    Frames in no segment get ``background``; where segments overlap, the later one wins.
    """
    if not fps > 0:
        raise ValueError(f"fps must be positive; got {fps}")
    index = torch.as_tensor(frame_indices).long().reshape(-1)  # (T,)
    centre = (index.double() + 0.5) / fps  # (T,) seconds
    out = torch.full_like(index, background)  # (T,)
    for seg in segments:
        if seg.label not in class_index:
            raise ValueError(f"segment label {seg.label!r} is not a known class; classes are "
                             f"{list(class_index)[:SHOW * 2]}")
        at = index if seg.unit == "frame" else centre  # (T,) frame indices or seconds
        inside = (at >= seg.start) & (at < seg.end)
        out[inside] = class_index[seg.label]
    return out


def mode_filter(labels: Tensor, window: int) -> Tensor:
    """Majority label in a centred window of ``window`` (odd) frames: (T,) -> (T,).

    Near the ends the window is cut short. On a tie the frame keeps its own label if it is among
    the most frequent, else takes the lowest tied class index.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"smooth must be an odd window size >= 1; got {window}")
    labels = torch.as_tensor(labels).long()
    if window == 1 or labels.numel() == 0:
        return labels.clone()
    half = window // 2
    onehot = torch.nn.functional.one_hot(labels, int(labels.max()) + 1)  # (T, K)
    csum = torch.cat([onehot.new_zeros(1, onehot.shape[1]), onehot.cumsum(0)])  # (T+1, K)
    T = labels.numel()
    lo = (torch.arange(T) - half).clamp(min=0)
    hi = (torch.arange(T) + half + 1).clamp(max=T)
    counts = csum[hi] - csum[lo]  # (T, K) label counts in each window
    best = counts.max(1).values  # (T,)
    own = counts.gather(1, labels[:, None]).squeeze(1)  # (T,)
    return torch.where(own == best, labels, counts.argmax(1))


def label_runs(labels: Tensor) -> list[list[int]]:
    """[label, start, end) runs of equal labels."""
    values, runs, start = labels.tolist(), [], 0  # plain ints: validation scores many cleanings of every video
    for i in range(1, len(values) + 1):
        if i == len(values) or values[i] != values[start]:
            runs.append([values[start], start, i])
            start = i
    return runs


def _merge_short(runs: list[list[int]], min_length: int) -> list[list[int]]:
    """Relabel runs shorter than ``min_length`` frames as their longer neighbour (the earlier one
    on a tie), shortest first, joining equal neighbours after each step."""
    runs = [list(r) for r in runs]
    while len(runs) > 1:
        short = [i for i, (_, s, e) in enumerate(runs) if e - s < min_length]
        if not short:
            break
        i = min(short, key=lambda j: runs[j][2] - runs[j][1])
        neighbours = [j for j in (i - 1, i + 1) if 0 <= j < len(runs)]
        j = max(neighbours, key=lambda n: (runs[n][2] - runs[n][1], -n))
        runs[i][0] = runs[j][0]
        joined = [runs[0]]
        for run in runs[1:]:
            if run[0] == joined[-1][0]:
                joined[-1][2] = run[2]
            else:
                joined.append(run)
        runs = joined
    return runs


def clean_labels(labels: Tensor, *, smooth: int = 1, min_length: int = 1) -> Tensor:
    """Per-frame labels (T,) after the majority filter of ``smooth`` frames (:func:`mode_filter`) and
    the merging of runs shorter than ``min_length`` frames into their longer neighbour: the labels
    the segments of :func:`labels_to_segments` are cut from, and what evaluation scores."""
    if min_length < 1:
        raise ValueError(f"min_length must be >= 1 frame; got {min_length}")
    labels = torch.as_tensor(labels).detach().cpu().long().reshape(-1)  # (T,)
    out = mode_filter(labels, smooth)
    if min_length > 1:
        for label, s, e in _merge_short(label_runs(out), min_length):
            out[s:e] = label
    return out


def labels_to_segments(
    labels: Tensor,
    probs: Tensor | None = None,
    times: Tensor | None = None,
    *,
    smooth: int = 1,
    min_length: int = 1,
    background: int | None = 0,
) -> list[dict]:
    """Cut per-frame labels (T,) into segments ``{"label", "start", "end", "score"}``.

    ``smooth``: odd window of a majority filter applied first (:func:`mode_filter`).
    ``min_length``: runs shorter than this many frames take the label of their longer neighbour
    (the earlier neighbour on a tie). ``background``: runs of this class are left out (None keeps all).
    Without ``times``, start/end are frame indices (end exclusive); with ``times`` (T,) (seconds of
    each frame) start is the first frame's time and end the last frame's time plus the median frame
    step (0 for one frame). ``score`` is the mean of ``probs`` (T, K) for the run's label over the
    run (1.0 without ``probs``).
    """
    labels = torch.as_tensor(labels).detach().cpu().long().reshape(-1)  # (T,)
    T = labels.numel()
    if probs is not None:
        probs = torch.as_tensor(probs).detach().cpu().double()
        if probs.dim() != 2 or probs.shape[0] != T:
            raise ValueError(f"probs must be (T, K) with T={T} like labels; got shape {tuple(probs.shape)}")
        if T and int(labels.max()) >= probs.shape[1]:
            raise ValueError(f"labels must be < K={probs.shape[1]} (the columns of probs); got max {int(labels.max())}")
    if times is not None:
        times = torch.as_tensor(times).detach().cpu().double().reshape(-1)
        if times.numel() != T:
            raise ValueError(f"times must have one entry per frame (T={T}); got {times.numel()}")
    runs = label_runs(clean_labels(labels, smooth=smooth, min_length=min_length))
    step = float(times.diff().median()) if times is not None and T > 1 else 0.0
    out = []
    for label, s, e in runs:
        if background is not None and label == background:
            continue
        score = float(probs[s:e, label].mean()) if probs is not None else 1.0
        if times is None:
            start, end = float(s), float(e)
        else:
            start, end = float(times[s]), float(times[e - 1]) + step
        out.append({"label": label, "start": start, "end": end, "score": score})
    return out


def segments_to_frames(segments: Sequence[dict], num_frames: int, *, background: int = 0) -> Tensor:
    """Inverse of :func:`labels_to_segments` in frame units: segments -> labels LongTensor (T,).

    Frame ``i`` takes the label of the segment with ``start <= i < end`` (later segments win);
    frames in no segment get ``background``.
    """
    index = torch.arange(num_frames)  # (T,)
    out = torch.full((num_frames,), background, dtype=torch.long)  # (T,)
    for seg in segments:
        out[(index >= seg["start"]) & (index < seg["end"])] = int(seg["label"])
    return out


__all__ = ["SegmentTargets", "frame_targets", "mode_filter", "labels_to_segments", "segments_to_frames"]
