"""Read annotation files (CSV, text lists, UCF101 split lists, Kinetics CSVs) into raw rows.

The parsers here only read and check the files; :mod:`cnnlstm.data.annotations.formats` detects which one
to use and turns the rows into a ``VideoList``. Each parser takes ``(path, root, classes)`` and
returns ``(rows, declared classes or None, warnings)``. Errors name the file and the line.
"""
from __future__ import annotations

import csv
import json
import math
import os
import re
from pathlib import Path
from typing import NamedTuple

from ..video.types import is_video_file

INT = re.compile(r"^-?\d+$")
SHOW = 5  # how many examples an error lists


class Row(NamedTuple):
    """One listed video before validation; ``group`` None means: parse it from the file name."""

    path: str
    label: str | None
    group: str | None = None
    start: float | None = None
    end: float | None = None


def absolute(path: str, base: Path) -> str:
    """Absolute, normalised path (``..`` removed, symlinks kept so names stay as listed)."""
    path = os.path.expanduser(path.strip())
    return os.path.abspath(path if os.path.isabs(path) else os.path.join(base, path))


def meaningful_lines(path: Path):
    """(line number, stripped text) of the non-blank, non-comment lines of a text file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path.name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield number, line


def read_json(path: Path):
    """The parsed JSON of an annotation file; errors name the file, the line and the cause."""
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path.name} line {exc.lineno}: not valid JSON ({exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path.name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def csv_rows(path: Path, required: tuple[str, ...], expected: str):
    """(header, [(line number, {column: cell}), ...]) of a CSV file; errors name the file and line."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as exc:
        raise ValueError(f"{path.name} line {reader.line_num}: malformed CSV ({exc})") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path.name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not rows:
        raise ValueError(f"{path.name}: empty file, expected a CSV header such as `path,label`")
    header = [cell.strip().lower() for cell in rows[0][1]]
    absent = [name for name in required if name not in header]
    if absent:
        raise ValueError(
            f"{path.name} line {rows[0][0]}: expected a header `{expected}`, got `{','.join(header)}` (no {absent})"
        )
    body = []
    for number, row in rows[1:]:
        while len(row) > len(header) and not row[-1].strip():
            row = row[:-1]  # trailing empty cells ("a.mp4,x,")
        if len(row) != len(header):
            hint = "; quote fields that contain commas" if len(row) > len(header) else ""
            raise ValueError(
                f"{path.name} line {number}: expected {len(header)} columns `{','.join(header)}`, got {len(row)}{hint}"
            )
        body.append((number, dict(zip(header, (cell.strip() for cell in row), strict=True))))
    return header, body


def parse_csv(path: Path, root, classes):
    header, body = csv_rows(path, ("path",), "path,label")
    base = Path(root) if root is not None else path.parent
    labelled, items = "label" in header, []
    for number, row in body:
        if not row["path"]:
            raise ValueError(f"{path.name} line {number}: empty path")
        if labelled and not row["label"]:
            raise ValueError(f"{path.name} line {number}: empty label (drop the label column for unlabelled lists)")
        items.append(Row(absolute(row["path"], base), row["label"] if labelled else None))
    return items, None, []


def _read_class_names(folder: Path, classes) -> tuple[list[str] | None, int]:
    """Class names for integer labels and their first index: ``classes=``, classes.txt, classInd.txt."""
    if classes is not None:
        return list(classes), 0
    if (folder / "classes.txt").is_file():
        return [line for _, line in meaningful_lines(folder / "classes.txt")], 0
    if (folder / "classInd.txt").is_file():
        return read_class_ind(folder / "classInd.txt"), 1
    return None, 0


def read_class_ind(path: Path) -> list[str]:
    """UCF ``classInd.txt`` (``1 ApplyEyeMakeup``) -> names in index order."""
    names = {}
    for number, line in meaningful_lines(path):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise ValueError(f"{path.name} line {number}: expected `index ClassName`, got {line!r}")
        if int(parts[0]) in names:
            raise ValueError(f"{path.name} line {number}: index {parts[0]} appears twice")
        names[int(parts[0])] = parts[1]
    if sorted(names) != list(range(1, len(names) + 1)):
        raise ValueError(f"{path.name}: expected indices 1..{len(names)}, got {sorted(names)[:SHOW]}...")
    return [names[i] for i in sorted(names)]


def parse_list(path: Path, root, classes):
    base = Path(root) if root is not None else path.parent
    entries = []  # (line number, path, label or None)
    for number, line in meaningful_lines(path):
        if not entries and line.split() in (["path", "label"], ["path"]):
            continue  # a header line
        parts = line.rsplit(None, 1)
        video, label = (line, None) if is_video_file(line) or len(parts) == 1 else (parts[0], parts[1])
        if entries and (label is None) != (entries[0][2] is None):
            want = "`path` alone" if entries[0][2] is None else "`path label`"
            raise ValueError(f"{path.name} line {number}: expected {want} like line {entries[0][0]}, got {line!r}")
        entries.append((number, video, label))
    if entries and entries[0][2] is not None and all(INT.match(label) for _, _, label in entries):
        names, first = _read_class_names(path.parent, classes)
        mapped = []
        for number, video, label in entries:
            index = int(label) - first
            if names is not None and not 0 <= index < len(names):
                raise ValueError(
                    f"{path.name} line {number}: class index {label} out of range "
                    f"{first}..{len(names) - 1 + first} ({len(names)} classes)"
                )
            mapped.append((number, video, names[index] if names is not None else str(int(label))))
        entries = mapped
    return [Row(absolute(video, base), label) for _, video, label in entries], None, []


def parse_ucf(path: Path, root, classes):
    if root is None:
        raise ValueError(
            f"{path.name}: UCF101 split lists give paths relative to the dataset folder; pass --root "
            "(root=) pointing at the folder that holds the class folders (e.g. UCF-101/)"
        )
    class_ind = path.parent / "classInd.txt"
    if not class_ind.is_file():
        raise FileNotFoundError(f"{path.name}: UCF101 split lists need classInd.txt beside them, not found in "
                                f"{path.parent}")
    names = read_class_ind(class_ind)
    known, items = set(names), []
    for number, line in meaningful_lines(path):
        parts = line.split()
        if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
            raise ValueError(f"{path.name} line {number}: expected `Class/v_Class_gNN_cNN.avi [index]`, got {line!r}")
        folder = parts[0].replace("\\", "/").split("/")[0] if "/" in parts[0].replace("\\", "/") else None
        if len(parts) == 2:
            if not 1 <= int(parts[1]) <= len(names):
                raise ValueError(f"{path.name} line {number}: class index {parts[1]} not in classInd.txt "
                                 f"(1..{len(names)})")
            label = names[int(parts[1]) - 1]
            if folder is not None and folder != label:
                raise ValueError(f"{path.name} line {number}: folder {folder!r} but index {parts[1]} is {label!r} in "
                                 "classInd.txt")
        elif folder in known:
            label = folder
        else:
            raise ValueError(f"{path.name} line {number}: cannot tell the class of {parts[0]!r}: its folder is not in "
                             "classInd.txt")
        items.append(Row(absolute(parts[0], Path(root)), label))
    return items, names, []


def parse_kinetics(path: Path, root, classes):
    _, body = csv_rows(path, ("youtube_id", "time_start", "time_end"), "label,youtube_id,time_start,time_end,split")
    base = Path(root) if root is not None else path.parent
    found = {}  # file stem -> {folder relative to base: file}, at most three levels deep
    for folder, dirs, files in os.walk(base) if base.is_dir() else ():
        rel = os.path.normpath(os.path.relpath(folder, base))
        depth = 0 if rel == "." else rel.count(os.sep) + 1
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if depth < 2 else []
        for name in sorted(files, key=lambda n: (not n.lower().endswith(".mp4"), n)):
            if is_video_file(name):
                found.setdefault(Path(name).stem, {}).setdefault(rel, os.path.join(folder, name))
    items = []
    for number, row in body:
        try:
            start, end = float(row["time_start"]), float(row["time_end"])
        except ValueError:
            start = end = math.nan
        if not (math.isfinite(start) and math.isfinite(end)):
            raise ValueError(
                f"{path.name} line {number}: time_start/time_end must be numbers (seconds), "
                f"got {row['time_start']!r}, {row['time_end']!r}"
            )
        label, split, youtube_id = row.get("label") or None, row.get("split") or "", row["youtube_id"]
        if not youtube_id:
            raise ValueError(f"{path.name} line {number}: empty youtube_id")
        stem = f"{youtube_id}_{int(start):06d}_{int(end):06d}"
        labels = [label, label.replace(" ", "_")] if label else []
        layouts = [os.path.join(split, name) for name in labels] if split else []
        layouts += labels + ([split] if split else []) + ["."]
        layouts = [os.path.normpath(d) for d in dict.fromkeys(layouts)]
        candidates = found.get(stem, {}) or found.get(youtube_id, {})
        video = next((candidates[d] for d in layouts if d in candidates), None)
        if video is None and len(candidates) == 1:  # another folder naming ("val" vs "validate")
            video = next(iter(candidates.values()))
        video = video or os.path.join(base, layouts[0], stem + ".mp4")  # reported missing
        items.append(Row(os.path.abspath(video), label, group=youtube_id, start=start, end=end))
    return items, None, []
