"""Plots shared by the package (training curves, frame strips, bars, lines) and the helpers the
tasks' own plots build on (``cnnlstm.tasks.*.viz``); each plot writes one PNG and returns its path.

matplotlib is optional (``pip install 'cnnlstm[plot]'``) and imported on first use. Figures are
built as ``matplotlib.figure.Figure`` objects rather than through pyplot, so they render with Agg
whatever backend a user's session has, never open a window, are never registered with pyplot
(nothing to close, nothing leaks) and are safe to make from worker threads.

Letters: T frames, C channels, H/W height/width, K classes.
"""
from __future__ import annotations

import math
import numbers
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._optional import require

__all__ = ["plot_curves", "plot_frame_strip", "plot_bars", "plot_lines", "figure", "save", "as_numpy", "class_colors",
           "percent_axis", "clip_frames", "strip_layout", "draw_thumbnails", "plot_timeline_strip"]

_DPI = 100


def figure(width: float, height: float):
    require("matplotlib", purpose="plots")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=_DPI, layout="constrained")


def save(fig, path: str | os.PathLike) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=_DPI)
    fig.clear()
    return str(path)


def as_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def class_colors(k: int) -> list:
    """One color per class, the same in every plot (tab10/tab20, then evenly spaced turbo)."""
    import matplotlib

    if k <= 20:
        cmap = matplotlib.colormaps["tab10" if k <= 10 else "tab20"]
        return [cmap(i) for i in range(k)]
    cmap = matplotlib.colormaps["turbo"]
    return [cmap(i / (k - 1)) for i in range(k)]


def percent_axis(ax) -> None:
    from matplotlib.ticker import PercentFormatter

    ax.yaxis.set_major_formatter(PercentFormatter(1.0))


def _number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _curve_x(rows: Sequence[Mapping]) -> tuple[list[float], str]:
    """x per row: the epoch (rows sharing one are spread over (e-1, e]), else the step, else the index."""
    if any(_number(r.get("epoch")) for r in rows):
        epochs, last = [], 0.0
        for r in rows:  # a row without an epoch belongs to the one before it
            last = float(r["epoch"]) if _number(r.get("epoch")) else last
            epochs.append(last)
        total, seen = Counter(epochs), Counter()
        xs = []
        for e in epochs:
            seen[e] += 1
            xs.append(e - 1 + seen[e] / total[e])
        return xs, "epoch"
    if all(_number(r.get("step")) for r in rows):
        return [float(r["step"]) for r in rows], "step"
    return [float(i) for i in range(len(rows))], "row"


def _shade_phases(axes, rows: Sequence[Mapping], xs: list[float]) -> None:
    """Alternate background bands and a dashed line at each change of ``phase``."""
    runs: list[list] = []  # [phase, first x, last x]
    phase = None
    for r, x in zip(rows, xs, strict=True):
        phase = r.get("phase", phase)
        if runs and runs[-1][0] == phase:
            runs[-1][2] = x
        else:
            runs.append([phase, x, x])
    if len(runs) < 2:
        return
    cuts = [(a[2] + b[1]) / 2 for a, b in zip(runs, runs[1:], strict=False)]
    lo, hi = [min(xs)] + cuts, cuts + [max(xs)]
    for i, (name, _, _) in enumerate(runs):
        for ax in axes:
            if i % 2:
                ax.axvspan(lo[i], hi[i], color="0.92", zorder=0, lw=0)
            if i:
                ax.axvline(lo[i], color="0.5", ls="--", lw=0.8, zorder=1)
        if name is not None:
            axes[0].text(lo[i], 1.0, f" {name}", transform=axes[0].get_xaxis_transform(),
                         va="bottom", ha="left", fontsize=8, color="0.35")


def plot_curves(rows: Sequence[Mapping], path: str | os.PathLike, *, loss_keys: Sequence[str] | None = None,
                score_keys: Sequence[str] | None = None) -> str:
    """Loss and accuracy vs epoch from ``metrics.jsonl`` rows; any key may be missing in a row.

    By default the loss panel shows keys ending in ``loss`` (plus ``lr`` on a log axis) and the
    score panel shows keys containing ``top``/``acc``/``map`` or ending in ``f1``. Changes of ``phase``
    are shaded and labelled.
    """
    rows = list(rows)
    if not rows:
        raise ValueError("plot_curves needs at least one row; got none")
    keys = sorted({k for r in rows for k, v in r.items() if _number(v)})
    loss_keys = list(loss_keys) if loss_keys is not None else [k for k in keys if k.endswith("loss")]
    score_keys = list(score_keys) if score_keys is not None else [
        k for k in keys if ("top" in k or "acc" in k or "map" in k or k.endswith("f1")) and k not in loss_keys]
    xs, xlabel = _curve_x(rows)

    def series(key: str) -> tuple[list[float], list[float]]:
        pts = [(x, float(r[key])) for x, r in zip(xs, rows, strict=True) if _number(r.get(key))]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig = figure(10, 4)
    ax_loss, ax_score = fig.subplots(1, 2)
    for ax, panel, ylabel in ((ax_loss, loss_keys, "loss"), (ax_score, score_keys, "accuracy")):
        drawn = 0
        for key in panel:
            x, y = series(key)
            if x:
                ax.plot(x, y, marker="o" if len(x) <= 30 else None, ms=3, label=key,
                        ls="--" if key.startswith("val") else "-")
                drawn += 1
        if not drawn:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="0.5")
        ax.set(xlabel=xlabel, ylabel=ylabel)
        ax.grid(alpha=0.3)
    x_best, y_best = series("val_top1") if "val_top1" in score_keys else ([], [])
    if y_best:
        i = int(np.argmax(y_best))
        ax_score.plot([x_best[i]], [y_best[i]], marker="*", ms=12, color="gold", mec="k", zorder=5,
                      label=f"best val_top1 {y_best[i]:.1%}")
    if all(0 <= v <= 1 for k in score_keys for v in series(k)[1]):
        percent_axis(ax_score)
    x_lr, y_lr = series("lr")
    handles, labels = ax_loss.get_legend_handles_labels()
    if x_lr:
        ax_lr = ax_loss.twinx()
        line, = ax_lr.plot(x_lr, y_lr, color="0.5", ls=":", drawstyle="steps-post", label="lr")
        if min(y_lr) > 0:
            ax_lr.set_yscale("log")
        ax_lr.set_ylabel("lr", color="0.4")
        handles, labels = handles + [line], labels + ["lr"]
    for ax, (hs, ls) in ((ax_loss, (handles, labels)), (ax_score, ax_score.get_legend_handles_labels())):
        if hs:
            ax.legend(hs, ls, fontsize=8)
    _shade_phases([ax_loss, ax_score], rows, xs)
    return save(fig, path)


def clip_frames(frames: Any) -> np.ndarray:
    """uint8 frames (T, C, H, W) with C 1 or 3, checked."""
    f = as_numpy(frames)
    if f.ndim != 4 or f.shape[1] not in (1, 3) or f.shape[0] == 0:
        raise ValueError(f"frames must be (T, C, H, W) with T >= 1 and C in (1, 3); got shape {f.shape}")
    if f.dtype != np.uint8:
        raise TypeError(f"frames must be uint8 (the decoded clip, before normalization); got {f.dtype}")
    return f


def strip_layout(f: np.ndarray, max_frames: int) -> tuple[np.ndarray, float, float]:
    """Indices of up to ``max_frames`` evenly spaced frames, the figure width and the strip height (inches)."""
    t, _, h, w = f.shape
    idx = np.unique(np.linspace(0, t - 1, min(t, max_frames)).round().astype(int))
    n = len(idx)
    width = min(16.0, max(6.0, n * min(max(1.3 * w / h, 0.6), 3.0)))
    return idx, width, min(max(width / n * h / w + 0.3, 1.0), 4.0)


def draw_thumbnails(fig, grid, f: np.ndarray, idx: np.ndarray) -> None:
    """One thumbnail per index in the first row of ``grid``, titled with the frame index."""
    for j, i in enumerate(idx):
        ax = fig.add_subplot(grid[0, j])
        img = f[i].transpose(1, 2, 0)  # (H, W, C)
        ax.imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray", vmin=0, vmax=255)
        ax.set_axis_off()
        ax.set_title(f"t={i}", fontsize=8)


def plot_frame_strip(frames: Any, path: str | os.PathLike, *, weights: Any = None, scores: Any = None,
                     classes: Sequence[str] | None = None, title: str | None = None, max_frames: int = 16) -> str:
    """Thumbnails of up to ``max_frames`` evenly spaced frames, above per-frame panels.

    ``frames`` uint8 (T, C, H, W) with C 1 or 3. ``weights`` (T,) draws a bar chart (temporal
    attention; shown frames darker); ``scores`` (T, K) draws per-frame class probabilities for
    the 6 classes with the highest mean score.
    """
    f = clip_frames(frames)
    if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1:
        raise ValueError(f"max_frames must be a positive integer; got {max_frames!r}")
    t = f.shape[0]
    w_arr = None if weights is None else as_numpy(weights).astype(float).reshape(-1)
    if w_arr is not None and w_arr.shape != (t,):
        raise ValueError(f"weights must be (T,) with T={t} like frames; got shape {as_numpy(weights).shape}")
    s_arr = None if scores is None else as_numpy(scores).astype(float)
    if s_arr is not None and (s_arr.ndim != 2 or s_arr.shape[0] != t):
        raise ValueError(f"scores must be (T, K) with T={t} like frames; got shape {s_arr.shape}")
    if s_arr is not None and classes is not None and len(classes) != s_arr.shape[1]:
        raise ValueError(f"got {len(classes)} class names for scores with K={s_arr.shape[1]}")

    idx, width, strip_h = strip_layout(f, max_frames)
    n = len(idx)
    panels = [p for p, a in (("weights", w_arr), ("scores", s_arr)) if a is not None]
    fig = figure(width, strip_h + 2.2 * len(panels) + (0.4 if title else 0))
    grid = fig.add_gridspec(1 + len(panels), n, height_ratios=[strip_h] + [2.2] * len(panels))
    draw_thumbnails(fig, grid, f, idx)
    for row, panel in enumerate(panels, start=1):
        ax = fig.add_subplot(grid[row, :])
        if panel == "weights":
            colors = np.full(t, "#9ecae1", dtype=object)
            colors[idx] = "#3182bd"
            ax.bar(np.arange(t), w_arr, color=list(colors), width=0.85)
            ax.set_ylabel("attention")
        else:
            k = s_arr.shape[1]
            names = list(classes) if classes is not None else [f"class {c}" for c in range(k)]
            palette = class_colors(k)
            for c in np.argsort(-s_arr.mean(axis=0), kind="stable")[:6]:
                ax.plot(np.arange(t), s_arr[:, c], color=palette[c], marker="o" if t <= 32 else None, ms=3,
                        label=str(names[c]))
            if s_arr.min() >= 0 and s_arr.max() <= 1:
                ax.set_ylim(0, 1.02)
                percent_axis(ax)
            ax.set_ylabel("probability")
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5),
                      title=f"top {min(6, k)} of {k}" if k > 6 else None, title_fontsize=7)
        ax.set_xlim(-0.5, t - 0.5)
        ax.set_xlabel("frame")
        ax.grid(alpha=0.3, axis="y")
    if title:
        fig.suptitle(title)
    return save(fig, path)


def plot_bars(values: Mapping[str, float], path: str | os.PathLike, *, title: str, ylabel: str,
              fmt: str = "{:.1%}") -> str:
    """One labelled bar per name (e.g. top-1 per model); values printed on the bars with ``fmt``."""
    if not values:
        raise ValueError("plot_bars needs at least one value; got an empty mapping")
    names, vals = [str(k) for k in values], [float(v) for v in values.values()]
    fig = figure(max(4.0, 0.8 * len(names) + 2), 4)
    ax = fig.subplots()
    bars = ax.bar(range(len(names)), vals, color=class_colors(len(names)))
    ax.bar_label(bars, labels=[fmt.format(v) for v in vals], padding=2, fontsize=8)
    slanted = len(names) > 4 or max(map(len, names)) > 10
    ax.set_xticks(range(len(names)), names, rotation=30 if slanted else 0, ha="right" if slanted else "center",
                  rotation_mode="anchor")
    if "%" in fmt and all(0 <= v <= 1 for v in vals):
        ax.set_ylim(0, 1.1)
        percent_axis(ax)
    else:
        ax.margins(y=0.15)
    ax.set(title=title, ylabel=ylabel)
    ax.grid(alpha=0.3, axis="y")
    return save(fig, path)


def plot_lines(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], path: str | os.PathLike, *, title: str,
               xlabel: str, ylabel: str, logx: bool = False, logy: bool = False) -> str:
    """One marked line per name, ``{name: (xs, ys)}`` (e.g. latency vs clip length per model)."""
    if not series:
        raise ValueError("plot_lines needs at least one series; got an empty mapping")
    fig = figure(6, 4)
    ax = fig.subplots()
    for color, (name, (xs, ys)) in zip(class_colors(len(series)), series.items(), strict=True):
        ax.plot(list(xs), [max(float(y), 1e-6) if logy else float(y) for y in ys], marker="o", label=str(name),
                color=color)
    if logx:
        ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return save(fig, path)


def plot_timeline_strip(thumbs: Mapping[float, Any], tracks: Mapping[str, Sequence[tuple[float, float, str]]],
                        names: Sequence[str], duration: float, path: str | os.PathLike, *,
                        title: str | None = None) -> str:
    """A long video at a glance: thumbnails ``{seconds: uint8 (C, H, W)}`` in a strip, above one
    row per track of labelled spans ``(start, end, label)`` in seconds (windows, segments), coloured
    by the label's position in ``names``."""
    if not thumbs or not tracks:
        raise ValueError("plot_timeline_strip needs at least one thumbnail and one track")
    times = sorted(thumbs)
    f = clip_frames(torch.stack([torch.as_tensor(thumbs[t]) for t in times]))  # (n, C, H, W)
    idx, width, strip_h = strip_layout(f, len(times))
    fig = figure(width, strip_h + 0.6 * len(tracks) + 1.6)
    grid = fig.add_gridspec(2, len(idx), height_ratios=[strip_h, 0.6 * len(tracks) + 0.8])
    draw_thumbnails(fig, grid, f, idx)
    for j, i in enumerate(idx):
        fig.axes[j].set_title(f"{times[i]:.1f} s", fontsize=8)
    ax = fig.add_subplot(grid[1, :])
    palette = class_colors(max(len(names), 1))
    color = {name: palette[k] for k, name in enumerate(names)}
    for r, spans in enumerate(tracks.values()):
        y = len(tracks) - 1 - r  # first track on top
        for label in dict.fromkeys(s[2] for s in spans):  # one artist per (track, label)
            bars = [(s[0], s[1] - s[0]) for s in spans if s[2] == label]
            ax.broken_barh(bars, (y - 0.4, 0.8), facecolors=color.get(label, "0.7"), edgecolors="white", linewidth=0.3)
    ax.set_yticks(range(len(tracks)), list(tracks)[::-1])
    ax.set(xlim=(0, max(duration, 1e-6)), ylim=(-0.6, len(tracks) - 0.4), xlabel="seconds")
    from matplotlib.patches import Patch

    shown = list(dict.fromkeys(s[2] for spans in tracks.values() for s in spans))
    handles = [Patch(color=color.get(label, "0.7"), label=str(label)[:40]) for label in shown[:12]]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(6, len(handles)), fontsize=8)
    if title:
        fig.suptitle(title)
    return save(fig, path)
