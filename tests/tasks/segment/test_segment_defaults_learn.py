"""`--task segment` with the shipped defaults learns per-frame labels on untrimmed videos built unlike the
demo's (issue 11): a disc on a textured, non-square frame rests, then moves left or right, grows or
shrinks, rests again; 36-48 frames a video, two containers. Only what a first run sets is given.

Measured with this data (40 epochs, seeds 0-3): best val F1@50 0.49 / 0.65 / 0.57 / 0.61 with the defaults
(the LSTM reads feature changes, MS-TCN's smoothing loss, evenly spaced samples, the label cleaning picked on
val: windows 1-7, runs of 3 frames or more); with a fixed 5-frame filter 0.48 / 0.62 / 0.55 / 0.57; with
temporal jitter and a 3-frame filter 0.36 / 0.56 / 0.61 / 0.55, and without the feature changes and the
smoothing loss as well 0.19 / 0.30 / 0.24 / 0.22 (``feature_diff=False, tmse=0``).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from cnnlstm.config import TrainConfig
from cnnlstm.data.video.encode import write_video
from cnnlstm.train import fit

H, W, FPS = 36, 48, 12
ACTIONS = ("left", "right", "grow", "shrink")
STEP = {"left": (-1.5, 0.0), "right": (1.5, 0.0), "grow": (0.0, 0.6), "shrink": (0.0, -0.6)}  # px/frame: x, radius


def render(rng: np.random.Generator, t: int) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """(t, H, W, 3) uint8 frames and their segments (start s, end s, action); frames between actions rest."""
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    background = rng.uniform(40, 160, 3) + 30 * np.sin(xs[..., None] / rng.uniform(4, 9) + rng.uniform(0, 6, 3))
    x, radius, cy = W / 2 + rng.uniform(-4, 4), 6.0, H / 2 + rng.uniform(-3, 3)
    path = np.empty((t, 2), np.float32)  # (x, radius) per frame
    segments, i = [], int(rng.integers(3, 7))
    path[:i] = x, radius
    while i < t - 8:
        action, n = ACTIONS[int(rng.integers(0, 4))], min(int(rng.integers(8, 13)), t - i)
        for k in range(n):
            x = float(np.clip(x + STEP[action][0], 8, W - 8))
            radius = float(np.clip(radius + STEP[action][1], 3, 12))
            path[i + k] = x, radius
        segments.append((i / FPS, (i + n) / FPS, action))
        i += n
        rest = int(rng.integers(4, 8))
        path[i:i + rest] = x, radius
        i += rest
    path[i:] = x, radius
    colour = rng.uniform(180, 255, 3)
    disc = np.clip(path[:, 1, None, None] + 0.5 - np.hypot(xs - path[:, 0, None, None], ys - cy), 0, 1)[..., None]
    frames = background * (1 - disc) + colour * disc  # (t, H, W, 3)
    return np.clip(frames + rng.normal(0, 4, frames.shape), 0, 255).astype(np.uint8), segments


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("untrimmed")
    rng = np.random.default_rng(7)
    for split, videos in (("train", 32), ("val", 12)):
        rows = []
        for i in range(videos):
            ext, codec = ((".mp4", "libx264"), (".mkv", "ffv1"))[i % 2]
            path = root / "videos" / f"{split}_{i}{ext}"
            path.parent.mkdir(exist_ok=True)
            frames, segments = render(rng, int(rng.integers(36, 49)))
            write_video(path, frames, fps=FPS, codec=codec)
            rows += [{"video": str(path), "start": round(s, 3), "end": round(e, 3), "label": a} for s, e, a in segments]
        with (root / f"{split}.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["video", "start", "end", "label"])
            writer.writeheader()
            writer.writerows(rows)
    return root


def test_the_shipped_segment_defaults_learn_on_unseen_untrimmed_videos(data, tmp_path):
    cfg = TrainConfig(task="segment", data=str(data / "train.csv"), val=str(data / "val.csv"),
                      out=str(tmp_path / "run"), backbone="test_tiny", frames=24, size=32, epochs=40, seed=0,
                      workers=0, progress=False)
    lines: list[str] = []
    fit(cfg, log=lines.append)
    epochs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
              if '"epoch_s"' in line]
    best = max(e["val_f1@50"] for e in epochs)  # the defaults: 0.49 at seed 0; before their parts 0.19
    assert best >= 0.3, f"best val F1@50 {best:.2f} (background alone: 0):\n" + "\n".join(lines[-12:])
