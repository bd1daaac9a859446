"""Causal streaming inference: one frame in, one recurrent step, one answer, in constant memory.

``stream(run, source)`` reads a video file, a folder of files, a capture device (``/dev/video0``)
or a network URL (rtsp, http(s), udp, rtmp) frame by frame. Each processed frame goes through the
eval transform, the CNN and ONE ``model.step`` with the carried recurrent state, so a frame costs
the same whatever the stream's length and only the state is kept (no frames, no outputs).
Per-frame models label the current frame; clip models answer for the stream so far (since the
last state reset). A stalled or dropped live source raises after ``read_timeout`` instead of
hanging; ``stream`` turns that into a ``reconnect`` or ``error`` event. Sources are opened by
:mod:`cnnlstm.data.video.live`.

Letters: C channels, H/W height/width, S crop side, K classes.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from array import array
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from ..data.video.errors import VideoError, VideoOpenError
from ..data.video.live import StreamError, expand_source, is_live, open_source

if TYPE_CHECKING:
    import torch

    from ..run import LoadedRun

__all__ = ["stream", "add_parser"]

TOPK = 3
_CUT_SIDE = 32  # scene cuts compare frames downscaled to 32x32 gray
_FPS_SMOOTHING = 0.1  # weight of the newest frame in the smoothed processing rate


def _streamable_models() -> list[str]:
    from ..models import create_model, list_models

    names = []
    for name in list_models():
        try:
            model = create_model(name, num_classes=8, backbone="test_tiny")  # tiny: only for its properties
        except (TypeError, ValueError):  # a model that needs other arguments (e.g. a caption vocabulary)
            continue
        if getattr(model, "streamable", False):
            names.append(name)
    return names


def stream(run: LoadedRun | str | os.PathLike, source: str | os.PathLike, *, every: int = 1, fps: float | None = None,
           reset_every: int = 0, reset_on_cut: float = 0.0, reconnect: int = 0, max_frames: int | None = None,
           open_timeout: float = 10.0, read_timeout: float = 10.0, device: str = "auto",
           threshold: float = 0.5) -> Iterator[dict]:
    """Label ``source`` frame by frame with a causal model; yields one dict per processed frame.

    Frame dict: ``source``, ``frame`` (index in the source), ``time`` (s, from the pts), ``label``,
    ``score``, ``topk`` ([[label, p], ...], k <= 3), ``fps`` (smoothed processing rate, frames
    per wall-clock second) and ``reset`` (the state was reset just before this frame); the run's
    task scores the classes (:meth:`~cnnlstm.tasks.base.Task.label_scores`): runs that score each
    class on its own (multi-label) add ``labels``, every [label, p] at or above ``threshold``, and
    ``threshold``.
    Events: ``{"source", "event": "reconnect", "attempt", "message"}`` before reopening a live
    source, ``{"source", "event": "error", "reason", "message"}`` when a source fails (a folder
    goes on with its next file).

    ``every=N`` processes every N-th frame; ``fps=F`` at most F frames per second of stream
    time; ``reset_every=K`` resets the state every K processed frames; ``reset_on_cut=X`` when the
    mean absolute difference of consecutive processed frames (32x32 gray, in [0, 1]) is above X;
    ``reconnect=N`` reopens a stalled or dropped live source up to N times. The state also resets
    between the files of a folder and after a live source reconnects. Raises ValueError for bad
    arguments and for models that cannot stream (bidirectional, attention over the whole clip).
    """
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be an integer >= 1; got {every!r}")
    if fps is not None and not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number (frames per second of stream time) or None; got {fps!r}")
    if not isinstance(reset_every, int) or reset_every < 0:
        raise ValueError(f"reset_every must be an integer >= 0 (0: never); got {reset_every!r}")
    if not 0 <= reset_on_cut <= 1:
        raise ValueError("reset_on_cut must be in [0, 1] (mean absolute gray difference; 0: off); got "
                         f"{reset_on_cut!r}")
    if not isinstance(reconnect, int) or reconnect < 0:
        raise ValueError(f"reconnect must be an integer >= 0; got {reconnect!r}")
    if max_frames is not None and (not isinstance(max_frames, int) or max_frames < 1):
        raise ValueError(f"max_frames must be an integer >= 1 or None; got {max_frames!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be a probability in [0, 1]; got {threshold!r}")
    if open_timeout <= 0 or read_timeout <= 0:
        raise ValueError(f"timeouts must be > 0 seconds; got open_timeout={open_timeout}, read_timeout={read_timeout}")
    from ..run import LoadedRun, load_run

    loaded = run if isinstance(run, LoadedRun) else load_run(run, device=device)
    if not getattr(loaded.model, "streamable", False):
        raise ValueError(
            f"model {loaded.cfg.model!r} is not causal (it looks at the whole clip, e.g. bidirectional or attention "
            "over all frames), so it cannot stream one frame at a time; "
            f"streamable models: {', '.join(_streamable_models())}. "
            "Use `cnnlstm predict` for whole clips"
        )
    runner = _Runner(loaded, every=every, fps=fps, reset_every=reset_every, reset_on_cut=reset_on_cut,
                     reconnect=reconnect,
                     max_frames=max_frames, timeouts=(open_timeout, read_timeout), threshold=float(threshold))
    return runner.run(os.fspath(source))


class _Runner:
    """The streaming loop; holds the model, the options and the counters shared by a folder's files."""

    def __init__(self, loaded: LoadedRun, *, every, fps, reset_every, reset_on_cut, reconnect, max_frames, timeouts,
                 threshold=0.5):
        from ..data.transforms import eval_transform

        self.loaded, self.transform = loaded, eval_transform(loaded.data_cfg)
        self.every, self.period = every, (1.0 / fps if fps else 0.0)
        self.reset_every, self.reset_on_cut, self.reconnect = reset_every, reset_on_cut, reconnect
        self.max_frames, self.timeouts, self.threshold = max_frames, timeouts, threshold
        self.processed = 0
        self._interval: float | None = None  # smoothed seconds between processed frames
        self._last_wall = time.perf_counter()

    def run(self, source: str) -> Iterator[dict]:
        sources = expand_source(source)
        if isinstance(sources, VideoError):
            yield _error_event(sources)
            return
        for name in sources:
            yield from self._play(name)
            if self.max_frames is not None and self.processed >= self.max_frames:
                return

    def _play(self, name: str) -> Iterator[dict]:
        """One source, reopened after a stall or drop while reconnect attempts remain."""
        from ..data.video.probe import load_av

        scaler = load_av().video.reformatter.VideoReformatter()  # one swscale context per output format
        gray_scaler = load_av().video.reformatter.VideoReformatter()
        state = self.loaded.model.init_state(1)
        since_reset, prev_gray, next_due, pending_reset = 0, None, None, False
        attempts, last_index, index_base, time_base, now, period = 0, -1, 0, 0.0, 0.0, 0.0
        live, finite = is_live(name), False
        while True:
            try:
                with open_source(name, open_timeout=self.timeouts[0], read_timeout=self.timeouts[1]) as src:
                    finite = src.duration is not None
                    period = 1 / src.rate if src.rate else 0.0
                    for local, t, frame in src.frames():
                        if finite:  # a reopened file starts again at its first frame: skip what was seen
                            if local <= last_index:
                                continue
                            index, now = local, t
                        else:  # a live stream has no start to go back to: its numbering and clock continue
                            index, now = index_base + local, time_base + t
                        last_index = index
                        if index % self.every:
                            continue
                        if self.period:
                            if next_due is not None and now < next_due - 1e-4:
                                continue
                            # a grid of 1/F steps in stream time, restarted after a gap longer than a step
                            gap = next_due is None or next_due + self.period <= now
                            next_due = now + self.period if gap else next_due + self.period
                        reset = pending_reset or bool(self.reset_every and since_reset >= self.reset_every)
                        if self.reset_on_cut:
                            gray = _small_gray(gray_scaler, frame)
                            reset |= prev_gray is not None and _mean_abs_diff(gray, prev_gray) > self.reset_on_cut
                            prev_gray = gray
                        if reset:
                            state, since_reset, pending_reset = self.loaded.model.init_state(1), 0, False
                        logits, state = self._step(_rgb(scaler, frame), state)
                        since_reset += 1
                        self.processed += 1
                        yield self._frame_event(name, index, now, logits, reset)
                        if self.max_frames is not None and self.processed >= self.max_frames:
                            return
                return
            except VideoError as exc:
                retry = live and attempts < self.reconnect and isinstance(exc, (StreamError, VideoOpenError))
                if not retry:
                    yield _error_event(exc)
                    return
                attempts += 1
                yield {"source": name, "event": "reconnect", "attempt": attempts, "of": self.reconnect,
                       "message": str(exc)}
                if not finite and last_index >= index_base:  # live: a gap in the stream, so start a fresh state
                    index_base, time_base = last_index + 1, now + period
                    pending_reset, prev_gray = True, None
                time.sleep(min(0.5 * attempts, 5.0))

    def _step(self, rgb: torch.Tensor, state):
        """uint8 frame (C, H, W) -> logits (K,) for the stream so far (or this frame), and the new state."""
        import torch

        loaded = self.loaded
        with torch.inference_mode():
            x = self.transform(rgb[None]).to(loaded.device)  # (1, C, S, S)
            out, state = loaded.model.step(x, state)
            return out.logits[0].float().cpu(), state  # (K,)

    def _frame_event(self, name: str, index: int, now: float, logits: torch.Tensor, reset: bool) -> dict:
        wall = time.perf_counter()
        dt, self._last_wall = wall - self._last_wall, wall
        self._interval = dt if self._interval is None else (1 - _FPS_SMOOTHING) * self._interval + _FPS_SMOOTHING * dt
        answer = self.loaded.task.label_scores(self.loaded, logits, topk=TOPK, threshold=self.threshold)
        return {"source": name, "frame": index, "time": round(now, 4), **answer,
                "fps": round(1 / self._interval, 2) if self._interval > 0 else 0.0, "reset": reset}


def _answer(item: dict) -> str:
    """The printed answer of a frame: its label and score, or every label at or above the threshold."""
    if "labels" not in item:
        return f"{item['label']} {item['score']:.1%}"
    shown = ", ".join(f"{label} {score:.1%}" for label, score in item["labels"])
    return shown or f"(no label at or above {item['threshold']:.0%})"


def _error_event(exc: VideoError) -> dict:
    return {"source": exc.path, "event": "error", "reason": exc.reason, "message": str(exc)}


def _rgb(scaler, frame) -> torch.Tensor:
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


def _small_gray(scaler, frame):
    """32x32 gray float32 in [0, 1], for scene-cut detection."""
    import numpy as np

    small = scaler.reformat(frame, _CUT_SIDE, _CUT_SIDE, "gray", threads=1)
    plane = small.planes[0]
    return np.frombuffer(plane, np.uint8).reshape(_CUT_SIDE, plane.line_size)[:, :_CUT_SIDE].astype(np.float32) / 255


def _mean_abs_diff(a, b) -> float:
    import numpy as np

    return float(np.abs(a - b).mean())


# --- command line ---------------------------------------------------------------------------------

def add_parser(sub) -> None:
    """Register the ``cnnlstm stream`` subcommand on the CLI's subparsers (stdlib imports only here)."""
    p = sub.add_parser(
        "stream", help="label live video frame by frame (file, folder, /dev/video0, rtsp/http/udp/rtmp URL)",
        description="Causal streaming inference: one recurrent step per frame, constant memory. "
                    "Prints one line per processed frame; exit code 1 when a source fails.",
    )
    p.add_argument("run", help="run directory written by cnnlstm train (a causal model)")
    p.add_argument("source", help="video file, folder of videos, capture device (/dev/video0) "
                                  "or URL (rtsp://, http://, udp://, rtmp://)")
    p.add_argument("--every", type=int, default=1, metavar="N", help="process every N-th frame")
    p.add_argument("--fps", type=float, default=None, metavar="F", help="process at most F frames per second of "
                   "stream time")
    p.add_argument("--json", action="store_true", help="print one JSON object per line (frames and events)")
    p.add_argument("--out", default=None, metavar="PNG", help="write a timeline plot (top score over time, coloured "
                   "by label)")
    p.add_argument("--reset-every", type=int, default=0, metavar="K", help="reset the recurrent state every K "
                   "processed frames")
    p.add_argument("--reset-on-cut", type=float, default=0.0, metavar="T",
                   help="reset the state on a scene cut: mean absolute gray difference above T in [0, 1] (e.g. 0.25)")
    p.add_argument("--reconnect", type=int, default=0, metavar="N", help="reopen a stalled or dropped live source up "
                   "to N times")
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop after N processed frames")
    p.add_argument("--open-timeout", type=float, default=10.0, metavar="S", help="seconds to open a live source")
    p.add_argument("--read-timeout", type=float, default=10.0, metavar="S",
                   help="seconds without data before a source counts as stalled")
    p.add_argument("--threshold", type=float, default=0.5, metavar="P",
                   help="multi-label runs: print every label with a probability at least P")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_stream)


def cmd_stream(args: argparse.Namespace) -> int:
    import json

    frames = stream(args.run, args.source, every=args.every, fps=args.fps, reset_every=args.reset_every,
                    reset_on_cut=args.reset_on_cut, reconnect=args.reconnect, max_frames=args.max_frames,
                    open_timeout=args.open_timeout, read_timeout=args.read_timeout, device=args.device,
                    threshold=args.threshold)
    timeline = _Timeline(json.loads((Path(args.run) / "labels.json").read_text())) if args.out else None
    failed, current = False, None
    for item in frames:
        failed |= item.get("event") == "error"
        if args.json:
            print(json.dumps(item), flush=True)
        elif "event" in item:
            print(f"{item['event']}: {item['message']}", file=sys.stderr, flush=True)
        else:
            if item["source"] != current and os.path.isdir(args.source):
                print(f"== {item['source']}")
            print(f"frame {item['frame']}  t={item['time']:.2f}s  {_answer(item)}  {item['fps']:.1f} fps"
                  + ("  (reset)" if item["reset"] else ""), flush=True)
        if "event" not in item:
            current = item["source"]
            if timeline is not None:
                timeline.add(item)
    if timeline is not None and timeline.times:
        path = timeline.plot(args.out, title=f"{os.path.basename(os.path.normpath(args.source))}: top label over time")
        print(f"timeline: {path}", file=sys.stderr if args.json else sys.stdout)
    return 1 if failed else 0


class _Timeline:
    """A bounded summary per processed frame (time, label, score: 14 bytes); files of a folder follow one another."""

    def __init__(self, classes: list[str]):
        self.classes, self.index = classes, {c: i for i, c in enumerate(classes)}
        self.times, self.labels, self.scores = array("d"), array("i"), array("f")
        self._source, self._offset, self._last = None, 0.0, 0.0

    def add(self, item: dict) -> None:
        if item["source"] != self._source:
            self._source, self._offset = item["source"], self._last
        self._last = self._offset + item["time"]
        self.times.append(self._last)
        self.labels.append(self.index[item["label"]])
        self.scores.append(item["score"])

    def plot(self, path: str, *, title: str) -> str:
        import numpy as np

        from .. import viz

        t, s = np.frombuffer(self.times), np.frombuffer(self.scores, np.float32)
        lab = np.frombuffer(self.labels, np.int32)
        fig = viz.figure(10, 3.2)
        ax = fig.subplots()
        ax.plot(t, s, color="0.8", linewidth=0.6, zorder=1)
        colors = viz.class_colors(len(self.classes))  # the same colour per class as the other plots
        present = np.unique(lab)
        for c in present:
            sel = lab == c
            ax.scatter(t[sel], s[sel], s=6, color=colors[c], label=self.classes[c], zorder=2)
        ax.set(title=title, xlabel="stream time (s)", ylabel="top-label probability", ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right", ncol=min(6, len(present)))
        return viz.save(fig, path)
