"""Frame feeds: each source decoded in its own thread, so a slow model never holds up decoding.

A :class:`Feed` plays one source (a file, a folder's files in turn, a capture device or a URL),
reopens a stalled or dropped live source, picks the frames to process (every N-th, at most F per
second of stream time) and hands them to the consumer in one of two ways:

- **every frame** (files, and URLs that serve a whole file, i.e. with a known duration): a small
  bounded queue. Decoding runs ahead while the model works; nothing is dropped, and the model
  sets the pace.
- **newest frame only** (live: capture devices, live URLs; any source with ``realtime=True``):
  one slot that a newer frame overwrites. An overwritten frame counts as ``skipped``, so the
  model always works on what the camera shows now. The lag of a frame is how far it is behind
  the source's own clock (its pts against the best arrival time seen so far); when decoding
  itself falls more than ``max_lag`` seconds behind, packets are dropped up to the next keyframe.

Items are :class:`FeedItem` (a frame) or event dicts (``reconnect``, ``error``), in source
order. The consumer waits on the :class:`threading.Condition` it gave every feed.
Letters: C channels, H/W height/width.
"""
from __future__ import annotations

import collections
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from .errors import VideoError, VideoOpenError
from .live import StreamError, expand_source, is_live, open_source

__all__ = ["Feed", "FeedItem", "frame_to_rgb", "small_gray"]

QUEUE_FRAMES = 4  # decoded frames an every-frame feed may hold ahead of the model
CUT_SIDE = 32  # scene cuts compare frames downscaled to 32x32 gray


@dataclass
class FeedItem:
    """One frame to process: where it is in its source, the decoded picture, and how it got here."""

    source: str  # the file (a folder's current file) or URL
    index: int  # frame index in the source (a live source's numbering goes on across reconnects)
    time: float  # seconds of stream time (pts)
    frame: Any  # av.VideoFrame
    arrival: float  # time.monotonic() when it was decoded
    skipped: int = 0  # frames dropped since the previous item of this feed (newest-only feeds)
    fresh: bool = False  # the state must restart here (the first frame of a folder's next file)
    gap: bool = False  # the first frame after a live source reconnected (a reset the output reports)
    rgb: Any = None  # uint8 (C, H, W), filled by the feed thread or on first use
    gray: Any = None  # (32, 32) float32 in [0, 1] when scene cuts are watched


class Feed:
    """Decode ``spec`` in a daemon thread; ``take()`` hands over events and at most one frame."""

    def __init__(self, spec: str, *, wake: threading.Condition, every: int = 1, fps: float | None = None,
                 reconnect: int = 0, timeouts: tuple[float, float] = (10.0, 10.0), realtime: bool | None = None,
                 max_lag: float | None = None, cuts: bool = False):
        self.spec, self.wake, self.every, self.period = spec, wake, every, (1.0 / fps if fps else 0.0)
        self.reconnect, self.timeouts, self.realtime, self.max_lag, self.cuts = (reconnect, timeouts, realtime,
                                                                                 max_lag, cuts)
        self.dropping = bool(realtime) or (realtime is None and is_live(spec))  # refined once the source opens
        self.items: collections.deque = collections.deque()
        self.done, self.failed = False, False
        self._stop = threading.Event()
        self._offset = math.inf  # min(arrival - stream time): the source clock against ours
        self._skipped = 0  # frames dropped since the last item handed over
        self._need_key = False
        self._scalers = None
        self.thread = threading.Thread(target=self._run, name=f"cnnlstm feed {spec}", daemon=True)

    # --- the consumer's side (call with ``wake`` held) ----------------------------------------------
    def start(self) -> Feed:
        self.thread.start()
        return self

    def ready(self) -> bool:
        return bool(self.items) or self.done

    def finished(self) -> bool:
        return self.done and not self.items

    def take(self) -> tuple[list[dict], FeedItem | None]:
        """The events queued before the next frame, and that frame (or None)."""
        events = []
        while self.items:
            item = self.items.popleft()
            if isinstance(item, FeedItem):
                self.wake.notify_all()  # room in the queue again
                return events, item
            events.append(item)
        return events, None

    def lag(self, item: FeedItem, now: float | None = None) -> float:
        """Seconds between when the source showed ``item`` (by its clock) and ``now``."""
        now = time.monotonic() if now is None else now
        return max(0.0, now - (self._offset + item.time)) if math.isfinite(self._offset) else now - item.arrival

    def rgb(self, item: FeedItem):
        """uint8 RGB (C, H, W) of the item (converted here when the feed thread left it to the consumer)."""
        if item.rgb is None:
            item.rgb = frame_to_rgb(self._scaler(0), item.frame)
        if self.cuts and item.gray is None:
            item.gray = small_gray(self._scaler(1), item.frame)
        item.frame = None  # the decoder's buffer can go back to its pool
        return item.rgb

    def close(self) -> None:
        """Stop the thread (it ends within one frame, or the read timeout of a blocked read)."""
        self._stop.set()
        with self.wake:
            self.wake.notify_all()

    # --- the feed thread --------------------------------------------------------------------------
    def _scaler(self, which: int):
        if self._scalers is None:
            from .probe import load_av

            reformatter = load_av().video.reformatter.VideoReformatter
            self._scalers = (reformatter(), reformatter())  # one swscale context per output format
        return self._scalers[which]

    def _put(self, item) -> bool:
        """Queue an item; False when the feed was closed. A newest-only feed overwrites an untaken frame."""
        with self.wake:
            if isinstance(item, FeedItem):
                if self.dropping and self.items and isinstance(self.items[-1], FeedItem):
                    old = self.items.pop()
                    item.skipped += old.skipped + 1
                    item.fresh |= old.fresh
                    item.gap |= old.gap
                while not self.dropping and sum(isinstance(i, FeedItem) for i in self.items) >= QUEUE_FRAMES:
                    if self._stop.is_set():
                        return False
                    self.wake.wait(0.5)
            if self._stop.is_set():
                return False
            self.items.append(item)
            self.wake.notify_all()
            return True

    def _run(self) -> None:
        try:
            sources = expand_source(self.spec)
            if isinstance(sources, VideoError):
                self._put(_error_event(sources))
                self.failed = True
                return
            for i, name in enumerate(sources):
                if not self._play(name, fresh=i > 0) or self._stop.is_set():
                    return
        except Exception as exc:  # noqa: BLE001 - a bug or an unexpected native error: report it, don't hang
            self.failed = True
            self._put({"source": self.spec, "event": "error", "reason": "internal",
                       "message": f"{self.spec}: {type(exc).__name__}: {exc}"})
        finally:
            with self.wake:
                self.done = True
                self.wake.notify_all()

    def _play(self, name: str, *, fresh: bool) -> bool:
        """One source, reopened after a stall or drop while reconnect attempts remain; False: stop the feed."""
        pos = _Position()
        attempts, live = 0, is_live(name)
        while True:
            try:
                with open_source(name, open_timeout=self.timeouts[0], read_timeout=self.timeouts[1]) as src:
                    pos.finite = src.duration is not None
                    pos.period = 1 / src.rate if src.rate else 0.0
                    if self.realtime is None:
                        self.dropping = live and not pos.finite  # a whole file over http plays every frame
                    return self._read(name, src, pos, fresh)
            except VideoError as exc:
                retry = live and attempts < self.reconnect and isinstance(exc, (StreamError, VideoOpenError))
                if not retry:
                    self.failed = True
                    self._put(_error_event(exc))
                    return True  # a folder goes on with its next file
                attempts += 1
                if not self._put({"source": name, "event": "reconnect", "attempt": attempts, "of": self.reconnect,
                                  "message": str(exc)}):
                    return False
                pos.after_drop()
                self._offset = math.inf  # a new connection: a new clock
                if self._stop.wait(min(0.5 * attempts, 5.0)):
                    return False

    def _read(self, name: str, src, pos: _Position, fresh: bool) -> bool:
        """Decode one opened source; hand over the frames picked by ``every`` and ``fps``."""
        started = time.monotonic()
        for local, t, frame in src.frames(skip=self._behind if self.dropping else None):
            index, now = pos.place(local, t)
            if index is None or index % self.every or not pos.due(now, self.period):
                continue
            if self.realtime and not is_live(name):  # a file played as if it were a camera
                self._stop.wait(max(0.0, started + t - time.monotonic()))
            arrival = time.monotonic()
            self._offset = min(self._offset, arrival - now)
            item = FeedItem(name, index, now, frame, arrival, skipped=self._skipped, fresh=fresh, gap=pos.pop_gap())
            self._skipped, fresh = 0, False
            if self.dropping and self.max_lag is not None and arrival - (self._offset + now) > self.max_lag:
                self._need_key = True  # decoding itself is behind: skip to the next keyframe
            if not self.dropping:  # convert here, in parallel with the model
                self.rgb(item)
            if self._stop.is_set() or not self._put(item):
                return False
        return True

    def _behind(self, packet) -> bool:
        """True: drop this packet undecoded (catching up after decoding fell more than max_lag behind)."""
        if not self._need_key:
            return False
        if packet.is_keyframe:
            self._need_key = False
            return False
        self._skipped += 1
        return True


class _Position:
    """Frame numbering and the ``fps`` grid of one source across reconnects."""

    def __init__(self):
        self.finite, self.period, self.now = False, 0.0, 0.0
        self.last_index, self.index_base, self.time_base = -1, 0, 0.0
        self.next_due: float | None = None
        self.gap = False

    def place(self, local: int, t: float) -> tuple[int | None, float]:
        """(index, stream time) of a decoded frame; index None for a frame already seen before a reopen."""
        if self.finite:  # a reopened file starts again at its first frame: skip what was seen
            if local <= self.last_index:
                return None, t
            index, self.now = local, t
        else:  # a live stream has no start to go back to: its numbering and clock continue
            index, self.now = self.index_base + local, self.time_base + t
        self.last_index = index
        return index, self.now

    def due(self, now: float, period: float) -> bool:
        """At most one frame per ``period`` seconds of stream time (a grid restarted after a longer gap)."""
        if not period:
            return True
        if self.next_due is not None and now < self.next_due - 1e-4:
            return False
        gap = self.next_due is None or self.next_due + period <= now
        self.next_due = now + period if gap else self.next_due + period
        return True

    def after_drop(self) -> None:
        if not self.finite and self.last_index >= self.index_base:  # live: a gap, so a fresh state follows
            self.index_base, self.time_base = self.last_index + 1, self.now + self.period
            self.gap = True

    def pop_gap(self) -> bool:
        gap, self.gap = self.gap, False
        return gap


def _error_event(exc: VideoError) -> dict:
    return {"source": exc.path, "event": "error", "reason": exc.reason, "message": str(exc)}


def frame_to_rgb(scaler, frame):
    """An av.VideoFrame as uint8 RGB (C, H, W) in display orientation (as cnnlstm.data.video.decode reads files)."""
    import numpy as np
    import torch

    full_range = {"src_color_range": 2} if frame.color_range == 2 else {}  # JPEG/full range stays 0..255
    planar = scaler.reformat(frame, frame.width, frame.height, "gbrp", threads=1, **full_range)
    k = int(round(frame.rotation / 90)) % 4
    channels = [None, None, None]
    for channel, plane in zip((1, 2, 0), planar.planes, strict=False):  # gbrp stores G, B, R
        image = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)[:, :frame.width]  # (H, W)
        channels[channel] = np.rot90(image, k) if k else image
    return torch.from_numpy(np.stack(channels))  # (C, H, W)


def small_gray(scaler, frame):
    """32x32 gray float32 in [0, 1], for scene-cut detection."""
    import numpy as np

    small = scaler.reformat(frame, CUT_SIDE, CUT_SIDE, "gray", threads=1)
    plane = small.planes[0]
    return np.frombuffer(plane, np.uint8).reshape(CUT_SIDE, plane.line_size)[:, :CUT_SIDE].astype(np.float32) / 255
