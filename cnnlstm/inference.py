"""evaluate(), predict() and Predictor: a trained run (:mod:`cnnlstm.run`) applied to videos.

Each task reports its own metrics and prediction rows (:mod:`cnnlstm.tasks`): top-1/top-5 and a
confusion matrix (classify), frame accuracy / Edit / F1@k / segment mAP and timelines (segment),
BLEU / CIDEr-D (caption). ``predict`` decodes each untrusted video in an isolated worker process
with a timeout (a file that crashes or hangs FFmpeg costs that file, not the process) and only the
sampled frames, so a long video costs the memory of one clip. ``cnnlstm evaluate`` and ``cnnlstm
predict`` are registered here.
"""
from __future__ import annotations

import argparse
import json
import os
import threading
from pathlib import Path
from typing import Sequence

import torch

from .config import load_saved_config
from .data.sampling import SamplerConfig, sample_indices
from .data.transforms import eval_transform
from .data.video.decode import VideoReader
from .data.video.errors import VideoError
from .data.video.pool import IsolatedPool
from .data.video.types import Limits
from .errors import EXIT_SOME_FAILED, UserError
from .run import load_run
from .tasks import get_task

# a clip whose sampled frames lie further apart than this (seconds) gets a note suggesting --window
LONG_VIDEO_GAP_S = 2.0


def evaluate(run_dir: str | os.PathLike, data: str | os.PathLike, *, root: str | os.PathLike | None = None,
             views: int = 1, batch_size: int = 8, workers: int = 0, device: str = "auto", plot: bool = True) -> dict:
    """The run's task metrics on a dataset (a SPEC for classification, a segments or captions file).

    classify: top-1/top-5, mean class accuracy, confusion matrix and per-class table; ``views`` > 1
    scores each video by its class probabilities averaged over that many temporal views (view v
    samples at position (v + 0.5) / views: within each segment for the uniform sampler, along the
    video for random_clip, the frame phase for fps), and adds ``clip_top1``/``clip_top5`` (every
    view counted as a clip) next to ``video_top1``/``video_top5`` (= ``top1``/``top5``).
    segment: ``frame_accuracy``, ``edit``, ``f1@10/25/50``,
    ``map@0.3/0.5/0.7`` (0..1) and timeline plots. caption: ``bleu1``..``bleu4`` (0..1), ``cider``
    and the generated captions. Bad videos are skipped and listed.
    """
    if views < 1:
        raise ValueError(f"views must be >= 1; got {views}")
    loaded = load_run(run_dir, device=device)
    return loaded.task.evaluate(loaded, data, root=root, views=views, batch_size=batch_size, workers=workers,
                                plot=plot)


def read_clip(path: str, sampler: SamplerConfig, limits: Limits | None) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Decode one video's sampled frames: uint8 (T, C, H, W), indices (T,), and facts about it."""
    with VideoReader(path, limits=limits) as reader:
        info = reader.info
        indices = sample_indices(sampler, info.num_frames, fps=info.fps, train=False)
        frames = reader.get_frames(indices)
        facts = {"frames": info.num_frames, "fps": info.fps, "duration": info.duration,
                 "corrupt_frames": reader.corrupt_frames}
    return frames, indices, facts


class Predictor:
    """A loaded run that labels (or captions) videos; decoding runs in an isolated worker process.

    ``Predictor(run).predict(paths)`` returns one dict per video (see :func:`predict`). The run is
    loaded once; the worker process starts on first use and is reused. Thread-safe: calls are
    serialised by a lock. Use as a context manager or call :meth:`close`.
    """

    def __init__(self, run_dir: str | os.PathLike, *, device: str = "auto", timeout: float = 120.0,
                 limits: Limits | None = Limits(), topk: int = 5, threshold: float = 0.5):
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
            raise ValueError(f"threshold (--threshold) must be a probability in [0, 1]; got {threshold!r}")
        if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
            raise ValueError(f"topk (--topk) is how many labels to list: an integer >= 1; got {topk!r}")
        if not timeout > 0:
            raise ValueError(f"timeout (--timeout) is the seconds to decode one video: it must be > 0; got {timeout!r}")
        self.loaded = load_run(run_dir, device=device)
        self.transform = eval_transform(self.loaded.data_cfg)
        self.timeout, self.limits, self.topk, self.threshold = timeout, limits, topk, float(threshold)
        self._pool: IsolatedPool | None = None
        self._lock = threading.Lock()

    def info(self) -> dict:
        """What a client needs to know: model, task, labels (none for a caption vocabulary), input settings."""
        c, model = self.loaded.cfg, self.loaded.model
        task = self.loaded.task
        return {"model": c.model, "backbone": c.backbone, "task": c.task, "output": task.output_kind,
                "labels": self.loaded.classes if task.labels_are_classes else [], "frames": c.frames, "size": c.size,
                "sampler": c.sampler, "per_frame": bool(getattr(model, "per_frame", False)),
                "streamable": bool(getattr(model, "streamable", False))}

    def __enter__(self) -> "Predictor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    def predict(self, videos: Sequence[str | os.PathLike], *, plot: str | os.PathLike | None = None) -> list[dict]:
        paths = [os.fspath(v) for v in videos]
        results: list[dict] = [{} for _ in paths]
        with self._lock:
            if self._pool is None:
                self._pool = IsolatedPool(1, timeout=self.timeout)
            tasks = ((i, p, (os.path.abspath(p), self.loaded.sampler(), self.limits)) for i, p in enumerate(paths))
            for i, decoded in self._pool.map_unordered(read_clip, tasks):
                if isinstance(decoded, BaseException):
                    reason = decoded.reason if isinstance(decoded, VideoError) else type(decoded).__name__
                    results[i] = {"path": paths[i], "error": f"{reason}: {decoded}", "reason": reason}
                    continue
                frames, indices, facts = decoded
                row = self._row(paths[i], frames, indices, facts)
                if plot is not None:
                    path = Path(plot)
                    if len(paths) > 1:
                        path = path.with_name(f"{path.stem}_{i}{path.suffix or '.png'}")
                    row["plot"] = self.loaded.task.plot_prediction(self.loaded, frames, row, path)
                results[i] = row
        return results

    def _row(self, path: str, frames: torch.Tensor, indices: torch.Tensor, facts: dict) -> dict:
        """The common facts of one video, then the task's part of its prediction."""
        loaded = self.loaded
        fps = facts["fps"] or 1.0
        row = {"path": path, "frame_indices": indices.tolist(),
               "frame_times": [round(float(i) / fps, 4) for i in indices], **facts}
        clip = self.transform(frames)[None].to(loaded.device)  # (1, T, C, S, S)
        with torch.inference_mode():
            part = loaded.task.predict_row(loaded, clip, torch.tensor(row["frame_times"]), facts, topk=self.topk,
                                           threshold=self.threshold)
        note = long_video_note(len(indices), facts["duration"])
        return {**row, **part, **({"note": note} if note else {})}


def long_video_note(sampled: int, duration: float | None) -> str | None:
    """A hint when one clip is spread thin over a long video (sampled frames more than
    ``LONG_VIDEO_GAP_S`` seconds apart): it says how thin and suggests ``--window``."""
    if not duration or not sampled or duration / sampled <= LONG_VIDEO_GAP_S:
        return None
    return (f"sampled {sampled} frames from {duration:.0f} s: one frame every {duration / sampled:.1f} s, one label "
            "for the whole video; for a timeline use --window SECONDS (e.g. --window 4), or window= in Python")

def predict(run_dir: str | os.PathLike, videos: Sequence[str | os.PathLike], *, topk: int = 5, device: str = "auto",
            plot: str | os.PathLike | None = None, timeout: float = 120.0, limits: Limits | None = Limits(),
            window: float | None = None, stride: float | None = None, batch_size: int = 16,
            threshold: float = 0.5) -> list[dict]:
    """Label each video; a bad video gets ``{"path", "error", "reason"}`` instead of a prediction.

    Every result has path, label, score, frame_indices, frame_times (seconds) and the video's
    frames/fps/duration. Classification adds ``topk`` [(label, score)] and ``attention`` (one
    weight per sampled frame) for attention models; segmentation adds ``frame_labels``,
    ``frame_scores`` and ``segments`` [{label, start, end, score}] in seconds (label = the
    action with most frames); captioning adds ``caption``, ``words`` and ``word_attention``
    (one row of weights over the sampled frames per generated word); multi-label runs add ``labels``
    ([label, score] for every class whose probability is at least ``threshold``) and ``threshold``.
    A long video whose sampled
    frames lie more than ``LONG_VIDEO_GAP_S`` apart also gets a ``note`` suggesting ``window``.

    ``window`` (seconds) predicts over windows of that length every ``stride`` seconds (default:
    the window) instead, decoding each video once, in order (:mod:`cnnlstm.windows`): results
    have ``windows`` [{start, end, label, score, ...}], ``segments`` (runs of windows with the same
    label; per-frame models: segments over every sampled frame), the video-level ``label``,
    ``score`` (classification: the mean of the windows' probabilities, with ``topk``),
    ``num_windows``, ``frames_per_window`` and the video's facts; ``timeout`` then applies to
    each chunk of decoded frames.
    """
    if window is not None:
        from .windows import WindowPredictor, check_window

        check_window(window, stride)
        with WindowPredictor(load_run(run_dir, device=device), window=window, stride=stride, topk=topk,
                             batch_size=batch_size, timeout=timeout, limits=limits, threshold=threshold) as predictor:
            return predictor.predict(videos, plot=plot)
    if stride is not None:
        raise ValueError(f"stride={stride} needs window= (seconds per window); got window=None")
    with Predictor(run_dir, device=device, timeout=timeout, limits=limits, topk=topk,
                   threshold=threshold) as predictor:
        return predictor.predict(videos, plot=plot)


# --- command line -----------------------------------------------------------------------------

def add_parser(sub) -> None:
    """Register ``cnnlstm evaluate`` and ``cnnlstm predict`` on the CLI's subparsers."""
    p = sub.add_parser("evaluate", help="evaluate a trained run on a dataset")
    p.add_argument("run", help="run directory written by cnnlstm train")
    p.add_argument("--data", required=True, help="dataset SPEC (folder, CSV/list, UCF split file, Kinetics CSV); "
                   "a segments file for segment runs, a captions file for caption runs")
    p.add_argument("--root", default=None)
    p.add_argument("--views", type=int, default=1,
                   help="temporal views per video (different clips); the video score is the softmax averaged over "
                   "them; --json adds clip_top1 (every view a clip) and video_top1")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-plot", action="store_true", help="do not draw the confusion matrix")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="label videos with a trained run")
    p.add_argument("run", help="run directory written by cnnlstm train")
    p.add_argument("videos", nargs="+", help="video files")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--threshold", type=float, default=0.5,
                   help="multi-label runs: list every class with a probability at least this")
    p.add_argument("--json", action="store_true", help="print JSON: one object per video")
    p.add_argument("--plot", default=None, help="PNG: sampled frames with attention weights (suffix _i per video); "
                   "with --window: thumbnails above the timeline of windows and segments")
    p.add_argument("--window", type=float, default=None, metavar="SECONDS",
                   help="predict every window of this many seconds (one sequential decode; a timeline for long videos)")
    p.add_argument("--stride", type=float, default=None, metavar="SECONDS",
                   help="with --window: seconds between window starts (default: the window)")
    p.add_argument("--csv", default=None, metavar="OUT.csv", help="with --window: write one row per window")
    p.add_argument("--batch-size", type=int, default=16, help="with --window: windows per model call")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds to decode one video (with --window: one chunk of frames)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_predict)


def _run_task(run: str):
    return get_task(load_saved_config(Path(run) / "config.yaml").task)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a trained run on a dataset SPEC."""
    report = evaluate(args.run, args.data, root=args.root, views=args.views, batch_size=args.batch_size,
                      workers=args.workers, device=args.device, plot=not args.no_plot)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for line in _run_task(args.run).format_evaluation(report):
            print(line)
    return EXIT_SOME_FAILED if report.get("skipped") else 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Label videos with a trained run; each is decoded in an isolated worker with a timeout."""
    if args.window is None and (args.stride is not None or args.csv is not None):
        raise UserError("--stride and --csv need --window SECONDS (e.g. --window 2)")
    results = predict(args.run, args.videos, topk=args.topk, device=args.device, plot=args.plot, timeout=args.timeout,
                      window=args.window, stride=args.stride, batch_size=args.batch_size, threshold=args.threshold)
    if args.csv:
        from .engine.io import atomic_write_text
        from .windows import windows_csv

        atomic_write_text(args.csv, windows_csv(results))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        _print_predictions(results, args)
    return 0 if all("error" not in r for r in results) else EXIT_SOME_FAILED


def _print_predictions(results: list[dict], args: argparse.Namespace) -> None:
    task = _run_task(args.run)
    for r in results:
        if "error" in r:
            print(f"{r['path']}: ERROR {r['error']}")
            continue
        if args.window is not None:
            from .windows import format_windows

            lines = format_windows(r)
        else:
            lines = task.format_prediction(r)
        for line in lines:
            print(line)
        if r.get("note"):
            print(f"  note: {r['note']}")
        if r.get("plot"):
            print(f"  plot: {r['plot']}")
    if args.csv:
        print(f"windows: {args.csv}")


__all__ = ["evaluate", "predict", "Predictor", "read_clip", "long_video_note", "LONG_VIDEO_GAP_S", "add_parser"]
