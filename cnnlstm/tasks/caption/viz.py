"""Plot where a captioner looked: the frames on top, word-by-frame attention below.

matplotlib is optional and imported on first use (the conventions of :mod:`cnnlstm.viz`).
Letters: T frames, C channels, H/W height/width, N generated tokens.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

from ... import viz

__all__ = ["plot_caption_attention"]


def plot_caption_attention(frames: Any, words: Sequence[str], attention: Any, path: str | os.PathLike, *,
                           title: str | None = None, max_frames: int = 16) -> str:
    """Write a PNG: up to ``max_frames`` evenly spaced frames, then a heat map of ``attention``
    (one row per generated word, one column per frame); the caption (or ``title``) on top.

    ``frames`` uint8 (T, C, H, W) with C 1 or 3; ``attention`` (N, T) with N = len(words), or
    len(words) + 1 when its last row produced ``<eos>`` (as :mod:`cnnlstm.tasks.caption.generate` returns it).
    """
    f = viz.clip_frames(frames)
    t = f.shape[0]
    a = viz.as_numpy(attention).astype(float)
    rows = list(words)
    if a.ndim != 2 or a.shape[1] != t or a.shape[0] not in (len(rows), len(rows) + 1) or a.shape[0] == 0:
        raise ValueError(
            f"attention must be (N, T) with T={t} like frames and N={len(rows)} words (or {len(rows) + 1} with <eos>); "
            f"got shape {a.shape}"
        )
    if a.shape[0] == len(rows) + 1:
        rows.append("<eos>")

    idx, width, strip_h = viz.strip_layout(f, max_frames)
    n = len(idx)
    map_h = max(1.5, 0.3 * len(rows) + 0.8)
    fig = viz.figure(width, strip_h + map_h + 0.4)
    grid = fig.add_gridspec(2, n, height_ratios=[strip_h, map_h])
    viz.draw_thumbnails(fig, grid, f, idx)
    ax = fig.add_subplot(grid[1, :])
    image = ax.imshow(a, aspect="auto", cmap="viridis", vmin=0.0, vmax=max(float(a.max()), 1e-6),
                      interpolation="nearest")
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xticks(idx if t > max_frames else range(t))
    ax.set_xlabel("frame")
    fig.colorbar(image, ax=ax, label="attention", fraction=0.04)
    fig.suptitle(title if title is not None else " ".join(words) or "(empty caption)")
    return viz.save(fig, path)
