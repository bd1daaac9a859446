"""Windowed prediction over long videos: a prediction per window of W seconds, merged segments and
a video-level label, for any model.

``predict(run, videos, window=W, stride=S)`` (:mod:`cnnlstm.inference`) comes here. Windows start
every S seconds (default: W) and cover the whole video (:func:`~cnnlstm.data.sampling.sample_timed_windows`:
``ceil((duration - W) / S) + 1`` windows, the last one ending at the last frame); each window is
sampled like a training clip (the run's sampler over W seconds). The video is decoded once, in
order, in an isolated worker (:class:`~cnnlstm.data.video.sequential.FrameWorker`), and only the
frames some window samples are converted, resized in the worker to the eval transform's size.

For models whose encoder works frame by frame (the CNN-LSTMs, the transformer, captioning) each
decoded frame goes through the CNN once, even when overlapping windows share it, and windows are
assembled from the buffered features (N, T, D); 3D CNNs get clips (N, T, C, S, S). The buffer holds
only the frames of windows not run yet, so memory is flat in the video's length. The run's task
turns windows into rows and the video-level answer (``Task.window_rows``, ``Task.summarize_windows``):
classification gives top-k per window and the mean of the windows' probabilities; per-frame models
label every sampled frame and cut segments over the whole video; captioning captions each window.

Letters: N windows, T frames per window, C channels, H/W height/width, S crop side, D feature size, K classes.
"""
from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Sequence

import torch

from .data.sampling import sample_timed_windows
from .data.transforms import EvalResize, eval_transform
from .data.video.errors import VideoError
from .data.video.sequential import FrameWorker
from .data.video.types import Limits
from .engine.checkpoint import unwrap
from .models.backbones import FrameEncoder
from .run import LoadedRun

THUMBNAILS = 8  # frames shown above the timeline of --plot
CSV_FIELDS = ("path", "start", "end", "label", "score", "topk")


def check_window(window: float, stride: float | None) -> tuple[float, float]:
    """``(window, stride)`` in seconds, validated; stride defaults to the window (back-to-back)."""
    for name, value in (("window", window), ("stride", stride)):
        if value is None and name == "stride":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive number of seconds; got {value!r}")
    return float(window), float(stride if stride is not None else window)


class _Windows:
    """One video's windows in flight: the frames they need, a buffer of per-frame inputs, the rows."""

    def __init__(self, starts: torch.Tensor, indices: torch.Tensor, span: int, fps: float, num_frames: int):
        self.starts, self.indices, self.span, self.fps, self.num_frames = starts, indices, span, fps, num_frames
        self.last = indices.max(1).values  # (N,) a window can run once its last frame is decoded
        self.buffer: dict[int, torch.Tensor] = {}  # frame index -> features (D,) or frame (C, S, S)
        self.next = 0  # the first window not run yet
        self.rows: list[dict] = []
        self.probs: list[torch.Tensor] = []
        picks = torch.linspace(0, len(starts) - 1, min(THUMBNAILS, len(starts))).round().long().unique()
        self.thumb_at = {int(indices[w, indices.shape[1] // 2]) for w in picks}  # middle frame of a few windows
        self.thumbs: dict[int, torch.Tensor] = {}  # frame index -> uint8 (C, H, W), resized

    def ready(self, decoded_up_to: int, limit: int) -> list[int]:
        """Up to ``limit`` windows, in order, whose frames are all in the buffer."""
        end = self.next
        while end < len(self.starts) and end - self.next < limit and int(self.last[end]) <= decoded_up_to:
            end += 1
        return list(range(self.next, end))

    def take(self, windows: list[int]) -> torch.Tensor:
        """Inputs of ``windows`` stacked (B, T, ...), then frames no later window needs leave the buffer."""
        x = torch.stack([torch.stack([self.buffer[int(i)] for i in self.indices[w]]) for w in windows])
        self.next = windows[-1] + 1
        if self.next < len(self.starts):
            first = int(self.indices[self.next].min())
            for i in [i for i in self.buffer if i < first]:
                del self.buffer[i]
        return x

    def span_of(self, w: int) -> tuple[float, float]:
        start = int(self.starts[w])
        return round(start / self.fps, 4), round(min(start + self.span, self.num_frames) / self.fps, 4)


class WindowPredictor:
    """A loaded run that predicts over the windows of whole videos (see the module docstring).

    The decoding worker starts on first use and is reused across videos; use as a context manager
    or call :meth:`close`. ``batch_size`` windows go through the temporal model (and, for 3D CNNs,
    the whole model) at once.
    """

    def __init__(self, loaded: LoadedRun, *, window: float, stride: float | None = None, topk: int = 5,
                 batch_size: int = 16, timeout: float = 120.0, limits: Limits | None = Limits(),
                 threshold: float = 0.5):
        self.window, self.stride = check_window(window, stride)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1; got {batch_size!r}")
        self.loaded, self.topk, self.batch_size, self.threshold = loaded, topk, batch_size, threshold
        self.transform, self.prepare = eval_transform(loaded.data_cfg), EvalResize(loaded.data_cfg)
        encoder = getattr(unwrap(loaded.model), "encoder", None)
        self.frame_encoder = encoder if isinstance(encoder, FrameEncoder) else None  # None: 3D CNN, clips in
        self.worker = FrameWorker(timeout=timeout, limits=limits)

    def __enter__(self) -> WindowPredictor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.worker.close()

    def predict(self, videos: Sequence[str | os.PathLike], *, plot: str | os.PathLike | None = None) -> list[dict]:
        """One result per video (see :func:`cnnlstm.inference.predict`); a bad video gets
        ``{"path", "error", "reason"}``."""
        paths = [os.fspath(v) for v in videos]
        results = []
        for i, path in enumerate(paths):
            try:
                row, thumbs = self._predict(path)
            except VideoError as exc:
                results.append({"path": path, "error": f"{exc.reason}: {exc}", "reason": exc.reason})
                continue
            if plot is not None:
                out = Path(plot)
                if len(paths) > 1:
                    out = out.with_name(f"{out.stem}_{i}{out.suffix or '.png'}")
                row["plot"] = plot_windows(row, thumbs, self.loaded, out)
            results.append(row)
        return results

    def predict_video(self, path: str) -> dict:
        """The windowed prediction of one video: facts, the task's video-level part, ``windows``."""
        return self._predict(path)[0]

    def _predict(self, path: str) -> tuple[dict, dict[float, torch.Tensor]]:
        """The prediction and a few thumbnails {seconds: uint8 (C, H, W)} for the plot."""
        loaded = self.loaded
        info = self.worker.open(path)
        starts, indices, span = sample_timed_windows(loaded.sampler(), info.num_frames, info.fps, self.window,
                                                     self.stride)  # (N,), (N, T)
        state = _Windows(starts, indices, span, info.fps, info.num_frames)
        with torch.inference_mode():
            for chunk_indices, frames in self.worker.frames(torch.unique(indices).tolist(), prepare=self.prepare):
                self._add(state, chunk_indices, frames)
                decoded_up_to = int(chunk_indices[-1])
                while windows := state.ready(decoded_up_to, self.batch_size):
                    self._run(state, windows)
            summary = loaded.task.summarize_windows(loaded, state.rows, torch.cat(state.probs) if state.probs else None,
                                                    indices.double() / info.fps, topk=self.topk,
                                                    threshold=self.threshold)
        return {"path": path, "frames": info.num_frames, "fps": info.fps, "duration": info.duration,
                "corrupt_frames": self.worker.corrupt_frames + info.corrupt_frames, "window": self.window,
                "stride": self.stride, "frames_per_window": int(indices.shape[1]), "num_windows": len(state.rows),
                **summary, "windows": state.rows}, {i / info.fps: frame for i, frame in sorted(state.thumbs.items())}

    def _add(self, state: _Windows, chunk_indices: torch.Tensor, frames: torch.Tensor) -> None:
        """A decoded chunk (n, C, H', W') uint8 -> the per-frame inputs of the windows, buffered."""
        for row, i in enumerate(chunk_indices.tolist()):
            if i in state.thumb_at:
                state.thumbs[i] = frames[row].clone()
        x = self.transform(frames).to(self.loaded.device)  # (n, C, S, S)
        if self.frame_encoder is not None:
            x = self.frame_encoder(x[None])[0][0]  # (n, D): the CNN once per decoded frame
        state.buffer.update(zip(chunk_indices.tolist(), x, strict=True))

    def _run(self, state: _Windows, windows: list[int]) -> None:
        x = state.take(windows)  # (B, T, D) or (B, T, C, S, S)
        times = state.indices[windows].double() / state.fps  # (B, T) seconds
        rows, probs = self.loaded.task.window_rows(self.loaded, x, times, topk=self.topk,
                                                      threshold=self.threshold)
        for w, row in zip(windows, rows, strict=True):
            start, end = state.span_of(w)
            state.rows.append({"start": start, "end": end, **row})
        if probs is not None:
            state.probs.append(probs)


def windows_csv(results: list[dict]) -> str:
    """One CSV row per window of every video: path, start, end, label, score, topk ("label:p;...")."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for result in results:
        for w in result.get("windows", []):
            topk = ";".join(f"{label}:{p:.6f}" for label, p in w.get("topk", []))
            writer.writerow([result["path"], w["start"], w["end"], w["label"], f"{w['score']:.6f}", topk])
    return out.getvalue()


def plot_windows(row: dict, thumbs: dict[float, torch.Tensor], loaded: LoadedRun, path: str | os.PathLike) -> str:
    """``--plot``: thumbnails of a few windows above the timeline of window labels and segments."""
    from .viz import plot_timeline_strip

    names = list(loaded.classes) if loaded.task.labels_are_classes else []
    for w in row["windows"]:  # captions: colours in order of appearance
        if w["label"] not in names:
            names.append(w["label"])
    tracks = {"windows": [(w["start"], w["end"], w["label"]) for w in row["windows"]],
              "segments": [(s["start"], s["end"], s["label"]) for s in row["segments"]]}
    title = f"{Path(row['path']).name}: {row['label']} ({len(row['windows'])} windows of {row['window']:g} s)"
    return plot_timeline_strip(thumbs, tracks, names, row["duration"], path, title=title)


def format_windows(row: dict) -> list[str]:
    """What ``cnnlstm predict --window`` prints for one video: a summary line, then each segment."""
    lines = [f"{row['path']}: {row['num_windows']} windows of {row['window']:g} s every {row['stride']:g} s over "
             f"{row['duration']:.1f} s; video: {row['label']} ({row['score']:.3g})"]
    return lines + [f"  {s['start']:9.2f}s - {s['end']:9.2f}s  {s['label']}  ({s['score']:.3g})"
                    for s in row["segments"]]


__all__ = ["WindowPredictor", "check_window", "windows_csv", "plot_windows", "format_windows", "CSV_FIELDS"]
