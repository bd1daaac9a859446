"""The output folder of a synthetic dataset: codec settings, per-video random streams, the CSV
files, README.txt and dataset.json, and replacing an earlier output safely.

Every generator writes ``OUT/videos/...``, ``OUT/train.csv``, ``OUT/test.csv`` and, with
``SynthConfig.val_per_class``, ``OUT/val.csv`` (its own columns; :func:`split_sizes` lists the
splits), ``OUT/dataset.json`` (first with ``complete: false``: the folder is ours; completed at
the end) and ``OUT/README.txt``.
"""
from __future__ import annotations

import csv
import json
import os
import re
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from ..._optional import require
from ...progress import progress_bar as terminal_bar

if TYPE_CHECKING:
    from . import SynthConfig

# part of each video's seed: a split added later (val) leaves the videos of the others as they were
SPLITS = {"train": 0, "test": 1, "val": 2}
GENERATOR = "cnnlstm.data.synth"  # dataset.json "generator": marks a folder synthesize() may replace
_VIDEO_NAME = re.compile(r"^(train|test|val)_\d{4}\.[a-z0-9]+$")
_OUTPUTS = ("videos", "train.csv", "test.csv", "val.csv", "classes.txt", "dataset.json", "README.txt")

# encoder options: small, fast, single-threaded and good quality at 64 px, and deterministic: the same seed gives
# the same frames. x264's rate-control lookahead (mb-tree) made 2-5% of repeated encodes of one clip differ even with
# threads=1 (so two demo runs trained on slightly different videos); without it 140 of 140 were identical
CODEC_OPTIONS = {
    "libx264": {"crf": "18", "preset": "veryfast", "threads": "1", "x264-params": "rc-lookahead=0"},
    "mpeg4": {"qscale": "3", "threads": "1"},
    "ffv1": {"threads": "1"},
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8", "crf": "30", "b": "0", "threads": "1"},
}


def split_sizes(config: SynthConfig) -> list[tuple[str, int]]:
    """The splits to write, in order, with their videos per class: train, test, and val when
    ``config.val_per_class`` is set (without it no val split exists, not even an empty one)."""
    sizes = [("train", config.videos_per_class), ("test", config.test_per_class)]
    if config.val_per_class:
        sizes.append(("val", config.val_per_class))
    return sizes


def split_list(summary: dict, suffix: str = "", *, counts: bool = False) -> str:
    """The splits of a synthesize() summary in words, each name + ``suffix``: ``train and test``, or
    ``train, test and val`` with a val split (``suffix=".csv"``: ``train.csv and test.csv``;
    ``counts``: ``24 train and 8 test``)."""
    names = [f"{summary[name]} {name}" if counts else f"{name}{suffix}" for name in SPLITS if name in summary]
    return " and ".join([", ".join(names[:-1]), names[-1]])


def split_counts(summary: dict) -> str:
    """``train: N videos, test: M videos`` (``, val: K videos`` with a val split), for README.txt."""
    return ", ".join(f"{name}: {summary[name]} videos" for name in SPLITS if name in summary)


def video_rng(config, split: str, index: int, *stream: int) -> np.random.Generator:
    """The random stream of video ``index`` of ``split`` (``stream`` keeps each task's draws apart)."""
    return np.random.default_rng([config.seed, SPLITS[split], index, *stream])


def clear_previous(out: Path) -> None:
    """Remove an earlier synthesize() output in ``out``; refuse to write over anything else."""
    marker = out / "dataset.json"
    if marker.exists():
        try:
            ours = json.loads(marker.read_text()).get("generator") == GENERATOR
        except (ValueError, OSError, AttributeError):
            ours = False
    else:
        ours = False
    if not ours:
        clash = [name for name in _OUTPUTS if (out / name).exists()]
        if clash:
            raise FileExistsError(
                f"{out} already holds {', '.join(clash)} not written by synthesize(); "
                "choose an empty or new output folder"
            )
        return
    videos = out / "videos"
    if videos.is_dir():
        for class_dir in videos.iterdir():
            if class_dir.is_file() and _VIDEO_NAME.match(class_dir.name):  # a segment/caption dataset's flat layout
                class_dir.unlink()
            if not class_dir.is_dir():
                continue
            for file in class_dir.iterdir():
                if file.is_file() and _VIDEO_NAME.match(file.name):
                    file.unlink()
            if not any(class_dir.iterdir()):
                class_dir.rmdir()
    for name in _OUTPUTS[1:]:
        (out / name).unlink(missing_ok=True)


def prepare_output(out_dir: str | os.PathLike, config: SynthConfig) -> Path:
    """Check the codecs, create ``out_dir`` and remove an earlier synthesize() output of any task
    (a folder holding other files is refused); returns the absolute folder."""
    av = require("av", purpose="writing the synthetic videos")
    missing = sorted({codec for _, codec in config.formats} - set(av.codecs_available))
    if missing:
        raise ValueError(f"this PyAV/FFmpeg build cannot encode {missing}; change SynthConfig.formats")
    out = Path(out_dir).expanduser().absolute()
    out.mkdir(parents=True, exist_ok=True)
    clear_previous(out)
    return out


def numbered_plan(config: SynthConfig, per_class_count: int) -> list[dict]:
    """One dict per video of every split (:func:`split_sizes`): ``path`` (videos/<split>_<index>.<ext>),
    ``split``, ``index``, ``codec``; ``per_class_count`` videos per class setting of ``config``, the
    containers taken in turn."""
    plan = []
    for split, per_class in split_sizes(config):
        for index in range(per_class * per_class_count):
            ext, codec = config.formats[index % len(config.formats)]
            plan.append(dict(path=f"videos/{split}_{index:04d}{ext.lower()}", split=split, index=index, codec=codec))
    return plan


def start_output(out: Path, config: SynthConfig, task: str, **meta_fields) -> dict:
    """Write the first dataset.json (``complete`` False: it marks the folder as ours before any video)
    and create ``videos/``; returns the meta dict that :func:`finish_output` completes."""
    meta = dict(generator=GENERATOR, version=1, task=task, complete=False, config=asdict(config), **meta_fields)
    (out / "dataset.json").write_text(json.dumps(meta, indent=1))
    (out / "videos").mkdir(exist_ok=True)
    return meta


def finish_output(out: Path, plan: list[dict], meta: dict, readme, start: float, *, meta_extra: dict | None = None,
                  **fields) -> dict:
    """Write README.txt and the completed dataset.json of a synthesize() output; returns the summary:
    ``train``, ``test`` (video counts), ``out``, ``train_csv``, ``test_csv``, ``seconds`` and ``fields``;
    with a val split also ``val`` and ``val_csv``. ``readme(summary)`` makes the README text; ``plan``
    (one dict per video, with ``split``) goes into dataset.json with ``meta_extra``."""
    counts = {name: sum(row["split"] == name for row in plan) for name in SPLITS}
    written = [name for name in SPLITS if name != "val" or counts[name]]  # train and test always (maybe empty)
    summary = {name: counts[name] for name in written}
    summary.update(out=str(out), **{f"{name}_csv": str(out / f"{name}.csv") for name in written},
                   seconds=round(time.perf_counter() - start, 3), **fields)
    (out / "README.txt").write_text(readme(summary))
    meta.update(complete=True, **{name: counts[name] for name in written}, **(meta_extra or {}), videos=plan)
    (out / "dataset.json").write_text(json.dumps(meta, indent=1))
    return summary


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    """A CSV file with ``header`` and ``rows``."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def progress_bar(items: list, progress: bool):
    """``items``, wrapped in a tqdm bar when ``progress`` and stderr is a terminal."""
    if not progress:
        return items
    return terminal_bar(items, desc="synthesizing", unit="video")


__all__ = ["SPLITS", "GENERATOR", "CODEC_OPTIONS", "split_sizes", "split_list", "split_counts", "video_rng",
           "prepare_output", "finish_output", "write_csv", "progress_bar"]
