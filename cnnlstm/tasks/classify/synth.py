"""Temporal-order classification clips: the classes differ ONLY in the order of the frames.

Every clip starts from one *canonical* clip: an object sliding from left to right along a
horizontal line, frame ``k`` showing it at position ``k / (T - 1)`` of the way. A class is a
permutation of those frames:

==================  ==========================================  ==================
class               frame order (canonical indices)             motion
==================  ==========================================  ==================
moving_right        0, 1, 2, ..., T-1                           →
moving_left         T-1, ..., 1, 0 (time reversal)              ←
right_and_back      evens ascending, then odds descending       → ←
left_and_back       the mirror image k -> T-1-k of the above    ← →
zigzag_right        k%3==0 up, k%3==1 down, k%3==2 up           → ← →
zigzag_left         time reversal of zigzag_right               ← → ←
==================  ==========================================  ==================

So for one random draw (scene, line, speed, noise), the clips of all six classes hold exactly the
same *set* of frames, only ordered differently: any order-blind model (mean of per-frame
features, bag of frames) sees identical inputs for every class and sits at chance (1/6), while
a temporal model can reach 100%. ``moving_left`` is exactly ``moving_right`` reversed in time,
and ``zigzag_left`` exactly ``zigzag_right`` reversed.

Letters: T frames, H/W height/width.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict

import numpy as np

from ...data.synth import MIN_FRAMES, SynthConfig
from ...data.synth.draw import Track, render, sample_scene
from ...data.synth.output import (
    CODEC_OPTIONS,
    GENERATOR,
    finish_output,
    prepare_output,
    progress_bar,
    split_counts,
    split_list,
    split_sizes,
    video_rng,
    write_csv,
)
from ...data.video.encode import write_video

CLASSES = ("left_and_back", "moving_left", "moving_right", "right_and_back", "zigzag_left", "zigzag_right")
DESCRIPTIONS = {
    "moving_right": "the object slides from left to right",
    "moving_left": "the object slides from right to left (moving_right reversed in time)",
    "right_and_back": "the object goes right, then comes back left",
    "left_and_back": "the object goes left, then comes back right",
    "zigzag_right": "the object goes right, back left, then right again (three times faster)",
    "zigzag_left": "the object goes left, back right, then left again (zigzag_right reversed in time)",
}

# class -> the class whose clips are its exact time reversal (same rng seed)
REVERSE_OF = {
    "moving_right": "moving_left",
    "moving_left": "moving_right",
    "zigzag_right": "zigzag_left",
    "zigzag_left": "zigzag_right",
    "right_and_back": "right_and_back",  # reversed, it still goes right and comes back
    "left_and_back": "left_and_back",
}


def class_order(cls: str, num_frames: int) -> np.ndarray:
    """Canonical frame indices, shape (T,), in the order that class ``cls`` shows them."""
    if cls not in DESCRIPTIONS:
        raise ValueError(f"unknown synthetic class {cls!r}; expected one of {list(CLASSES)}")
    k = np.arange(num_frames)
    if cls == "moving_right":
        return k
    if cls == "moving_left":
        return k[::-1].copy()
    if cls in ("right_and_back", "left_and_back"):
        order = np.concatenate([k[0::2], k[1::2][::-1]])
        return order if cls == "right_and_back" else num_frames - 1 - order
    zigzag = np.concatenate([k[0::3], k[1::3][::-1], k[2::3]])
    return zigzag if cls == "zigzag_right" else zigzag[::-1].copy()


def canonical_track(rng: np.random.Generator, num_frames: int) -> Track:
    """The object's left-to-right slide: random size, height, start and end, shape (T,) each."""
    r = rng.uniform(0.15, 0.22)  # half-size, fraction of the frame side
    y = rng.uniform(0.3, 0.7)
    lo = rng.uniform(r + 0.02, 0.35)
    hi = rng.uniform(0.65, 1.0 - r - 0.02)
    x = np.linspace(lo, hi, num_frames)
    return Track(x=x, y=np.full(num_frames, y), r=np.full(num_frames, r), alpha=np.ones(num_frames))


def render_clip(
    cls: str, rng: np.random.Generator | int, num_frames: int, size: int = 64
) -> np.ndarray:
    """One clip of class ``cls``: uint8 (T, H, W, 3) with ``T = num_frames`` and ``H = W = size``.

    The random draws do not depend on ``cls``: the same ``rng`` state gives clips of every class
    that are permutations of the same frames (see the module docstring).
    """
    if cls not in DESCRIPTIONS:
        raise ValueError(f"unknown synthetic class {cls!r}; expected one of {list(CLASSES)}")
    if num_frames < MIN_FRAMES:
        raise ValueError(f"num_frames must be at least {MIN_FRAMES} for the temporal classes; got {num_frames}")
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    scene = sample_scene(rng)
    track = canonical_track(rng, num_frames)
    frames = render(scene, track, size, rng)  # (T, H, W, 3), canonical order
    return frames[class_order(cls, num_frames)]  # same frames, class order


def _plan(config: SynthConfig) -> list[dict]:
    """Every video to write: split, index, class, relative path, length, codec."""
    plan = []
    for split, count in split_sizes(config):
        for index in range(count):
            ext, codec = config.formats[index % len(config.formats)]
            num_frames = int(video_rng(config, split, index).integers(config.min_frames, config.max_frames + 1))
            for cls in CLASSES:
                path = f"videos/{cls}/{split}_{index:04d}{ext.lower()}"
                plan.append(dict(path=path, label=cls, split=split, index=index, frames=num_frames, codec=codec))
    return plan


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
        f"{split_counts(summary)}, "
        f"{config.size}x{config.size} px, {config.min_frames}-{config.max_frames} frames at {config.fps} fps,",
        "containers/codecs: " + ", ".join(f"{ext} {codec}" for ext, codec in config.formats) + ".",
        "",
        f"Files: videos/<class>/<split>_<index>.<ext>; {split_list(summary, '.csv')} (path,label, paths",
        "relative to this folder) are the split; classes.txt lists the classes in label-index order.",
        f"videos/ alone also reads as a folder-per-class dataset ({split_list(summary)} mixed).",
        "",
    ]
    return "\n".join(lines)


def synthesize_classify(out_dir: str | os.PathLike, config: SynthConfig, *, progress: bool = False) -> dict:
    """Write the temporal-order dataset into ``out_dir``; returns a summary dict.

    The summary has ``classes``, ``train`` and ``test`` (video counts), ``out`` (absolute
    folder), ``train_csv``, ``test_csv`` and ``seconds`` (with ``config.val_per_class`` also
    ``val`` and ``val_csv``). Layout::

        OUT/videos/<class>/train_0003.mp4    one folder per class (the videos of every split mixed)
        OUT/train.csv, OUT/test.csv          the split, header ``path,label``, paths relative to OUT
        OUT/val.csv                          the same, with ``config.val_per_class`` (videos val_0000...)
        OUT/classes.txt                      class names, one a line, in label-index order
        OUT/dataset.json, OUT/README.txt     what was generated and how

    Video ``i`` of a split has the same random draws (scene, motion, length, container) in every
    class, so each video has a counterpart in every other class holding exactly the same frames
    in a different order. Frames are deterministic given the seed; the bytes are too for
    .mp4/.avi (Matroska/WebM muxers write random ids).
    """
    start = time.perf_counter()
    out = prepare_output(out_dir, config)
    plan = _plan(config)
    meta = dict(generator=GENERATOR, version=1, complete=False, config=asdict(config), classes=list(CLASSES))
    (out / "dataset.json").write_text(json.dumps(meta, indent=1))  # marks the folder as ours first
    for row in progress_bar(plan, progress):
        rng = video_rng(config, row["split"], row["index"])
        rng.integers(config.min_frames, config.max_frames + 1)  # the length, drawn in _plan
        clip = render_clip(row["label"], rng, row["frames"], config.size)  # (T, H, W, 3)
        target = out / row["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        write_video(target, clip, fps=config.fps, codec=row["codec"], options=CODEC_OPTIONS.get(row["codec"]))

    for name, _ in split_sizes(config):
        write_csv(out / f"{name}.csv", ["path", "label"], [[r["path"], r["label"]] for r in plan if r["split"] == name])
    (out / "classes.txt").write_text("".join(f"{cls}\n" for cls in CLASSES))
    return finish_output(out, plan, meta, lambda summary: _readme(config, summary), start,
                         meta_extra={"descriptions": DESCRIPTIONS}, classes=list(CLASSES))


__all__ = ["CLASSES", "DESCRIPTIONS", "REVERSE_OF", "class_order", "canonical_track", "render_clip",
           "synthesize_classify"]
