"""Multi-label annotation files: several labels per video, read into the videos and their label sets.

Accepted forms:

* CSV with a header ``path,labels`` (``video`` also works for ``path``, ``label`` for
  ``labels``): one row per video, the labels separated by ``;`` (``grow;move_left``). An empty
  labels field means the video shows none of the classes (all negative). A video on several
  rows gets the union of its labels. Extra columns are ignored.
* JSON, one of
  - a mapping ``{path: [labels]}`` (or ``{path: "a;b"}``);
  - a list of ``{"path": ..., "labels": [...]}`` objects (``"video"`` also works for ``"path"``).
* any single-label SPEC that :func:`~cnnlstm.data.annotations.formats.load_spec` reads (a folder
  per class, a text list, a UCF101 split, a Kinetics CSV): one label per video.

Relative paths are taken from ``root`` when given, else from the annotation file's folder. The
classes are, in this order of precedence, ``classes=`` (a validation set takes its training
set's), a ``classes.txt`` beside the file (one name a line: fixes the order and lets a class have
no video), or the sorted union of the labels; a label outside given classes is an error.

Letters: K classes.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ...data.annotations.formats import VideoItem, VideoList, check_videos_exist, load_spec
from ...data.annotations.readers import SHOW, absolute, csv_rows, meaningful_lines, read_json

SEPARATOR = ";"


@dataclass
class MultiLabelSpec:
    """The videos (``VideoList`` in file order) and each one's labels (sorted, no repeats; [] = none)."""

    videos: VideoList
    labels: dict[str, list[str]]  # keyed by VideoItem.path (absolute, normalised)

    @property
    def classes(self) -> list[str]:
        return self.videos.classes

    def __len__(self) -> int:
        return len(self.videos)


class MultiLabelTargets:
    """The target of a sampled clip: multi-hot float (K,), 1 where the video shows the class (for
    :class:`~cnnlstm.data.datasets.VideoDataset`'s ``targets``; the sampled frames do not matter)."""

    def __init__(self, labels: dict[str, list[str]], classes: Sequence[str]):
        index = {c: i for i, c in enumerate(classes)}
        self.targets = {}
        for path, names in labels.items():
            target = torch.zeros(len(classes))  # (K,)
            target[[index[n] for n in names]] = 1.0
            self.targets[path] = target

    def __call__(self, item: VideoItem, frame_indices, fps, generator=None) -> torch.Tensor:
        if item.path not in self.targets:
            raise KeyError(f"{item.path} has no labels in the multi-label annotations")
        return self.targets[item.path].clone()


def split_labels(cell, where: str) -> list[str]:
    """Labels from a ``;``-separated string or a list of strings (blank entries dropped)."""
    if isinstance(cell, str):
        names = cell.split(SEPARATOR)
    elif isinstance(cell, list) and all(isinstance(n, str) for n in cell):
        names = cell
    else:
        raise ValueError(f"{where}: labels must be a list of names or a '{SEPARATOR}'-separated string; got "
                         f"{json.dumps(cell)[:80]}")
    return [n.strip() for n in names if n.strip()]


def _video(name, where: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where}: empty or invalid video path ({name!r}); give the video's file path")
    return name.strip()


def _read_csv(path: Path) -> list[tuple[str, list[str], str]]:
    header, body = csv_rows(path, (), "path,labels")
    key = "path" if "path" in header else "video" if "video" in header else None
    column = "labels" if "labels" in header else "label" if "label" in header else None
    if key is None or column is None:
        raise ValueError(f"{path.name} line 1: expected a header `path,labels` (labels separated by "
                         f"'{SEPARATOR}'), got `{','.join(header)}`")
    return [(_video(row[key], f"{path.name} line {n}"), split_labels(row[column], f"{path.name} line {n}"),
             f"{path.name} line {n}") for n, row in body]


def _read_json(path: Path) -> list[tuple[str, list[str], str]]:
    data = read_json(path)
    if isinstance(data, dict):
        return [(_video(video, f"{path.name} key {video!r}"), split_labels(labels, f"{path.name} key {video!r}"),
                 f"{path.name} key {video!r}") for video, labels in data.items()]
    if isinstance(data, list):
        rows = []
        for i, entry in enumerate(data):
            where = f"{path.name} entry {i}"
            if not isinstance(entry, dict) or "labels" not in entry or not ({"path", "video"} & entry.keys()):
                raise ValueError(f'{where}: expected an object {{"path": ..., "labels": [...]}}; got '
                                 f"{json.dumps(entry)[:80]}")
            rows.append((_video(entry.get("path", entry.get("video")), where), split_labels(entry["labels"], where),
                         where))
        return rows
    raise ValueError(f'{path.name}: expected a JSON mapping {{path: [labels]}} or a list of {{"path", "labels"}} '
                     f"objects; got a {type(data).__name__}")


def _form(path: Path) -> str:
    """``csv``, ``json``, or ``spec`` (anything load_spec reads)."""
    if not path.is_file() or path.suffix.lower() not in (".csv", ".json", ".txt", ""):
        return "spec"
    first = next(meaningful_lines(path), None)
    if path.suffix.lower() == ".json" or (first and first[1][:1] in "[{"):
        return "json"
    header = {cell.strip().lower() for cell in next(csv.reader([first[1]]))} if first else set()
    if header & {"path", "video"} and header & {"labels", "label"}:
        return "csv"
    return "spec"


def _classes(path: Path, labels: dict[str, list[str]], classes: Sequence[str] | None, source: str) -> list[str]:
    seen = {n for names in labels.values() for n in names}
    listed = path.parent / "classes.txt" if path.is_file() else None
    if classes is None and listed is not None and listed.is_file():
        classes, source = [line for _, line in meaningful_lines(listed)], f"{source} with {listed}"
    if classes is None:
        return sorted(seen)
    unknown = sorted(seen - set(classes))
    if unknown:
        raise ValueError(f"{source}: {len(unknown)} labels are not in the {len(classes)} classes: "
                         f"{unknown[:SHOW * 2]}; fix the labels, or the classes (classes.txt beside the file)")
    return list(classes)


def load_multilabel(spec: str | os.PathLike, *, root: str | os.PathLike | None = None,
                    classes: Sequence[str] | None = None, check_exists: bool = True) -> MultiLabelSpec:
    """Parse a multi-label annotation file or a single-label SPEC (see the module docstring).

    With ``check_exists`` all missing videos are reported in one FileNotFoundError.
    """
    path = Path(spec).expanduser().absolute()
    form = _form(path)
    if form == "spec":
        videos = load_spec(path, root=root, classes=classes, check_exists=check_exists)
        unlabelled = [item.path for item in videos.items if item.label is None]
        if unlabelled:
            raise ValueError(f"{videos.source}: {len(unlabelled)} videos have no label (e.g. {unlabelled[0]}); "
                             f"multi-label training needs a CSV `path,labels` (labels separated by '{SEPARATOR}'), "
                             "a JSON {path: [labels]} or a labelled SPEC")
        labels = {}
        for item in videos.items:
            labels.setdefault(item.path, []).append(item.label)
        return MultiLabelSpec(videos, {p: sorted(set(n)) for p, n in labels.items()})
    base = Path(root).expanduser().absolute() if root is not None else path.parent
    if root is not None and check_exists and not base.is_dir():
        raise FileNotFoundError(f"root {base} is not a folder (it should hold the videos of {path.name})")
    rows = _read_json(path) if form == "json" else _read_csv(path)
    labels: dict[str, set[str]] = {}
    for video, names, _ in rows:
        labels.setdefault(absolute(video, base), set()).update(names)
    if not labels:
        raise ValueError(f"{path.name}: no videos listed")
    source = f"multilabel:{path}"
    sorted_labels = {p: sorted(n) for p, n in labels.items()}
    names = _classes(path, sorted_labels, classes, source)
    if check_exists:
        check_videos_exist(list(labels), source)
    warnings = [f"{source}: {len(rows) - len(labels)} rows repeat a video; its labels were merged"] \
        if len(rows) > len(labels) else []
    videos = VideoList(items=[VideoItem(p, None) for p in labels], classes=names, source=source, warnings=warnings)
    return MultiLabelSpec(videos, sorted_labels)


__all__ = ["SEPARATOR", "MultiLabelSpec", "MultiLabelTargets", "load_multilabel", "split_labels"]
