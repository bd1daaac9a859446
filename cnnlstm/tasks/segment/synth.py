"""Synthetic temporal action segmentation videos: one object doing several actions in a row.

``synthesize(out, SynthConfig(task="segment"))`` (or :func:`synthesize_segment`) writes::

    OUT/videos/train_0000.mp4 ...        several containers and codecs, cycled
    OUT/train.csv, OUT/test.csv          segments ``video,start,end,label`` in seconds, paths relative to OUT
    OUT/val.csv                          the same, with ``SynthConfig.val_per_class`` (videos val_0000...)
    OUT/classes.txt                      background first, then the actions sorted
    OUT/dataset.json, OUT/README.txt     what was generated (with every frame's label) and how

Each video shows one object that performs 2-4 actions (``ACTIONS``), each at least
``MIN_SEGMENT`` frames, with still ("background") frames before, between and after them. An
action is a per-frame change of position or size, so one frame cannot tell which action it
belongs to: only the change between frames (a temporal model) can. Frame ``i`` of an action
shows the object one step further than frame ``i - 1``; a still frame repeats the last state
(only the background noise changes). ``load_segments(OUT / "train.csv")`` reads the splits.

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

BACKGROUND = "background"
ACTIONS = ("grow", "move_down", "move_left", "move_right", "move_up", "shrink")
CLASSES = (BACKGROUND, *ACTIONS)  # label-index order: background is 0
DESCRIPTIONS = {
    BACKGROUND: "the object stands still",
    "move_left": "the object moves left",
    "move_right": "the object moves right",
    "move_up": "the object moves up",
    "move_down": "the object moves down",
    "grow": "the object grows",
    "shrink": "the object shrinks",
}
MIN_SEGMENT = 4  # frames of one action, at least
LENGTH_SCALE = 2  # lengths are SynthConfig.min_frames..max_frames times this (a sequence needs room)

_MARGIN = 0.02  # the object stays this far (fraction of the side) inside the frame
_MIN_R, _MAX_R = 0.05, 0.24  # half-size range
_RATE = {"move": (0.02, 0.05), "size": (0.008, 0.016)}  # per-frame change (min, max), fraction of the side


def _room(action: str, x: float, y: float, r: float) -> float:
    """How far ``action`` can go from state (x, y, r) before the object leaves the frame or the size range."""
    if action == "move_left":
        return x - r - _MARGIN
    if action == "move_right":
        return 1 - _MARGIN - r - x
    if action == "move_up":  # image y grows downwards
        return y - r - _MARGIN
    if action == "move_down":
        return 1 - _MARGIN - r - y
    if action == "grow":
        return min(_MAX_R, x - _MARGIN, 1 - _MARGIN - x, y - _MARGIN, 1 - _MARGIN - y) - r
    return r - _MIN_R  # shrink


def _kind(action: str) -> str:
    return "move" if action.startswith("move") else "size"


def _split(total: int, parts: int, rng: np.random.Generator) -> list[int]:
    """``total`` split into ``parts`` random non-negative integers."""
    return rng.multinomial(total, rng.dirichlet(np.ones(parts))).tolist()


_STEP = {"move_left": (-1, 0, 0), "move_right": (1, 0, 0), "move_up": (0, -1, 0), "move_down": (0, 1, 0),
         "grow": (0, 0, 1), "shrink": (0, 0, -1)}  # direction of (x, y, r) per frame


def plan_actions(rng: np.random.Generator, num_frames: int,
                 first: str | None = None) -> tuple[Track, list[int], list[dict]]:
    """Draw one video's actions: its track (T,), per-frame class indices (T,), and the action
    segments ``{"label", "start", "end"}`` in frames (end exclusive). ``first`` asks for that
    action first (from the starting state every action fits)."""
    T = num_frames
    n = int(min(rng.integers(2, 5), max(1, T // (MIN_SEGMENT + 1))))
    still = int(round(T * rng.uniform(0.15, 0.35)))
    moving = max(T - still, n * MIN_SEGMENT)
    lengths = [MIN_SEGMENT + k for k in _split(moving - n * MIN_SEGMENT, n, rng)]
    gaps = _split(T - moving, n + 1, rng)  # still frames: before, between and after the actions

    state = np.array([rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.65), rng.uniform(0.09, 0.14)])  # x, y, r
    states, labels, segments = [state] * gaps[0], [0] * gaps[0], []
    previous = None
    for i, length in enumerate(lengths):
        fits = {a: _room(a, *state) / _RATE[_kind(a)][0] for a in ACTIONS if a != previous}  # frames it can last
        fits = {a: f for a, f in fits.items() if f >= MIN_SEGMENT}
        if not fits:
            break  # boxed in (does not happen from the drawn starting states): the rest stays still
        if first is not None and i == 0 and first in fits:
            action = first
        else:
            roomy = [a for a, f in fits.items() if f >= length] or sorted(fits, key=fits.get)[-1:]
            action = roomy[rng.integers(len(roomy))]
        steps = min(length, int(fits[action]))  # shortened when there is no room; the rest stays still
        lo, hi = _RATE[_kind(action)]
        rate = rng.uniform(lo, max(lo, min(hi, _room(action, *state) / steps)))
        segments.append({"label": action, "start": len(labels), "end": len(labels) + steps})
        for _ in range(steps):
            state = state + rate * np.array(_STEP[action])
            states.append(state)
            labels.append(CLASSES.index(action))
        hold = length - steps + gaps[i + 1]
        states += [state] * hold
        labels += [0] * hold
        previous = action
    hold = T - len(labels)
    states, labels = states + [state] * hold, labels + [0] * hold
    x, y, r = np.stack(states).T  # (T,) each
    return Track(x=x, y=y, r=r, alpha=np.ones(T)), labels, segments


def render_video(config: SynthConfig, split: str, index: int) -> tuple[np.ndarray, list[int], list[dict]]:
    """Video ``index`` of ``split``: frames uint8 (T, H, W, 3), per-frame class indices, action segments."""
    rng = video_rng(config, split, index, 2)  # 2: this task's stream
    num_frames = int(rng.integers(config.min_frames * LENGTH_SCALE, config.max_frames * LENGTH_SCALE + 1))
    scene = sample_scene(rng)
    track, labels, segments = plan_actions(rng, num_frames, first=ACTIONS[index % len(ACTIONS)])
    return render(scene, track, config.size, rng), labels, segments


def _readme(config: SynthConfig, summary: dict) -> str:
    lo, hi = config.min_frames * LENGTH_SCALE, config.max_frames * LENGTH_SCALE
    lines = [
        "cnnlstm synthetic temporal action segmentation dataset "
        "(written by cnnlstm.data.synth.synthesize, task=segment)",
        "",
        "Each video shows one object (random shape, colour, start position and size) on a plain, lightly",
        f"noisy background doing 2-4 actions in a row (each at least {MIN_SEGMENT} frames), with still frames",
        "before, between and after them. An action is a change per frame, so a single frame cannot tell it:",
        "label every frame with a temporal model.",
        "",
        "Classes (label-index order):",
        *(f"  {i}  {cls:12s} {DESCRIPTIONS[cls]}" for i, cls in enumerate(CLASSES)),
        "",
        f"{split_counts(summary)}, {config.size}x{config.size} px, "
        f"{lo}-{hi} frames at {config.fps} fps,",
        "containers/codecs: " + ", ".join(f"{ext} {codec}" for ext, codec in config.formats) + ".",
        "",
        f"Files: videos/<split>_<index>.<ext>; {split_list(summary, '.csv')} list the action segments",
        "(video,start,end,label; start/end in seconds, end exclusive; paths relative to this folder);",
        "frames in no segment are background. Frame i covers [i/fps, (i+1)/fps).",
        "dataset.json also holds every frame's class index per video.",
        "",
    ]
    return "\n".join(lines)


def synthesize_segment(out_dir: str | os.PathLike, config: SynthConfig, *, progress: bool = False) -> dict:
    """Write the segmentation dataset into ``out_dir``; returns ``classes``, ``train``, ``test``
    (video counts), ``out``, ``train_csv``, ``test_csv`` and ``seconds`` (``val``, ``val_csv`` too
    with a val split).

    ``config.videos_per_class * 6`` train, ``config.test_per_class * 6`` test and
    ``config.val_per_class * 6`` val videos; an earlier synthesize() output in the folder is
    replaced, a folder holding other files is refused.
    """
    start = time.perf_counter()
    out = prepare_output(out_dir, config)
    plan = numbered_plan(config, len(ACTIONS))
    meta = start_output(out, config, "segment", classes=list(CLASSES))

    rows = {name: [] for name, _ in split_sizes(config)}
    for video in progress_bar(plan, progress):
        frames, labels, segments = render_video(config, video["split"], video["index"])  # (T, H, W, 3)
        write_video(out / video["path"], frames, fps=config.fps, codec=video["codec"],
                    options=CODEC_OPTIONS.get(video["codec"]))
        video.update(frames=len(labels), labels=labels, segments=segments)
        rows[video["split"]] += [(video["path"], f"{s['start'] / config.fps:.6f}", f"{s['end'] / config.fps:.6f}",
                                  s["label"])
                                 for s in segments]
    for name, split_rows in rows.items():
        write_csv(out / f"{name}.csv", ["video", "start", "end", "label"], split_rows)
    (out / "classes.txt").write_text("".join(f"{cls}\n" for cls in CLASSES))
    return finish_output(out, plan, meta, lambda summary: _readme(config, summary), start,
                         meta_extra={"descriptions": DESCRIPTIONS}, classes=list(CLASSES))


__all__ = ["ACTIONS", "BACKGROUND", "CLASSES", "DESCRIPTIONS", "MIN_SEGMENT", "plan_actions", "render_video",
           "synthesize_segment"]
