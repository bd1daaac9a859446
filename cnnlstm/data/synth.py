"""The embedded default dataset: synthetic videos whose classes differ only in frame order.

``synthesize(out)`` writes real, encoded video files (several containers and codecs) so the
whole pipeline (decode, sample, transform, train) runs on them exactly as on a real dataset::

    OUT/videos/<class>/train_0003.mp4    one folder per class (train and test videos mixed)
    OUT/train.csv, OUT/test.csv          the split, header ``path,label``, paths relative to OUT
    OUT/classes.txt                      class names, one a line, in label-index order
    OUT/dataset.json, OUT/README.txt     what was generated and how

Video ``i`` of a split has the same random draws (scene, motion, length, container) in every
class, so each video has a counterpart in every other class holding exactly the same frames in a
different order; see :mod:`cnnlstm.data.synth_classify`. Frames are deterministic given the
seed; the bytes are too for .mp4/.avi (Matroska/WebM muxers write random ids).
"""
from __future__ import annotations

import csv
import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .._optional import require
from .synth_classify import CLASSES, DESCRIPTIONS, MIN_FRAMES, render_clip
from .video.encode import write_video

TASKS = ("classify", "segment", "caption")
_SPLITS = {"train": 0, "test": 1}  # part of each video's seed
_GENERATOR = "cnnlstm.data.synth"
_VIDEO_NAME = re.compile(r"^(train|test)_\d{4}\.[a-z0-9]+$")
_OUTPUTS = ("videos", "train.csv", "test.csv", "classes.txt", "dataset.json", "README.txt")

# encoder options: small, fast, single-threaded (deterministic) and good quality at 64 px
_CODEC_OPTIONS = {
    "libx264": {"crf": "18", "preset": "veryfast", "threads": "1"},
    "mpeg4": {"qscale": "3", "threads": "1"},
    "ffv1": {"threads": "1"},
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8", "crf": "30", "b": "0", "threads": "1"},
}


@dataclass(frozen=True)
class SynthConfig:
    """What :func:`synthesize` generates. The defaults take a few seconds on one CPU core."""

    task: str = "classify"
    videos_per_class: int = 24  # train videos per class
    test_per_class: int = 8
    size: int = 64  # frame side, pixels (even: yuv420p)
    min_frames: int = 24  # lengths vary uniformly in [min_frames, max_frames]
    max_frames: int = 48
    fps: float = 12.0
    seed: int = 0
    # (extension, codec) pairs, cycled over videos: several containers and codecs on purpose
    formats: tuple[tuple[str, str], ...] = (
        (".mp4", "libx264"),
        (".avi", "mpeg4"),
        (".mkv", "ffv1"),
        (".webm", "libvpx-vp9"),
    )

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"unknown synthetic task {self.task!r}; expected one of {list(TASKS)}")
        if self.videos_per_class < 1 or self.test_per_class < 0:
            raise ValueError(
                f"videos_per_class must be >= 1 and test_per_class >= 0; "
                f"got {self.videos_per_class} and {self.test_per_class}"
            )
        if self.size < 16 or self.size % 2:
            raise ValueError(f"size must be an even number >= 16 (yuv420p video); got {self.size}")
        if not MIN_FRAMES <= self.min_frames <= self.max_frames:
            raise ValueError(
                f"need {MIN_FRAMES} <= min_frames <= max_frames; got {self.min_frames} and {self.max_frames}"
            )
        if self.fps <= 0:
            raise ValueError(f"fps must be positive; got {self.fps}")
        if not self.formats or any(len(f) != 2 or not str(f[0]).startswith(".") for f in self.formats):
            raise ValueError(f"formats must be (extension, codec) pairs like ('.mp4', 'libx264'); got {self.formats}")


def _video_rng(config: SynthConfig, split: str, index: int) -> np.random.Generator:
    """The random stream of video ``index`` of ``split``; the same for every class on purpose."""
    return np.random.default_rng([config.seed, _SPLITS[split], index])


def _plan(config: SynthConfig) -> list[dict]:
    """Every video to write: split, index, class, relative path, length, codec."""
    plan = []
    for split, count in (("train", config.videos_per_class), ("test", config.test_per_class)):
        for index in range(count):
            ext, codec = config.formats[index % len(config.formats)]
            num_frames = int(_video_rng(config, split, index).integers(config.min_frames, config.max_frames + 1))
            for cls in CLASSES:
                path = f"videos/{cls}/{split}_{index:04d}{ext.lower()}"
                plan.append(dict(path=path, label=cls, split=split, index=index, frames=num_frames, codec=codec))
    return plan


def _clear_previous(out: Path) -> None:
    """Remove an earlier synthesize() output in ``out``; refuse to write over anything else."""
    marker = out / "dataset.json"
    if marker.exists():
        try:
            ours = json.loads(marker.read_text()).get("generator") == _GENERATOR
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
    _clear_previous(out)
    return out


def finish_output(out: Path, plan: list[dict], meta: dict, readme, start: float, *, meta_extra: dict | None = None,
                  **fields) -> dict:
    """Write README.txt and the completed dataset.json of a synthesize() output; returns the summary:
    ``train``, ``test`` (video counts), ``out``, ``train_csv``, ``test_csv``, ``seconds`` and ``fields``.
    ``readme(summary)`` makes the README text; ``plan`` (one dict per video, with ``split``) goes
    into dataset.json with ``meta_extra``."""
    counts = {name: sum(row["split"] == name for row in plan) for name in _SPLITS}
    summary = dict(train=counts["train"], test=counts["test"], out=str(out), train_csv=str(out / "train.csv"),
                   test_csv=str(out / "test.csv"), seconds=round(time.perf_counter() - start, 3), **fields)
    (out / "README.txt").write_text(readme(summary))
    meta.update(complete=True, train=summary["train"], test=summary["test"], **(meta_extra or {}), videos=plan)
    (out / "dataset.json").write_text(json.dumps(meta, indent=1))
    return summary


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        writer.writerows([row["path"], row["label"]] for row in rows)


def _readme(config: SynthConfig, summary: dict) -> str:
    lines = [
        "cnnlstm synthetic temporal-order dataset (written by cnnlstm.data.synth.synthesize)",
        "",
        "Each video shows one object (random shape, colour, size, height, start/end, speed) on a",
        "plain, lightly noisy background. The classes differ ONLY in the order of the frames: video",
        "i of a split has, in every class, exactly the same frames in a different order. A model",
        "that ignores frame order (mean of per-frame features) stays at chance",
        f"(1/{len(CLASSES)}); a temporal model (CNN-LSTM) can reach 100%.",
        "",
        "Classes:",
        *(f"  {cls:16s} {DESCRIPTIONS[cls]}" for cls in CLASSES),
        "",
        f"train: {summary['train']} videos, test: {summary['test']} videos, "
        f"{config.size}x{config.size} px, {config.min_frames}-{config.max_frames} frames at {config.fps} fps,",
        "containers/codecs: " + ", ".join(f"{ext} {codec}" for ext, codec in config.formats) + ".",
        "",
        "Files: videos/<class>/<split>_<index>.<ext>; train.csv and test.csv (path,label, paths",
        "relative to this folder) are the split; classes.txt lists the classes in label-index order.",
        "videos/ alone also reads as a folder-per-class dataset (train and test mixed).",
        "",
    ]
    return "\n".join(lines)


def synthesize(out_dir: str | os.PathLike, config: SynthConfig = SynthConfig(), *, progress: bool = False) -> dict:
    """Write the synthetic dataset into ``out_dir``; returns a summary dict.

    The summary has ``classes``, ``train`` and ``test`` (video counts), ``out`` (absolute
    folder), ``train_csv``, ``test_csv`` and ``seconds``. An earlier synthesize() output in the
    same folder is replaced; a folder holding other files with the same names is refused.
    """
    if config.task == "segment":
        from .synth_segment import synthesize_segment

        return synthesize_segment(out_dir, config, progress=progress)
    if config.task == "caption":
        from .synth_caption import synthesize_caption

        return synthesize_caption(out_dir, config, progress=progress)
    start = time.perf_counter()
    out = prepare_output(out_dir, config)
    plan = _plan(config)
    meta = dict(generator=_GENERATOR, version=1, complete=False, config=asdict(config), classes=list(CLASSES))
    (out / "dataset.json").write_text(json.dumps(meta, indent=1))  # marks the folder as ours first

    todo = plan
    if progress:
        todo = require("tqdm", purpose="synthesize(progress=True)").tqdm(plan, desc="synthesizing", unit="video")
    for row in todo:
        rng = _video_rng(config, row["split"], row["index"])
        rng.integers(config.min_frames, config.max_frames + 1)  # the length, drawn in _plan
        clip = render_clip(row["label"], rng, row["frames"], config.size)  # (T, H, W, 3)
        target = out / row["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        write_video(target, clip, fps=config.fps, codec=row["codec"], options=_CODEC_OPTIONS.get(row["codec"]))

    splits = {name: [row for row in plan if row["split"] == name] for name in _SPLITS}
    for name, rows in splits.items():
        _write_csv(out / f"{name}.csv", rows)
    (out / "classes.txt").write_text("".join(f"{cls}\n" for cls in CLASSES))
    return finish_output(out, plan, meta, lambda summary: _readme(config, summary), start,
                         meta_extra={"descriptions": DESCRIPTIONS}, classes=list(CLASSES))


__all__ = ["SynthConfig", "TASKS", "CLASSES", "render_clip", "synthesize"]
