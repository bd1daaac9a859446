"""Segment annotation files: labelled time ranges of each video (temporal action segmentation).

:func:`load_segments` reads them (per-frame targets and the way back, labels to segments, live in
:mod:`cnnlstm.tasks.segment.segments`):

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


__all__ = ["Segment", "SegmentSpec", "UNITS", "load_segments"]
