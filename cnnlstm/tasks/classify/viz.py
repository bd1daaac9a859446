"""The confusion matrix plot (rows true, columns predicted), as % of the true class.

matplotlib is optional and imported on first use (the conventions of :mod:`cnnlstm.viz`).
Letters: K classes.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ... import viz


def plot_confusion(confusion: Any, classes: Sequence[str], path: str | os.PathLike, *, normalize: bool = True,
                   title: str | None = None) -> str:
    """Confusion matrix (rows true, columns predicted) with annotated cells; rows shown as % of the true class."""
    c = viz.as_numpy(confusion).astype(float)
    if c.ndim != 2 or c.shape[0] != c.shape[1] or c.shape[0] != len(classes):
        raise ValueError(f"confusion must be (K, K) with K=len(classes)={len(classes)}; got shape {c.shape}")
    k = len(classes)
    support = c.sum(axis=1)
    shown = np.divide(c, support[:, None], out=np.zeros_like(c), where=support[:, None] > 0) if normalize else c
    vmax = 1.0 if normalize else max(1.0, float(shown.max(initial=0)))
    names = [str(n) if len(str(n)) <= 18 else str(n)[:17] + "…" for n in classes]
    size = min(max(4.5, 0.32 * k + 2.5), 16)
    fig = viz.figure(size + 1.2, size)
    ax = fig.subplots()
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=vmax)
    ax.set_xticks(range(k), names, rotation=60 if k > 4 else 0, ha="right" if k > 4 else "center",
                  rotation_mode="anchor", fontsize=8 if k > 12 else 10)
    ylabels = [f"{n} ({int(s)})" for n, s in zip(names, support, strict=True)] if normalize else names
    ax.set_yticks(range(k), ylabels, fontsize=8 if k > 12 else 10)
    ax.set(xlabel="predicted", ylabel="true (support)" if normalize else "true")
    ax.set_title(title or ("Confusion matrix (% of true class)" if normalize else "Confusion matrix (counts)"))
    if k <= 40:
        fontsize = max(6.0, min(10.0, 170 / k))
        for i, j in zip(*np.nonzero(shown), strict=True):
            v = shown[i, j]
            ax.text(j, i, f"{100 * v:.0f}" if normalize else f"{v:g}", ha="center", va="center",
                    fontsize=fontsize, color="white" if v > 0.55 * vmax else "black")
    bar = fig.colorbar(im, ax=ax, shrink=0.8)
    if normalize:
        from matplotlib.ticker import PercentFormatter

        bar.ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    return viz.save(fig, path)


__all__ = ["plot_confusion"]
