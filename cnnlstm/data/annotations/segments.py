"""Temporal action segments: read annotation files, make per-frame targets, cut labels into segments.

Annotation files (:func:`load_segments`) list labelled time ranges of each video:

* CSV with a header: ``video`` (or ``path``), ``start``, ``end``, ``label`` in seconds, or
  ``start_frame``, ``end_frame`` instead of ``start``, ``end`` for frame units (end exclusive).
  Extra columns are ignored. Every row is one segment.
* JSON: a list of ``{"video", "start", "end", "label"}`` objects, or a mapping
  ``{video: [{"start", "end", "label"}, ...]}``; ``"start_frame"``/``"end_frame"`` keys give frame
  units. Only the mapping form can list a video with no segments (all background).

Frames not covered by any segment are background (class index 0). Segments of one video may
overlap: the one listed later wins where they overlap. Relative video paths are taken from
``root`` when given, else from the annotation file's folder (as in :mod:`cnnlstm.data.annotations.formats`).

Letters: T frames, K classes.
"""
from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from .formats import VideoItem, VideoList, check_videos_exist
from .readers import SHOW, absolute, csv_rows, read_json

UNITS = ("s", "frame")


@dataclass(frozen=True)
class Segment:
    """One labelled time range ``[start, end)``: seconds (``unit="s"``) or frame indices (``"frame"``)."""

    start: float
    end: float
    label: str
    unit: str = "s"

    def __post_init__(self):
        if self.unit not in UNITS:
            raise ValueError(f"Segment unit must be one of {list(UNITS)}; got {self.unit!r}")


@dataclass
class SegmentSpec:
    """Parsed segment annotations: ``videos`` (labels None), ``segments`` keyed by ``VideoItem.path``,
    ``classes`` (the background class first, index 0)."""

    videos: VideoList
    segments: dict[str, list[Segment]]
    classes: list[str]

    def class_index(self) -> dict[str, int]:
        return {name: index for index, name in enumerate(self.classes)}


# --- reading ---------------------------------------------------------------------------------
def _number(value, where: str, key: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise ValueError(f"{where}: `{key}` must be a number; got {value!r}")
    return number


def _segment(record: dict, where: str) -> Segment:
    """A Segment from one row/object with ``start``/``end`` or ``start_frame``/``end_frame``, ``label``."""
    seconds = "start" in record or "end" in record
    frames = "start_frame" in record or "end_frame" in record
    if seconds == frames:
        found = sorted(k for k in record if k in ("start", "end", "start_frame", "end_frame"))
        raise ValueError(
            f"{where}: give either `start`,`end` (seconds) or `start_frame`,`end_frame` (frames); "
            f"got {found or 'neither'}"
        )
    keys = ("start", "end") if seconds else ("start_frame", "end_frame")
    absent = [k for k in (*keys, "label") if k not in record]
    if absent:
        raise ValueError(f"{where}: missing {absent}; each segment needs {keys[0]}, {keys[1]} and label")
    start, end = (_number(record[k], where, k) for k in keys)
    label = str(record["label"]).strip() if record["label"] is not None else ""
    if not label:
        raise ValueError(f"{where}: empty label; name the action (frames outside every segment are background)")
    if start < 0:
        raise ValueError(f"{where}: {keys[0]} must be >= 0; got {start}")
    if not end > start:
        raise ValueError(f"{where}: {keys[1]} must be greater than {keys[0]}; got {keys[0]}={start}, {keys[1]}={end} "
                         "(swap them, or drop an empty segment)")
    return Segment(start, end, label, "s" if seconds else "frame")


def _read_csv(path: Path, base: Path) -> list[tuple[str, Segment | None, str]]:
    header, body = csv_rows(path, (), "video,start,end,label")
    video_key = "video" if "video" in header else "path" if "path" in header else None
    has_seconds, has_frames = {"start", "end"} <= set(header), {"start_frame", "end_frame"} <= set(header)
    if video_key is None or "label" not in header or has_seconds == has_frames:
        raise ValueError(
            f"{path.name} line 1: expected a header `video,start,end,label` (seconds) or "
            f"`video,start_frame,end_frame,label` (frames), got `{','.join(header)}`"
        )
    keys = ("start", "end") if has_seconds else ("start_frame", "end_frame")
    if not body:
        raise ValueError(f"{path.name}: no segments after the header; add one row per labelled segment")
    rows = []
    for number, row in body:
        where = f"{path.name} line {number}"
        if not row[video_key]:
            raise ValueError(f"{where}: empty {video_key}")
        rows.append((absolute(row[video_key], base), _segment({k: row[k] for k in (*keys, "label")}, where), where))
    return rows


def _read_json(path: Path, base: Path) -> list[tuple[str, Segment | None, str]]:
    """(absolute video path, segment or None for a video listed without segments, where) rows."""
    data = read_json(path)
    rows: list[tuple[str, Segment | None, str]] = []
    if isinstance(data, list):
        for i, record in enumerate(data):
            where = f"{path.name} entry {i}"
            if not isinstance(record, dict):
                raise ValueError(f"{where}: expected an object {{\"video\", \"start\", \"end\", \"label\"}}; got "
                                 f"{record!r:.60}")
            video = record.get("video", record.get("path"))
            if not isinstance(video, str) or not video.strip():
                raise ValueError(f"{where}: missing or empty `video` (the video file, relative to the JSON file or "
                                 "root)")
            rows.append((absolute(video, base), _segment(record, where), where))
    elif isinstance(data, dict):
        for video, records in data.items():
            if not isinstance(records, list):
                raise ValueError(f"{path.name} video {video!r}: expected a list of segments; got "
                                 f"{type(records).__name__}")
            rows.append((absolute(video, base), None, f"{path.name} video {video!r}"))  # listed, even with no segments
            for i, record in enumerate(records):
                where = f"{path.name} video {video!r} entry {i}"
                if not isinstance(record, dict):
                    raise ValueError(f"{where}: expected an object {{\"start\", \"end\", \"label\"}}; got "
                                     f"{record!r:.60}")
                rows.append((absolute(video, base), _segment(record, where), where))
    else:
        raise ValueError(f"{path.name}: expected a JSON list of segments or a mapping video -> segments; "
                         f"got {type(data).__name__}")
    if not rows:
        raise ValueError(f"{path.name}: no videos listed; add segments (list form) or videos (mapping form)")
    return rows


def _is_json(path: Path) -> bool:
    if path.suffix.lower() == ".json":
        return True
    if path.suffix.lower() == ".csv":
        return False
    with open(path, "rb") as f:
        head = f.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head[:1] in (b"[", b"{")


def load_segments(
    spec: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    classes: Sequence[str] | None = None,
    background: str = "background",
    check_exists: bool = True,
) -> SegmentSpec:
    """Read a segment annotation file (CSV or JSON, see the module docstring).

    ``classes`` fixes the class order (``background`` is put first when absent, and must be first
    when present); labels outside it are an error. Without it the classes are ``background`` then
    the other labels sorted. With ``check_exists`` missing videos are reported in one error.
    """
    path = Path(spec).expanduser().absolute()
    if not path.is_file():
        raise FileNotFoundError(f"segment annotations {path} do not exist (expected a .csv or .json file)")
    if path.stat().st_size == 0 or not path.read_bytes().strip():
        raise ValueError(f"{path.name} line 1: empty file; expected a CSV header `video,start,end,label` or a JSON "
                         "list")
    base = Path(root).expanduser().absolute() if root is not None else path.parent
    rows = (_read_json if _is_json(path) else _read_csv)(path, base)

    segments: dict[str, list[Segment]] = {}
    for video, segment, _ in rows:
        segments.setdefault(video, [])
        if segment is not None:
            segments[video].append(segment)
    labels = {s.label for segs in segments.values() for s in segs}
    if classes is not None:
        classes = list(classes)
        doubled = sorted(name for name, n in Counter(classes).items() if n > 1)
        if doubled:
            raise ValueError(f"classes= lists {doubled} more than once")
        if background in classes and classes[0] != background:
            raise ValueError(f"the background class {background!r} must come first in classes= (index 0); got "
                             f"{classes[:SHOW]}")
        classes = classes if background in classes else [background, *classes]
        known = set(classes)
        for _, segment, where in rows:
            if segment is not None and segment.label not in known:
                raise ValueError(
                    f"{where}: label {segment.label!r} is not in the given classes {classes[:SHOW * 2]}; "
                    "add it to classes= or fix the label"
                )
    else:
        classes = [background, *sorted(labels - {background})]
    if check_exists:
        check_videos_exist(list(segments), f"segments:{path}")
    videos = VideoList([VideoItem(video, None) for video in segments], list(classes), f"segments:{path}")
    return SegmentSpec(videos=videos, segments=segments, classes=list(classes))


# --- frames <-> segments ---------------------------------------------------------------------
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


def _runs(labels: Tensor) -> list[list[int]]:
    """[label, start, end) runs of equal labels."""
    if labels.numel() == 0:
        return []
    change = torch.nonzero(labels[1:] != labels[:-1]).flatten() + 1
    starts = [0, *change.tolist()]
    ends = [*change.tolist(), labels.numel()]
    return [[int(labels[s]), s, e] for s, e in zip(starts, ends, strict=True)]


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
    if min_length < 1:
        raise ValueError(f"min_length must be >= 1 frame; got {min_length}")
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
    runs = _merge_short(_runs(mode_filter(labels, smooth)), min_length)
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


__all__ = ["Segment", "SegmentSpec", "load_segments", "frame_targets", "mode_filter", "labels_to_segments",
           "segments_to_frames"]
