"""The run's metrics: ``metrics.jsonl`` (rewritten atomically), TensorBoard events, plots.

On resume, rows logged after the checkpoint's step are dropped: the resumed run logs them again.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .._optional import available
from .io import atomic_write_text


def read_metrics(run: str | Path) -> list[dict]:
    path = Path(run) / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


class RunLog:
    def __init__(self, run: str | Path, *, enabled: bool = True, resume_step: int | None = None):
        self.run, self.enabled = Path(run), enabled
        self.rows = [r for r in read_metrics(run) if resume_step is not None and r.get("step", 0) <= resume_step]
        self._tb = None
        if enabled and available("torch.utils.tensorboard") and available("tensorboard"):
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.run / "tb"))

    def _write(self) -> None:
        atomic_write_text(self.run / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in self.rows))

    def scalars(self, step: int, values: dict[str, Any], **context: Any) -> None:
        if not self.enabled:
            return
        self.rows.append({"step": step, **context, **values, "time": round(time.time(), 3)})
        self._write()
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self._tb.add_scalar(key, value, step)

    def event(self, row: dict[str, Any]) -> None:
        if self.enabled:
            self.rows.append({**row, "time": round(time.time(), 3)})
            self._write()

    def finish(self) -> list[str]:
        """Close the event files and draw the curves; returns the plot paths written."""
        if not self.enabled:
            return []
        if self._tb is not None:
            self._tb.close()
        if not available("matplotlib"):
            return []
        from ..viz import plot_curves

        epochs = [r for r in self.rows if "epoch_s" in r]
        return [plot_curves(epochs, self.run / "plots" / "curves.png")] if epochs else []
