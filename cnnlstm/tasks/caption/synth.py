"""Synthetic video captioning: one object doing two actions in a row, described in order.

``synthesize(out, SynthConfig(task="caption"))`` (or :func:`synthesize_caption`) writes::

    OUT/videos/train_0000.mp4 ...        several containers and codecs, cycled
    OUT/train.csv, OUT/test.csv          ``video,caption``, 3 rows (paraphrases) per video, paths relative to OUT
    OUT/val.csv                          the same, with ``SynthConfig.val_per_class`` (videos val_0000...)
    OUT/dataset.json, OUT/README.txt     what was generated and how

Each video shows one object, a colour of ``COLORS`` (the rendered RGB is the named one) and a
shape of ``SHAPES``, on a plain grey background picked for contrast, doing two different actions
of ``ACTIONS`` one after the other (first half, second half of the clip), e.g. "a red square moves
left then shrinks". The reverse order is a different caption, so the words are easy (colour and
shape are visible in any frame) but their order needs the order of the frames.

Letters: T frames, H/W height/width.
"""
from __future__ import annotations

import itertools
import os
import time

import numpy as np

from ...data.synth import SynthConfig
from ...data.synth.draw import PALETTE, SHAPES, Scene, Track, luma, render
from ...data.synth.output import (
    CODEC_OPTIONS,
    SPLITS,
    finish_output,
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
from .text import tokenize

# name -> RGB
COLORS = dict(zip(("red", "green", "blue", "yellow"), (tuple(map(float, c)) for c in PALETTE[:4]), strict=True))
ACTIONS = ("moves left", "moves right", "moves up", "moves down", "grows", "shrinks")
PAIRS = tuple(itertools.permutations(ACTIONS, 2))  # 30 ordered pairs of different actions
TEMPLATES = (
    "a {color} {shape} {first} then {second}",
    "the {color} {shape} {first} and then {second}",
    "a {color} {shape} first {first} then {second}",
)
_MOVE = {"moves left": (-1, 0), "moves right": (1, 0), "moves up": (0, -1), "moves down": (0, 1)}  # image y grows down
_SCALE = {"grows": 1.8, "shrinks": 1 / 1.8}
_MARGIN = 0.02  # the object stays this far (fraction of the side) inside the frame


def captions_for(color: str, shape: str, first: str, second: str) -> list[str]:
    """The reference captions (paraphrases) of one video."""
    return [t.format(color=color, shape=shape, first=first, second=second) for t in TEMPLATES]


def plan_track(rng: np.random.Generator, num_frames: int, first: str, second: str) -> Track:
    """Positions and sizes, shape (T,) each: ``first`` over the first half, ``second`` over the rest."""
    u = np.linspace(0.0, 2.0, num_frames)
    progress = (np.clip(u, 0, 1), np.clip(u - 1, 0, 1))  # (T,) each: how far each action has gone
    r0, distance = rng.uniform(0.08, 0.11), rng.uniform(0.25, 0.32)
    dx = sum(_MOVE.get(a, (0, 0))[0] * distance * p for a, p in zip((first, second), progress, strict=True))  # (T,)
    dy = sum(_MOVE.get(a, (0, 0))[1] * distance * p for a, p in zip((first, second), progress, strict=True))  # (T,)
    r = r0 * np.prod([_SCALE.get(a, 1.0) ** p for a, p in zip((first, second), progress, strict=True)], axis=0)  # (T,)
    margin = r.max() + _MARGIN
    x0 = rng.uniform(margin - dx.min(), 1 - margin - dx.max())
    y0 = rng.uniform(margin - dy.min(), 1 - margin - dy.max())
    return Track(x=x0 + dx, y=y0 + dy, r=r, alpha=np.ones(num_frames))


def _scene(rng: np.random.Generator, color: str, shape: str) -> Scene:
    """The named colour on the dark or light grey farther from it in luma, light noise."""
    rgb = np.asarray(COLORS[color], np.float32)  # (3,)
    dark, light = rng.uniform(10, 45), rng.uniform(210, 245)
    grey = max((dark, light), key=lambda g: abs(g - luma(rgb)))  # a grey's luma is its value
    return Scene(shape, tuple(map(float, rgb)), (grey, grey, grey), float(rng.uniform(0, 5)))


def render_video(config: SynthConfig, split: str, index: int, pair: tuple[str, str]) -> tuple[np.ndarray, dict]:
    """Video ``index`` of ``split`` doing ``pair``: frames uint8 (T, H, W, 3) and what it shows."""
    rng = video_rng(config, split, index, 3)  # 3: this task's stream
    num_frames = int(rng.integers(config.min_frames, config.max_frames + 1))
    color = list(COLORS)[rng.integers(len(COLORS))]
    shape = SHAPES[rng.integers(len(SHAPES))]
    track = plan_track(rng, num_frames, *pair)
    frames = render(_scene(rng, color, shape), track, config.size, rng)  # (T, H, W, 3)
    return frames, dict(frames=num_frames, color=color, shape=shape, actions=list(pair))


def _readme(config: SynthConfig, summary: dict) -> str:
    lines = [
        "cnnlstm synthetic video captioning dataset (written by cnnlstm.data.synth.synthesize, task=caption)",
        "",
        f"Each video shows one object ({', '.join(COLORS)}; {', '.join(SHAPES)}) on a plain grey background",
        f"doing two different actions in a row ({', '.join(ACTIONS)}): the first over the first half",
        "of the clip, the second over the rest. Its captions name them in that order, e.g.",
        f"  {captions_for('red', 'square', 'moves left', 'shrinks')[0]!r}",
        "so the same two actions in the other order make a different caption: a captioner needs the",
        "order of the frames. Every video has these paraphrases:",
        *(f"  {t}" for t in TEMPLATES),
        "",
        f"{split_counts(summary)}, {config.size}x{config.size} px, "
        f"{config.min_frames}-{config.max_frames} frames at {config.fps} fps,",
        "containers/codecs: " + ", ".join(f"{ext} {codec}" for ext, codec in config.formats) + ".",
        f"vocabulary ({len(summary['vocabulary'])} words): {' '.join(summary['vocabulary'])}",
        "",
        f"Files: videos/<split>_<index>.<ext>; {split_list(summary, '.csv')} (video,caption, one row per caption,",
        "paths relative to this folder) are the split; dataset.json lists each video's colour, shape, actions.",
        "",
    ]
    return "\n".join(lines)


def synthesize_caption(out_dir: str | os.PathLike, config: SynthConfig, *, progress: bool = False) -> dict:
    """Write the captioning dataset into ``out_dir``; returns ``train``, ``test`` (video counts),
    ``out``, ``train_csv``, ``test_csv``, ``seconds``, ``vocabulary`` (sorted words) and
    ``classes`` (the six actions the captions describe); ``val``, ``val_csv`` too with a val split.

    ``config.videos_per_class * 6`` train, ``config.test_per_class * 6`` test and
    ``config.val_per_class * 6`` val videos; each split cycles through the 30 ordered action pairs
    in a shuffled order. An earlier synthesize() output in the folder is replaced, a folder holding
    other files is refused.
    """
    start = time.perf_counter()
    out = prepare_output(out_dir, config)
    plan = []
    for split, per_class in split_sizes(config):
        order = np.random.default_rng([config.seed, SPLITS[split], 3]).permutation(len(PAIRS))
        for index in range(per_class * len(ACTIONS)):
            ext, codec = config.formats[index % len(config.formats)]
            pair = PAIRS[order[index % len(PAIRS)]]
            plan.append(dict(path=f"videos/{split}_{index:04d}{ext.lower()}", split=split, index=index, codec=codec,
                             pair=pair))
    meta = start_output(out, config, "caption")

    rows = {name: [] for name, _ in split_sizes(config)}
    words = set()
    for video in progress_bar(plan, progress):
        frames, info = render_video(config, video["split"], video["index"], video.pop("pair"))  # (T, H, W, 3)
        write_video(out / video["path"], frames, fps=config.fps, codec=video["codec"],
                    options=CODEC_OPTIONS.get(video["codec"]))
        video.update(info, captions=captions_for(info["color"], info["shape"], *info["actions"]))
        rows[video["split"]] += [(video["path"], caption) for caption in video["captions"]]
        words.update(word for caption in video["captions"] for word in tokenize(caption))
    for name, split_rows in rows.items():
        write_csv(out / f"{name}.csv", ["video", "caption"], split_rows)
    return finish_output(out, plan, meta, lambda summary: _readme(config, summary), start,
                         meta_extra={"vocabulary": sorted(words)}, classes=list(ACTIONS), vocabulary=sorted(words))


__all__ = ["ACTIONS", "COLORS", "PAIRS", "TEMPLATES", "captions_for", "plan_track", "render_video",
           "synthesize_caption"]
