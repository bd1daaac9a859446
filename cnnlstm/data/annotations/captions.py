"""Read video captions (CSV or JSON) into the videos to load and their reference captions.

Accepted forms (several captions per video are the rule, not the exception):

* CSV with a header ``video,caption`` (or ``path,caption``); one row per caption, a video on as
  many rows as it has captions; extra columns are ignored. Quote captions that contain commas.
* JSON, one of
  - a list of ``{"video": ..., "caption": ...}`` objects (``"path"`` also works for ``"video"``);
  - a mapping ``{video: [caption, ...]}`` (or ``{video: caption}``);
  - MSR-VTT style ``{"sentences": [{"video_id", "caption"}], "videos": [{"video_id", "path"?}]}``:
    a video's file is its ``path`` if given, else ``<video_id>.mp4``.

Relative video paths are taken from ``root`` when given, else from the annotation file's folder
(like :func:`cnnlstm.data.annotations.formats.load_spec`). ``CaptionSpec.captions`` is keyed by the
``VideoItem.path`` exactly as stored (absolute, normalised). Videos keep the order in which they
first appear.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .formats import VideoItem, VideoList, check_videos_exist
from .readers import absolute, csv_rows, read_json


@dataclass
class CaptionSpec:
    """The videos (unlabelled ``VideoList``) and their reference captions, keyed by ``VideoItem.path``."""

    videos: VideoList
    captions: dict[str, list[str]]

    def __len__(self) -> int:
        return len(self.videos)


def _caption(text, where: str) -> str:
    if not isinstance(text, str):
        raise ValueError(f"{where}: a caption must be a string; got {type(text).__name__} {text!r:.60}")
    text = " ".join(text.split())
    if not text:
        raise ValueError(f"{where}: empty caption (remove the entry or write the caption)")
    return text


def _video(name, where: str) -> str:
    if not isinstance(name, (str, int)) or isinstance(name, bool) or not str(name).strip():
        raise ValueError(f"{where}: empty or invalid video ({name!r}); give the video's file path")
    return str(name).strip()


def _read_csv(path: Path) -> list[tuple[str, str, str]]:
    header, body = csv_rows(path, ("caption",), "video,caption")
    key = "video" if "video" in header else "path" if "path" in header else None
    if key is None:
        raise ValueError(f"{path.name} line 1: expected a header `video,caption` (or `path,caption`), got "
                         f"`{','.join(header)}`")
    return [(row[key], row["caption"], f"{path.name} line {number}") for number, row in body]


def _read_json(path: Path) -> list[tuple[str, str, str]]:
    data = read_json(path)
    rows = []
    if isinstance(data, list):
        for i, entry in enumerate(data):
            where = f"{path.name} entry {i}"
            if not isinstance(entry, dict) or "caption" not in entry or not ({"video", "path"} & entry.keys()):
                raise ValueError(f'{where}: expected an object {{"video": ..., "caption": ...}}; got '
                                 f'{json.dumps(entry)[:80]}')
            rows.append((entry.get("video", entry.get("path")), entry["caption"], where))
    elif isinstance(data, dict) and "sentences" in data:
        sentences, videos = data["sentences"], data.get("videos", [])
        if not isinstance(sentences, list) or not isinstance(videos, list):
            raise ValueError(f'{path.name}: MSR-VTT style "sentences" and "videos" must be lists')
        files = {}
        for i, video in enumerate(videos):
            if not isinstance(video, dict) or "video_id" not in video:
                raise ValueError(f'{path.name} videos[{i}]: expected an object with "video_id" (and optionally "path")')
            files[str(video["video_id"])] = video.get("path") or f"{video['video_id']}.mp4"
        for i, entry in enumerate(sentences):
            where = f"{path.name} sentences[{i}]"
            if not isinstance(entry, dict) or "video_id" not in entry or "caption" not in entry:
                raise ValueError(f'{where}: expected an object {{"video_id": ..., "caption": ...}}; got '
                                 f'{json.dumps(entry)[:80]}')
            vid = str(entry["video_id"])
            if videos and vid not in files:
                raise ValueError(f'{where}: video_id {vid!r} is not in "videos"')
            rows.append((files.get(vid, f"{vid}.mp4"), entry["caption"], where))
    elif isinstance(data, dict):
        for video, captions in data.items():
            where = f"{path.name} key {video!r}"
            captions = [captions] if isinstance(captions, str) else captions
            if not isinstance(captions, list) or not captions:
                raise ValueError(f"{where}: expected a caption or a non-empty list of captions; got "
                                 f"{json.dumps(captions)[:80]}")
            rows.extend((video, caption, f"{where} caption {j}") for j, caption in enumerate(captions))
    else:
        raise ValueError(
            f'{path.name}: expected a JSON list of {{"video", "caption"}} objects, a mapping {{video: [captions]}} '
            f'or MSR-VTT style {{"sentences": [...], "videos": [...]}}; got a {type(data).__name__}'
        )
    return rows


def load_captions(spec: str | os.PathLike, *, root: str | os.PathLike | None = None,
                  check_exists: bool = True) -> CaptionSpec:
    """Parse a caption file (CSV or JSON, see the module docstring).

    With ``check_exists`` all missing videos are reported in one FileNotFoundError.
    """
    path = Path(spec).expanduser().absolute()
    if not path.is_file():
        raise FileNotFoundError(f"caption file {path} does not exist (expected a CSV `video,caption` or a JSON file)")
    base = Path(root).expanduser().absolute() if root is not None else path.parent
    if root is not None and check_exists and not base.is_dir():
        raise FileNotFoundError(f"root {base} is not a folder (it should hold the videos of {path.name})")
    try:
        head = path.read_text(encoding="utf-8-sig").lstrip()[:1]
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path.name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not head:
        raise ValueError(f"{path.name}: empty file; expected a CSV with a header `video,caption` or a JSON caption "
                         "file")
    json_file = path.suffix.lower() == ".json" or head in "[{"
    rows = _read_json(path) if json_file else _read_csv(path)
    captions: dict[str, list[str]] = {}
    for video, caption, where in rows:
        key = absolute(_video(video, where), base)
        captions.setdefault(key, []).append(_caption(caption, where))
    if not captions:
        raise ValueError(f"{path.name}: no captions listed")
    source = f"captions:{path}"
    if check_exists:
        check_videos_exist(list(captions), source)
    videos = VideoList(items=[VideoItem(p, None) for p in captions], classes=[], source=source)
    return CaptionSpec(videos=videos, captions=captions)


__all__ = ["CaptionSpec", "load_captions"]
