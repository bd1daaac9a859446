"""The streaming loop: many sources, one model, one batched recurrent step per tick.

Each source is a :class:`~cnnlstm.data.video.feed.Feed` (decoded in its own thread) with its own
row of the recurrent state. A tick takes the frame every ready source has, transforms them,
runs the CNN and ONE ``model.step`` on the batch ``(N, C, S, S)`` with the gathered state rows,
and writes the rows back; resets (every K frames, on a scene cut, after a live reconnect, at a
folder's next file) zero one source's row. A tick waits for every every-frame source (files) to
have its next frame, and for no live source: a live source without a new frame sits the tick out.
Used by :func:`cnnlstm.deploy.stream.stream`.

Letters: N sources in a tick, C channels, S crop side, K classes.
"""
from __future__ import annotations

import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

from ..data.video.feed import Feed, FeedItem

if TYPE_CHECKING:
    from ..run import LoadedRun

__all__ = ["Streamer", "BatchedState"]

TOPK = 3
FPS_SMOOTHING = 0.1  # weight of the newest frame in the smoothed processing rate
STRAGGLER_WAIT = 0.02  # seconds a tick with a ready live source waits for a file source's next frame


def _tree_map(fn: Callable, *trees):
    """Apply ``fn`` leaf-wise over nested tuples of tensors (a model's streaming state)."""
    if isinstance(trees[0], tuple):
        return tuple(_tree_map(fn, *parts) for parts in zip(*trees, strict=True))
    return fn(*trees)


class BatchedState:
    """The recurrent state of N streams as one batch: gather rows for a tick, write them back, reset one.

    The batch dimension of every state tensor is found by comparing ``init_state(1)`` with
    ``init_state(2)`` (an LSTM's ``(L, B, H)`` has it at 1, a running mean's ``(B, H)`` at 0).
    """

    def __init__(self, model, n: int, device, dtype=None):
        import torch

        self.n, self.all = n, list(range(n))
        with torch.inference_mode():
            one, two = model.init_state(1, device=device, dtype=dtype), model.init_state(2, device=device, dtype=dtype)
            self.dims = _tree_map(_batch_dim, one, two)
            self.state, self.zero = model.init_state(n, device=device, dtype=dtype), one

    def rows(self, idx: list[int]):
        if idx == self.all:
            return self.state
        index = self._index(idx)
        return _tree_map(lambda t, d: t.index_select(d, index), self.state, self.dims)

    def update(self, idx: list[int], new) -> None:
        if idx == self.all:
            self.state = new
            return
        index = self._index(idx)
        self.state = _tree_map(lambda t, d, v: t.index_copy(d, index, v), self.state, self.dims, new)

    def reset(self, row: int) -> None:
        self.state = _tree_map(lambda t, d, z: t.index_copy(d, self._index([row]), z), self.state, self.dims,
                               self.zero)

    def _index(self, idx: list[int]):
        import torch

        leaves = []
        _tree_map(leaves.append, self.state)
        return torch.tensor(idx, device=leaves[0].device if leaves else None)


def _batch_dim(one, two) -> int:
    for d, (a, b) in enumerate(zip(one.shape, two.shape, strict=True)):
        if (a, b) == (1, 2):
            return d
    raise ValueError(f"cannot find the batch dimension of a state tensor: {tuple(one.shape)} for 1 stream, "
                     f"{tuple(two.shape)} for 2")


@dataclass
class _Slot:
    """One source: its feed and its counters."""

    row: int
    feed: Feed
    processed: int = 0
    since_reset: int = 0
    prev_gray: Any = None
    interval: float | None = None  # smoothed seconds between processed frames
    last_wall: float = 0.0
    active: bool = True


class Streamer:
    """Holds the model, the options and one slot per source; :meth:`run` yields frame dicts and events."""

    def __init__(self, loaded: LoadedRun, specs: list[str], *, feed_options: dict, reset_every: int,
                 reset_on_cut: float, max_frames: int | None, autocast_dtype=None, threshold: float = 0.5):
        from ..data.transforms import eval_transform

        self.loaded, self.transform = loaded, eval_transform(loaded.data_cfg)
        self.reset_every, self.reset_on_cut, self.max_frames = reset_every, reset_on_cut, max_frames
        self.autocast_dtype, self.threshold = autocast_dtype, threshold
        self.wake = threading.Condition()
        self.slots = [_Slot(i, Feed(spec, wake=self.wake, cuts=bool(reset_on_cut), **feed_options))
                      for i, spec in enumerate(specs)]

    def run(self) -> Iterator[dict]:
        state = BatchedState(self.loaded.model, len(self.slots), self.loaded.device)
        now = time.perf_counter()
        for slot in self.slots:
            slot.last_wall = now
            slot.feed.start()
        try:
            while True:
                taken = self._wait()
                if taken is None:
                    return
                batch = []
                for slot, events, item in taken:
                    yield from events
                    if item is not None:
                        batch.append((slot, item))
                if batch:
                    yield from self._tick(state, batch)
        finally:
            for slot in self.slots:
                slot.feed.close()

    def _wait(self) -> list[tuple[_Slot, list[dict], FeedItem | None]] | None:
        """Block until a tick can run: every every-frame source ready (or briefly late) and one source at least."""
        with self.wake:
            deadline = None
            while True:
                active = [s for s in self.slots if s.active]
                if not active:
                    return None
                ready = [s for s in active if s.feed.ready()]
                late = any(not s.feed.dropping and not s.feed.ready() for s in active)
                now = time.monotonic()
                if ready and (not late or (deadline is not None and now >= deadline)):
                    break
                if ready and deadline is None:
                    deadline = now + STRAGGLER_WAIT
                self.wake.wait(deadline - now if deadline is not None else 1.0)
            taken = [(s, *s.feed.take()) for s in ready]
            for s in ready:
                s.active = not s.feed.finished()
            return taken

    def _tick(self, state: BatchedState, batch: list[tuple[_Slot, FeedItem]]) -> Iterator[dict]:
        import torch

        model, device = self.loaded.model, self.loaded.device
        resets = []
        with torch.inference_mode():
            rgbs = [slot.feed.rgb(item) for slot, item in batch]  # uint8 (C, H, W) each
            for slot, item in batch:
                reset = self._wants_reset(slot, item)
                if reset or item.fresh:
                    state.reset(slot.row)
                    slot.since_reset = 0
                resets.append(reset)
            if all(r.shape == rgbs[0].shape for r in rgbs):
                x = self.transform(torch.stack(rgbs))  # (N, C, S, S)
            else:
                x = torch.cat([self.transform(r[None]) for r in rgbs])  # (N, C, S, S)
            rows = [slot.row for slot, _ in batch]
            amp = (torch.autocast(device.type, dtype=self.autocast_dtype) if self.autocast_dtype is not None
                   else nullcontext())
            with amp:
                out, new = model.step(x.to(device), state.rows(rows))
            state.update(rows, new)
            logits = out.logits.float().cpu()  # (N, K)
        for n, (slot, item) in enumerate(batch):
            slot.since_reset += 1
            slot.processed += 1
            answer = self.loaded.task.label_scores(self.loaded, logits[n], topk=TOPK, threshold=self.threshold)
            yield self._frame_dict(slot, item, answer, resets[n])
            if self.max_frames is not None and slot.processed >= self.max_frames:
                slot.active = False
                slot.feed.close()

    def _wants_reset(self, slot: _Slot, item: FeedItem) -> bool:
        reset = item.gap or bool(self.reset_every and slot.since_reset >= self.reset_every)
        if self.reset_on_cut:
            import numpy as np

            if item.fresh:
                slot.prev_gray = None
            cut = slot.prev_gray is not None and float(np.abs(item.gray - slot.prev_gray).mean()) > self.reset_on_cut
            reset |= cut
            slot.prev_gray = item.gray
        return reset

    def _frame_dict(self, slot: _Slot, item: FeedItem, answer: dict, reset: bool) -> dict:
        """The frame's answer (:meth:`~cnnlstm.tasks.base.Task.label_scores`: label, score, topk, ...) and counts."""
        wall = time.perf_counter()
        dt, slot.last_wall = wall - slot.last_wall, wall
        slot.interval = dt if slot.interval is None else (1 - FPS_SMOOTHING) * slot.interval + FPS_SMOOTHING * dt
        row = {"source": item.source, "frame": item.index, "time": round(item.time, 4), **answer,
               "fps": round(1 / slot.interval, 2) if slot.interval > 0 else 0.0, "reset": reset}
        if slot.feed.dropping:
            row.update(lag_s=round(slot.feed.lag(item), 3), skipped=item.skipped)
        return row
