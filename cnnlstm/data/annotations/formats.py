"""Parse a dataset SPEC (a folder or an annotation file) into a list of videos and labels.

:func:`load_spec` detects the form of the spec, in this order (``format=`` skips detection):

1. a folder: ``folder/<class>/<video>`` is folder-per-class (one level deep); a folder with
   videos directly in it is an unlabelled list (``scan``, ``predict``). Both at once is an error.
   Hidden files and folders are skipped; other files are ignored and counted in ``warnings``.
   Videos are told by extension (``is_video_file``: mp4, mkv, avi, mov, webm, ts/mts/m2ts, ...).
2. a video file: a one-item unlabelled list. A file is a video by its extension, else by its
   content: a known container's first bytes, or binary content (the decoder's probe then says
   what it is: an audio-only file is a "no video stream" error). Never decoded as text first.
   A playlist (.m3u8/.m3u/.pls/.mpd/.sdp, or content starting ``#EXTM3U``) is refused here:
   :class:`~cnnlstm.data.video.errors.PlaylistError`, and nothing it names is opened.
3. a file named ``trainlistNN.txt`` / ``testlistNN.txt``: a UCF101 split list, read with the
   ``classInd.txt`` beside it; video paths are relative to ``root`` (required).
4. a file whose first line is a CSV header: with ``youtube_id,time_start,time_end`` it is a
   Kinetics CSV, with ``path`` (and usually ``label``) a path CSV; extra columns are ignored.
   Both at once is an error (pass ``format=``). A ``.csv`` file without either is an error.
5. anything else is a text list: ``path label`` or ``path`` per line, ``#`` comments.

Relative paths are taken from ``root`` when given, else from the annotation file's folder.
Labels that are all integers in a text list are class indices: 0-based into ``classes=`` or a
``classes.txt`` beside the list, 1-based through a ``classInd.txt`` beside it, else kept as the
names ``"0"``, ``"1"``, ... (sorted by value). Classes are sorted by name unless ``classes=`` or
``classInd.txt`` fixes the order (so a test set can use the train set's label index).
"""
from __future__ import annotations

import csv
import os
import re
import stat
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..video.errors import PlaylistError, VideoOpenError
from ..video.types import VIDEO_EXTENSIONS, is_playlist, is_video_file, looks_binary
from .readers import (
    INT,
    SHOW,
    Row,
    meaningful_lines,
    parse_csv,
    parse_kinetics,
    parse_list,
    parse_ucf,
)

FORMATS = ("folder", "video", "ucf101", "kinetics", "csv", "list")
_UCF_LIST = re.compile(r"^(train|test)list\d*\.txt$", re.IGNORECASE)
_GROUP = re.compile(r"_g(\d+)_c\d+")  # UCF101/HMDB-style v_<Class>_g08_c01
_KINETICS_KEYS = {"youtube_id", "time_start", "time_end"}


@dataclass(frozen=True)
class VideoItem:
    """One video: absolute normalised ``path``, ``label`` (None if unlabelled) and provenance."""

    path: str
    label: str | None
    group: str | None = None  # videos sharing a source (UCF "Class/g08", Kinetics youtube_id)
    start: float | None = None  # seconds, the clip inside the file (Kinetics time_start/time_end)
    end: float | None = None


@dataclass
class VideoList:
    """Parsed spec: ``items``, ``classes`` (label index order), ``source`` (``"kind:path"``)."""

    items: list[VideoItem]
    classes: list[str]
    source: str
    warnings: list[str] = field(default_factory=list)

    def label_index(self) -> dict[str, int]:
        return {name: index for index, name in enumerate(self.classes)}

    def __len__(self) -> int:
        return len(self.items)


def _group(path: str, label: str | None) -> str | None:
    match = _GROUP.search(Path(path).stem)
    if match is None:
        return None
    return f"{label}/g{match.group(1)}" if label else f"g{match.group(1)}"


def _item(row: Row) -> VideoItem:
    return VideoItem(row.path, row.label, row.group or _group(row.path, row.label), row.start, row.end)


def _head(path: Path) -> bytes:
    """The first bytes of ``path``, with errors that say what the path is instead."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        what = "is a broken symbolic link" if os.path.islink(path) else "does not exist"
        raise FileNotFoundError(f"dataset spec {path} {what} (expected a folder, a video or an annotation "
                                "file)") from None
    except OSError as exc:  # a symlink loop, a name too long
        raise VideoOpenError(path, f"cannot be read ({exc.strerror}); expected a folder, a video or an "
                                   "annotation file") from None
    if not stat.S_ISREG(st.st_mode):
        raise VideoOpenError(path, "is not a regular file (a pipe, socket or device); give a folder, a video or "
                                   "an annotation file")
    try:
        with open(path, "rb") as f:
            return f.read(4096)
    except OSError as exc:
        raise VideoOpenError(path, f"cannot be read ({exc.strerror}); check its permissions") from None


def _detect(path: Path) -> str:
    if path.is_dir():
        return "folder"
    head = _head(path)
    if is_playlist(path, head):
        raise PlaylistError(path)
    if is_video_file(path) or looks_binary(head):
        return "video"  # the decoder's probe says what it really is (audio only, damaged, ...)
    if not head:
        raise ValueError(f"{path}: the file is empty (0 bytes); expected a video or an annotation file (a CSV with a "
                         "`path,label` header, or a text list of `path label` lines)")
    if _UCF_LIST.match(path.name):
        return "ucf101"
    first = next(meaningful_lines(path), None)
    try:
        header = {cell.strip().lower() for cell in next(csv.reader([first[1]]))} if first else set()
    except csv.Error:  # a line too long or malformed for a CSV header: not one
        header = set()
    kinetics, has_path = _KINETICS_KEYS <= header, "path" in header
    if kinetics and has_path:
        raise ValueError(
            f"{path.name} line {first[0]}: the header has both `path` and Kinetics columns; "
            "pass format='csv' or format='kinetics' to say which"
        )
    if kinetics:
        return "kinetics"
    if has_path and "," in first[1]:
        return "csv"
    if path.suffix.lower() == ".csv":
        where = f"line {first[0]}" if first else "line 1"
        raise ValueError(
            f"{path.name} {where}: expected a CSV header `path,label` (or Kinetics "
            f"`label,youtube_id,time_start,time_end,split`), got {first[1] if first else 'an empty file'!r}"
        )
    return "list"


def _parse_folder(folder: Path, root, classes) -> tuple[list[Row], list[str] | None, list[str]]:
    warns, loose, ignored, by_class, empty, nested = [], [], 0, {}, [], 0
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            videos = []
            for sub in sorted(entry.iterdir()):
                if sub.name.startswith("."):
                    continue
                if sub.is_dir():
                    nested += 1
                elif is_video_file(sub):
                    videos.append(sub)
                else:
                    ignored += 1
            if videos:
                by_class[entry.name] = videos
            else:
                empty.append(entry.name)
        elif is_video_file(entry):
            loose.append(entry)
        else:
            ignored += 1
    if loose and by_class:
        raise ValueError(
            f"{folder}: ambiguous: {len(loose)} videos directly in the folder (e.g. {loose[0].name}) and "
            f"{len(by_class)} class folders (e.g. {next(iter(by_class))}/); move the loose videos into "
            "class folders, or point at a folder holding only one kind"
        )
    if not loose and not by_class:
        hint = ""
        if (folder / "train.csv").is_file():
            hint = f"; it has train.csv: pass {folder / 'train.csv'}"
        elif empty:
            hint = f"; videos may be one level deeper: try {folder / empty[0]}"
        raise ValueError(f"{folder}: no videos found (by extension: .mp4 .mkv .avi .mov .webm .ts and "
                         f"{len(VIDEO_EXTENSIONS) - 6} more, see VIDEO_EXTENSIONS){hint}")
    if ignored:
        warns.append(f"{folder}: ignored {ignored} files without a video extension")
    if nested:
        warns.append(f"{folder}: ignored {nested} folders nested inside class folders")
    if empty and by_class:
        warns.append(f"{folder}: ignored {len(empty)} folders without videos: {', '.join(empty[:SHOW])}")
    if root is not None:
        warns.append(f"{folder}: root={root} is not used for a folder spec")
    if loose:
        return [Row(os.path.abspath(p), None) for p in loose], None, warns
    return [Row(os.path.abspath(p), label) for label, videos in by_class.items() for p in videos], None, warns


def _parse_video(path: Path, root, classes):
    return [Row(os.path.abspath(path), None)], None, []


_PARSERS = {
    "folder": _parse_folder,
    "video": _parse_video,
    "ucf101": parse_ucf,
    "kinetics": parse_kinetics,
    "csv": parse_csv,
    "list": parse_list,
}


def _sorted_classes(labels: set[str]) -> list[str]:
    return sorted(labels, key=int) if labels and all(INT.match(x) for x in labels) else sorted(labels)


def load_spec(
    spec: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    classes: Sequence[str] | None = None,
    check_exists: bool = True,
    format: str | None = None,
) -> VideoList:
    """Parse ``spec`` (see the module docstring for the forms and the detection rules).

    ``classes`` fixes the class order; labels outside it are an error. With ``check_exists``
    all missing videos are reported in one FileNotFoundError; without it they are kept.
    """
    path = Path(spec).expanduser().absolute()
    root = Path(root).expanduser().absolute() if root is not None else None
    if root is not None and check_exists and not root.is_dir():
        raise FileNotFoundError(f"root {root} is not a folder (it should hold the videos of {Path(spec).name})")
    if format is not None and format not in _PARSERS:
        raise ValueError(f"unknown spec format {format!r}; expected one of {list(FORMATS)}")
    kind = format or _detect(path)
    if classes is not None:
        classes = list(classes)
        doubled = sorted(name for name, n in Counter(classes).items() if n > 1)
        if doubled:
            raise ValueError(f"classes= lists {doubled} more than once")
    rows, declared, warns = _PARSERS[kind](path, root, classes)
    items = [_item(row) for row in rows]
    source = f"{kind}:{path}"
    if not items:
        raise ValueError(f"{source}: no videos listed")
    labels = {item.label for item in items if item.label is not None}
    if classes is not None:
        unknown = sorted(labels - set(classes))
        if unknown:
            raise ValueError(
                f"{source}: {len(unknown)} labels are not in the given classes ({len(classes)}): "
                f"{unknown[:SHOW * 2]}{' ...' if len(unknown) > SHOW * 2 else ''}"
            )
    else:
        classes = declared if declared is not None else _sorted_classes(labels)
    repeated = [p for p, n in Counter(item.path for item in items).items() if n > 1]
    if repeated:
        warns.append(f"{source}: {len(repeated)} videos are listed more than once, e.g. {repeated[0]}")
    if check_exists:
        check_videos_exist([item.path for item in items], source)
    return VideoList(items=items, classes=list(classes), source=source, warnings=warns)


def check_videos_exist(paths: Sequence[str], source: str) -> None:
    """Raise FileNotFoundError listing the videos of an annotation ``source`` that are not files."""
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        shown = ", ".join(missing[:SHOW])
        more = f" ... and {len(missing) - SHOW} more" if len(missing) > SHOW else ""
        raise FileNotFoundError(
            f"{source}: {len(missing)} of {len(paths)} videos are missing: {shown}{more}\n"
            "relative paths start from the annotation file's folder or --root (root=): fix the paths or --root, "
            "or remove those lines (check_exists=False keeps them)"
        )


def check_group_leakage(train: VideoList, test: VideoList) -> list[str]:
    """Warn (and return the warnings) when a group (same actor/scene or source video) is in both."""
    shared = sorted({i.group for i in train.items if i.group} & {i.group for i in test.items if i.group})
    if not shared:
        return []
    message = (
        f"{len(shared)} groups appear in both train ({train.source}) and test ({test.source}): "
        f"{', '.join(shared[:SHOW * 2])}{' ...' if len(shared) > SHOW * 2 else ''}; clips of one group "
        "share actor, scene or source video, so test accuracy will be inflated (use the official splits)"
    )
    warnings.warn(message, stacklevel=2)
    return [message]


__all__ = ["VIDEO_EXTENSIONS", "FORMATS", "VideoItem", "VideoList", "is_video_file", "load_spec", "check_group_leakage"]
