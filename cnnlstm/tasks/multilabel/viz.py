"""AP per class as bars (classes without a positive video are named, not drawn).

matplotlib is optional and imported on first use (the conventions of :mod:`cnnlstm.viz`).
Letters: K classes.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

from ... import viz


def plot_ap(per_class: Sequence[dict], path: str | os.PathLike, *, title: str = "AP per class") -> str:
    """One bar per class with an AP (``per_class`` rows of a multi-label report: ``class``, ``ap``);
    the mAP over them goes into the title."""
    scored = {row["class"]: row["ap"] for row in per_class if row["ap"] is not None}
    if not scored:
        raise ValueError("no class has a positive video: there is no AP to plot")
    missing = [row["class"] for row in per_class if row["ap"] is None]
    mean = sum(scored.values()) / len(scored)
    title = f"{title} (mAP {mean:.1%})" + (f"; no positives: {', '.join(missing[:4])}" if missing else "")
    return viz.plot_bars(scored, path, title=title, ylabel="average precision")


__all__ = ["plot_ap"]
