"""Timelines of per-frame labels: coloured segments, one row per labelling (ground truth, prediction).

matplotlib is optional and imported on first use (the conventions of :mod:`cnnlstm.viz`).
Letters: T frames, K classes.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ... import viz


def plot_timeline(labels_rows: Mapping[str, Any], classes: Sequence[str], path: str | os.PathLike, *,
                  title: str | None = None) -> str:
    """Per-frame labels as colored segments, one row per name ("ground truth", "prediction", ...).

    Each value is a sequence of class indices over frames; negative means unlabelled (light gray).
    """
    if not labels_rows:
        raise ValueError("plot_timeline needs at least one row; got an empty mapping")
    k = len(classes)
    rows = {}
    for name, labels in labels_rows.items():
        lab = viz.as_numpy(labels)
        if lab.ndim != 1 or (lab.size and not np.array_equal(lab, np.round(lab))):
            raise ValueError(f"row {name!r} must be 1-D integer labels over frames; got shape {lab.shape}")
        lab = lab.astype(np.int64)
        if lab.size and lab.max() >= k:
            raise ValueError(f"row {name!r} has label {lab.max()} but only {k} classes are named")
        rows[str(name)] = lab
    t_max = max(1, *(len(v) for v in rows.values()))
    palette = viz.class_colors(max(k, 1))
    fig = viz.figure(min(16.0, max(6.0, t_max / 20 + 4)), 0.6 * len(rows) + 1.8)
    ax = fig.subplots()
    present: set[int] = set()
    for r, lab in enumerate(rows.values()):
        y = len(rows) - 1 - r  # first row on top
        cuts = np.flatnonzero(np.diff(lab)) + 1
        starts, ends = np.r_[0, cuts], np.r_[cuts, len(lab)]
        for c in np.unique(lab):  # one artist per (row, class), however many segments
            sel = lab[starts] == c
            ax.broken_barh(list(zip(starts[sel], ends[sel] - starts[sel], strict=True)), (y - 0.4, 0.8),
                           facecolors=palette[c] if c >= 0 else "0.9")
            present.add(int(c))
    ax.set_yticks(range(len(rows)), list(rows)[::-1])
    ax.set(xlim=(0, t_max), ylim=(-0.6, len(rows) - 0.4), xlabel="frame")
    if title:
        ax.set_title(title)
    from matplotlib.patches import Patch

    handles = [Patch(color=palette[c], label=str(classes[c])) for c in sorted(present) if c >= 0]
    if any(c < 0 for c in present):
        handles.append(Patch(color="0.9", label="unlabelled"))
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=min(6, len(handles)), fontsize=8)
    return viz.save(fig, path)


__all__ = ["plot_timeline"]
