"""Synthetic multi-label videos: one object doing several motions at once.

``synthesize(out, SynthConfig(task="multilabel"))`` (or :func:`synthesize_multilabel`) writes::

    OUT/videos/train_0000.mp4 ...        several containers and codecs, cycled
    OUT/train.csv, OUT/test.csv          ``path,labels``: the labels of each video separated by ';'
    OUT/val.csv                          the same, with ``SynthConfig.val_per_class`` (videos val_0000...)
    OUT/classes.txt                      the classes, sorted
    OUT/dataset.json, OUT/README.txt     what was generated (with each video's motions) and how

Each video shows one object (random shape, colour, size) on a plain, lightly noisy background.
It does, all at the same time, one motion of each of four independent kinds: horizontal
(``move_left``, ``move_right`` or none), vertical (``move_up``, ``move_down`` or none), size
(``grow``, ``shrink`` or none) and visibility (``blink`` or none); a diagonal slide that grows
is ``grow;move_down;move_right``. Video ``i`` always does ``ACTIONS[i % 7]`` and draws the other
kinds at random (each option equally likely), so a clip has 1-4 labels (2.5 on average) and every
class has about a third of the videos. Each motion is a change between frames (a reversed clip
swaps left and right, grow and shrink): one frame cannot tell the labels, a temporal model can.

Letters: T frames, H/W height/width.
"""
from __future__ import annotations

import os
import time

import numpy as np

from ...data.synth import SynthConfig
from ...data.synth.draw import Track, render, sample_scene
from ...data.synth.output import (
    CODEC_OPTIONS,
    finish_output,
    numbered_plan,
    prepare_output,
    progress_bar,
    split_counts,
    split_list,
    split_sizes,
    start_output,
    video_rng,
    write_csv,
)
from ...data.video.encode import write_video
from .labels import SEPARATOR

ACTIONS = ("blink", "grow", "move_down", "move_left", "move_right", "move_up", "shrink")  # sorted: label order
KINDS = {  # one option of each kind at a time; None: that kind does nothing
    "horizontal": ("move_left", "move_right", None),
    "vertical": ("move_up", "move_down", None),
    "size": ("grow", "shrink", None),
    "visibility": ("blink", None),
}
DESCRIPTIONS = {
    "blink": "the object disappears and reappears (5-8 frames on, 5-8 off)",
    "grow": "the object grows to about twice its size",
    "shrink": "the object shrinks to about half its size",
    "move_left": "the object slides left (30-45% of the frame)",
    "move_right": "the object slides right",
    "move_up": "the object slides up",
    "move_down": "the object slides down",
}

_MARGIN = 0.02  # the object stays this far (fraction of the side) inside the frame
_TRAVEL = (0.30, 0.45)  # distance of a slide over the clip, fraction of the side
_SMALL, _SCALE = (0.07, 0.10), (1.8, 2.3)  # grow/shrink: the small half-size and the factor to the large one
_STILL_R = (0.10, 0.15)  # half-size when the size does not change
_BLINK_RUN = (5, 8)  # frames on, then off, ... (a run of 5 holds a sampled frame at 16 of up to 48 frames)


def draw_motions(rng: np.random.Generator, forced: str) -> dict[str, str | None]:
    """One option per kind, at random; ``forced`` (an action) takes its kind's place."""
    chosen = {kind: options[rng.integers(len(options))] for kind, options in KINDS.items()}
    kind = next(k for k, options in KINDS.items() if forced in options)
    chosen[kind] = forced
    return chosen


def _axis(rng: np.random.Generator, motion: str | None, forward: str, r_max: float, num_frames: int) -> np.ndarray:
    """Positions (T,) along one axis: a linear slide over ``_TRAVEL`` (``forward`` = increasing), or still."""
    lo, hi = _MARGIN + r_max, 1 - _MARGIN - r_max
    if motion is None:
        return np.full(num_frames, rng.uniform(max(lo, 0.3), min(hi, 0.7)))
    travel = rng.uniform(*_TRAVEL)
    start = rng.uniform(lo, hi - travel)
    path = np.linspace(start, start + travel, num_frames)
    return path if motion == forward else path[::-1].copy()


def _blink(rng: np.random.Generator, num_frames: int) -> np.ndarray:
    """Visibility (T,): runs of ``_BLINK_RUN`` frames on and off, starting on."""
    alpha, on = [], True
    while len(alpha) < num_frames:
        alpha += [1.0 if on else 0.0] * int(rng.integers(_BLINK_RUN[0], _BLINK_RUN[1] + 1))
        on = not on
    return np.array(alpha[:num_frames])


def motion_track(rng: np.random.Generator, motions: dict[str, str | None], num_frames: int) -> Track:
    """The object's track (T,) doing every chosen motion at once."""
    if motions["size"] is None:
        r = np.full(num_frames, rng.uniform(*_STILL_R))
    else:
        small = rng.uniform(*_SMALL)
        r = np.linspace(small, small * rng.uniform(*_SCALE), num_frames)
        r = r if motions["size"] == "grow" else r[::-1].copy()
    x = _axis(rng, motions["horizontal"], "move_right", float(r.max()), num_frames)
    y = _axis(rng, motions["vertical"], "move_down", float(r.max()), num_frames)  # image y grows downwards
    alpha = _blink(rng, num_frames) if motions["visibility"] else np.ones(num_frames)
    return Track(x=x, y=y, r=r, alpha=alpha)


def render_video(config: SynthConfig, split: str, index: int) -> tuple[np.ndarray, list[str]]:
    """Video ``index`` of ``split``: frames uint8 (T, H, W, 3) and its labels (sorted)."""
    rng = video_rng(config, split, index, 3)  # 3: this task's stream
    num_frames = int(rng.integers(config.min_frames, config.max_frames + 1))
    scene = sample_scene(rng)
    motions = draw_motions(rng, ACTIONS[index % len(ACTIONS)])
    track = motion_track(rng, motions, num_frames)
    return render(scene, track, config.size, rng), sorted(m for m in motions.values() if m)


def _readme(config: SynthConfig, summary: dict) -> str:
    lines = [
        "cnnlstm synthetic multi-label dataset (written by cnnlstm.data.synth.synthesize, task=multilabel)",
        "",
        "Each video shows one object (random shape, colour and size) on a plain, lightly noisy background",
        "doing several motions at once: one horizontal (left, right or none), one vertical (up, down or",
        "none), one change of size (grow, shrink or none) and blinking or not. Its labels are the motions",
        "it does (1-4, about 2.5 on average). A motion is a change between frames: one frame cannot tell",
        "it, a temporal model can.",
        "",
        "Classes:",
        *(f"  {cls:11s} {DESCRIPTIONS[cls]}" for cls in ACTIONS),
        "",
        f"{split_counts(summary)}, {config.size}x{config.size} px, "
        f"{config.min_frames}-{config.max_frames} frames at {config.fps} fps,",
        "containers/codecs: " + ", ".join(f"{ext} {codec}" for ext, codec in config.formats) + ".",
        "",
        f"Files: videos/<split>_<index>.<ext>; {split_list(summary, '.csv')} (path,labels; labels separated by "
        f"'{SEPARATOR}',",
        "paths relative to this folder) are the split; classes.txt lists the classes.",
        "dataset.json also holds each video's labels.",
        "",
    ]
    return "\n".join(lines)


def synthesize_multilabel(out_dir: str | os.PathLike, config: SynthConfig, *, progress: bool = False) -> dict:
    """Write the multi-label dataset into ``out_dir``; returns ``classes``, ``train``, ``test``
    (video counts), ``out``, ``train_csv``, ``test_csv`` and ``seconds`` (``val``, ``val_csv`` too
    with a val split).

    ``config.videos_per_class * 7`` train, ``config.test_per_class * 7`` test and
    ``config.val_per_class * 7`` val videos; an earlier synthesize() output in the folder is
    replaced, a folder holding other files is refused.
    """
    start = time.perf_counter()
    out = prepare_output(out_dir, config)
    plan = numbered_plan(config, len(ACTIONS))
    meta = start_output(out, config, "multilabel", classes=list(ACTIONS))
    for video in progress_bar(plan, progress):
        frames, labels = render_video(config, video["split"], video["index"])  # (T, H, W, 3)
        write_video(out / video["path"], frames, fps=config.fps, codec=video["codec"],
                    options=CODEC_OPTIONS.get(video["codec"]))
        video.update(frames=len(frames), labels=labels)
    for name, _ in split_sizes(config):
        write_csv(out / f"{name}.csv", ["path", "labels"],
                  [(v["path"], SEPARATOR.join(v["labels"])) for v in plan if v["split"] == name])
    (out / "classes.txt").write_text("".join(f"{cls}\n" for cls in ACTIONS))
    return finish_output(out, plan, meta, lambda summary: _readme(config, summary), start,
                         meta_extra={"descriptions": DESCRIPTIONS}, classes=list(ACTIONS))


__all__ = ["ACTIONS", "KINDS", "DESCRIPTIONS", "draw_motions", "motion_track", "render_video",
           "synthesize_multilabel"]
