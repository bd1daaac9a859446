"""Progress bars only where someone watches them: on a terminal.

A log file or a pipe gets no bar at all (no carriage-return frames); the callers print their own
one-line summaries (``epoch N/M [...] ...``) either way. tqdm is imported on first use.
"""
from __future__ import annotations

import sys
from typing import Any, Iterable

from ._optional import require


def on_terminal() -> bool:
    """True when stderr (where bars are drawn) is a terminal."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def progress_bar(iterable: Iterable | None = None, *, enabled: bool = True, **kwargs: Any):
    """A tqdm bar on stderr, shown only when ``enabled`` and stderr is a terminal (else a no-op bar)."""
    tqdm = require("tqdm", purpose="progress bars").tqdm
    return tqdm(iterable, disable=not (enabled and on_terminal()), file=sys.stderr, **kwargs)


__all__ = ["progress_bar", "on_terminal"]
