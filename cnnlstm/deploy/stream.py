"""Causal streaming inference: one frame in, one recurrent step, one answer, in constant memory.

``stream(run, source)`` reads a video file, a folder of files, a capture device (``/dev/video0``)
or a network URL (rtsp, http(s), udp, rtmp) frame by frame; ``stream(run, [src1, src2, ...])``
reads several at once in one process, one model, one batch per tick
(:mod:`cnnlstm.deploy.streamer`). Each processed frame goes through the eval transform, the CNN
and ONE ``model.step`` with its source's recurrent state, so a frame costs the same whatever the
stream's length and only the state is kept (no frames, no outputs). Per-frame models label the
current frame; clip models answer for the stream so far (since the last state reset). Every
source is decoded in its own thread (:mod:`cnnlstm.data.video.feed`): a live source never falls
behind a slow model (only its newest frame is processed, the rest are counted as skipped), a
stalled or dropped one raises after ``read_timeout`` instead of hanging, which ``stream`` turns
into a ``reconnect`` or ``error`` event. Sources are opened by :mod:`cnnlstm.data.video.live`.

Letters: C channels, H/W height/width, S crop side, K classes.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from array import array
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

from ..errors import UserError

if TYPE_CHECKING:
    from ..run import LoadedRun

__all__ = ["stream", "add_parser"]


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


def stream(run: LoadedRun | str | os.PathLike, source: str | os.PathLike | Sequence[str | os.PathLike], *,
           every: int = 1, fps: float | None = None, reset_every: int = 0, reset_on_cut: float = 0.0,
           reconnect: int = 0, max_frames: int | None = None, open_timeout: float = 10.0, read_timeout: float = 10.0,
           device: str = "auto", realtime: bool | None = None, max_lag: float | None = 2.0,
           precision: str = "fp32", threshold: float = 0.5) -> Iterator[dict]:
    """Label ``source`` (or several sources at once) frame by frame with a causal model; yields dicts.

    ``source`` is a video file, a folder (its videos in turn), a capture device, a URL, or a list
    of them: every source is decoded in its own thread and has its own recurrent state; each tick
    runs the CNN and one recurrent step on the current frames of all sources as one batch.

    Frame dict: ``source``, ``frame`` (index in the source), ``time`` (s, from the pts), ``label``,
    ``score``, ``topk`` ([[label, p], ...], k <= 3), ``fps`` (this source's smoothed processing
    rate, frames per wall-clock second) and ``reset`` (the state was reset just before this
    frame); the run's task scores the classes (:meth:`~cnnlstm.tasks.base.Task.label_scores`):
    runs that score each class on its own (multi-label) add ``labels``, every [label, p] at or above
    ``threshold``, and ``threshold``. Live sources (devices, live URLs; every source with
    ``realtime=True``) keep only their
    newest frame when the model is slower than the source, and their dicts add ``lag_s`` (how far
    the answer is behind the source's clock) and ``skipped`` (frames dropped since the previous
    dict of that source); decoding that falls more than ``max_lag`` seconds behind skips to the
    next keyframe. Files (and URLs serving a whole file) process every frame unless
    ``realtime=True`` plays them at their frame rate, as a camera would; ``realtime=False``
    processes every frame of every source.
    Events: ``{"source", "event": "reconnect", "attempt", "of", "message"}`` before reopening a live
    source, ``{"source", "event": "error", "reason", "message"}`` when a source fails (a folder
    goes on with its next file, the other sources go on).

    ``every=N`` processes every N-th frame; ``fps=F`` at most F frames per second of stream
    time; ``reset_every=K`` resets the state every K processed frames; ``reset_on_cut=X`` when the
    mean absolute difference of consecutive processed frames (32x32 gray, in [0, 1]) is above X;
    ``reconnect=N`` reopens a stalled or dropped live source up to N times; ``max_frames=N`` stops
    each source after N processed frames. The state also resets between the files of a folder and
    after a live source reconnects. ``precision``: ``fp32``, ``bf16`` (autocast for the CNN; the
    recurrent state stays fp32) or ``auto`` (bf16 where the CPU or GPU runs it natively).
    Raises ValueError for bad arguments and for models that cannot stream (bidirectional,
    attention over the whole clip).
    """
    specs = [os.fspath(s) for s in ([source] if isinstance(source, (str, os.PathLike)) else source)]
    _check_options(specs, every=every, fps=fps, reset_every=reset_every, reset_on_cut=reset_on_cut,
                   reconnect=reconnect, max_frames=max_frames, timeouts=(open_timeout, read_timeout), max_lag=max_lag,
                   precision=precision)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be a probability in [0, 1]; got {threshold!r}")
    from ..engine.optim import pick_precision
    from ..run import LoadedRun, load_run
    from .streamer import Streamer

    loaded = run if isinstance(run, LoadedRun) else load_run(run, device=device)
    if not getattr(loaded.model, "streamable", False):
        raise ValueError(
            f"model {loaded.cfg.model!r} is not causal (it looks at the whole clip, e.g. bidirectional or attention "
            "over all frames), so it cannot stream one frame at a time; "
            f"streamable models: {', '.join(_streamable_models())}. "
            "Use `cnnlstm predict` for whole clips"
        )
    import torch

    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(pick_precision(precision, loaded.device))
    feed_options = dict(every=every, fps=fps, reconnect=reconnect, timeouts=(open_timeout, read_timeout),
                        realtime=realtime, max_lag=max_lag)
    streamer = Streamer(loaded, specs, feed_options=feed_options, reset_every=reset_every, reset_on_cut=reset_on_cut,
                        max_frames=max_frames, autocast_dtype=amp, threshold=float(threshold))
    return streamer.run()


def _check_options(specs: list[str], *, every, fps, reset_every, reset_on_cut, reconnect, max_frames, timeouts, max_lag,
                   precision) -> None:
    if not specs:
        raise ValueError("source is an empty list; give a video file, folder, capture device or URL (or several)")
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
    if timeouts[0] <= 0 or timeouts[1] <= 0:
        raise ValueError(f"timeouts must be > 0 seconds; got open_timeout={timeouts[0]}, read_timeout={timeouts[1]}")
    if max_lag is not None and not (isinstance(max_lag, (int, float)) and max_lag > 0):
        raise ValueError(f"max_lag must be a positive number of seconds or None (no bound); got {max_lag!r}")
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be one of auto, fp32, bf16, fp16; got {precision!r}")


# --- command line ---------------------------------------------------------------------------------

def add_parser(sub) -> None:
    """Register the ``cnnlstm stream`` subcommand on the CLI's subparsers (stdlib imports only here)."""
    p = sub.add_parser(
        "stream", help="label live video frame by frame (files, folders, /dev/video0, rtsp/http/udp/rtmp URLs)",
        description="Causal streaming inference: one recurrent step per frame, constant memory. Several sources run "
                    "in one process as one batch per tick, each with its own state; lines carry their source. "
                    "Prints one line per processed frame; exit code 1 when a source fails.",
    )
    p.add_argument("run", help="run directory written by cnnlstm train (a causal model)")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="video file, folder of videos, capture device "
                   "(/dev/video0) or URL (rtsp://, http://, udp://, rtmp://); several at once")
    p.add_argument("--every", type=int, default=1, metavar="N", help="process every N-th frame")
    p.add_argument("--fps", type=float, default=None, metavar="F", help="process at most F frames per second of "
                   "stream time")
    p.add_argument("--json", action="store_true", help="print one JSON object per line (frames and events)")
    p.add_argument("--out", default=None, metavar="PNG", help="write a timeline plot (top score over time, coloured "
                   "by label; one source)")
    p.add_argument("--reset-every", type=int, default=0, metavar="K", help="reset the recurrent state every K "
                   "processed frames")
    p.add_argument("--reset-on-cut", type=float, default=0.0, metavar="T",
                   help="reset the state on a scene cut: mean absolute gray difference above T in [0, 1] (e.g. 0.25)")
    p.add_argument("--reconnect", type=int, default=0, metavar="N", help="reopen a stalled or dropped live source up "
                   "to N times")
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop each source after N processed "
                   "frames")
    p.add_argument("--max-lag", type=float, default=2.0, metavar="S", help="live sources: when decoding falls more "
                   "than S seconds behind, skip to the next keyframe (the model always takes the newest frame)")
    p.add_argument("--realtime", choices=("auto", "on", "off"), default="auto",
                   help="auto: live sources keep only their newest frame, files process every frame; on: files too "
                        "play at their frame rate and skip frames the model cannot keep up with; off: every frame "
                        "of every source")
    p.add_argument("--open-timeout", type=float, default=10.0, metavar="S", help="seconds to open a live source")
    p.add_argument("--read-timeout", type=float, default=10.0, metavar="S",
                   help="seconds without data before a source counts as stalled")
    p.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="fp32",
                   help="bf16: autocast the CNN (auto: where the CPU or GPU runs bf16 natively)")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch threads (default 1: one frame per source is small work, decoding runs in other "
                        "threads, and on a busy machine more threads wait for each other; 0: torch's default)")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="multi-label runs: list every label with a probability at least this")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_stream)


def cmd_stream(args: argparse.Namespace) -> int:

    if args.out and len(args.sources) > 1:
        raise UserError("--out plots one source's timeline; give one source (or leave --out out)")
    if args.threads < 0:
        raise UserError(f"--threads must be >= 0 (0: torch's default); got {args.threads}")
    import torch

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(args.threads or threads)
        return _run_stream(args)
    finally:
        torch.set_num_threads(threads)  # as it was, for callers of main() in this process


def _run_stream(args: argparse.Namespace) -> int:
    import json

    frames = stream(args.run, args.sources, every=args.every, fps=args.fps, reset_every=args.reset_every,
                    reset_on_cut=args.reset_on_cut, reconnect=args.reconnect, max_frames=args.max_frames,
                    open_timeout=args.open_timeout, read_timeout=args.read_timeout, device=args.device,
                    realtime={"auto": None, "on": True, "off": False}[args.realtime], max_lag=args.max_lag,
                    precision=args.precision, threshold=args.threshold)
    timeline = _Timeline(json.loads((Path(args.run) / "labels.json").read_text())) if args.out else None
    failed, current = False, None
    many = len(args.sources) > 1
    for item in frames:
        failed |= item.get("event") == "error"
        if args.json:
            print(json.dumps(item), flush=True)
        elif "event" in item:
            print(f"{item['event']}: {item['message']}", file=sys.stderr, flush=True)
        else:
            if not many and item["source"] != current and os.path.isdir(args.sources[0]):
                print(f"== {item['source']}")
            print(_text_line(item, many), flush=True)
        if "event" not in item:
            current = item["source"]
            if timeline is not None:
                timeline.add(item)
    if timeline is not None and timeline.times:
        name = os.path.basename(os.path.normpath(args.sources[0]))
        path = timeline.plot(args.out, title=f"{name}: top label over time")
        print(f"timeline: {path}", file=sys.stderr if args.json else sys.stdout)
    return 1 if failed else 0


def _text_line(item: dict, many: bool) -> str:
    line = f"frame {item['frame']}  t={item['time']:.2f}s  {_answer(item)}  {item['fps']:.1f} fps"
    if "lag_s" in item:
        line += f"  lag {item['lag_s']:.2f}s  skipped {item['skipped']}"
    if item["reset"]:
        line += "  (reset)"
    return f"[{item['source']}] {line}" if many else line


def _answer(item: dict) -> str:
    """The printed answer of a frame: its label and score, or every label at or above the threshold."""
    if "labels" not in item:
        return f"{item['label']} {item['score']:.1%}"
    shown = ", ".join(f"{label} {score:.1%}" for label, score in item["labels"])
    return shown or f"(no label at or above {item['threshold']:.0%})"


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
