"""Frame-index samplers: pure index math, no I/O.

Every sampler maps a video length (``num_frames``, and ``fps`` where it matters) to a
``LongTensor`` of frame indices in ``[0, num_frames)``; the decoder reads exactly those frames.
Randomness only comes from the ``generator`` argument (``None`` uses torch's global RNG).

Letters: T samples per clip, N windows.

Short videos (fewer usable frames than requested) follow a :class:`ShortVideoPolicy`. The
default is ``"pad"`` (repeat the last frame): every clip then has exactly T frames, so batches
stack without padding and every model works, including fixed-T baselines (3D CNNs, temporal
transformers with T positions). Use ``"keep"`` when the model reads ``lengths``/``mask`` (the
LSTM models do) and repeated frames would bias it; :func:`~cnnlstm.data.collate.collate_clips`
records the true lengths.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import torch
from torch import Tensor


class ShortVideoPolicy(str, Enum):
    """What to do when a video has fewer usable frames than the clip asks for."""

    PAD = "pad"  # repeat the last frame index until the clip has T indices
    LOOP = "loop"  # wrap around to the first frame (indices are then not monotone)
    KEEP = "keep"  # return fewer indices; collate records the shorter length


DEFAULT_SHORT = ShortVideoPolicy.PAD
SAMPLER_KINDS = ("uniform", "random_clip", "sliding", "fps")


def _policy(short: str | ShortVideoPolicy) -> ShortVideoPolicy:
    try:
        return ShortVideoPolicy(short)
    except ValueError:
        choices = [p.value for p in ShortVideoPolicy]
        raise ValueError(f"short must be one of {choices}; got {short!r}") from None


def _positive(name: str, value: int) -> int:
    try:
        ok = not isinstance(value, bool) and int(value) == value and value > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


def _rate(name: str, value: float) -> float:
    try:
        rate = float(value)  # also accepts Fraction (PyAV's average_rate) and numpy scalars
    except (TypeError, ValueError):
        rate = float("nan")
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"{name} must be a positive, finite frames-per-second value; got {value!r}")
    return rate


def _position(position: float) -> float:
    if not 0 <= position < 1:
        raise ValueError(f"position must be in [0, 1) (0.5: the middle; view v of V: (v + 0.5) / V); got {position}")
    return position


def _short_indices(num_frames: int, num_samples: int, stride: int, short: ShortVideoPolicy) -> Tensor:
    """Indices ``0, stride, 2*stride, ...`` for a video too short to hold them all."""
    idx = torch.arange(num_samples) * stride  # (T,)
    if short is ShortVideoPolicy.PAD:
        return idx.clamp_(max=num_frames - 1)
    if short is ShortVideoPolicy.LOOP:
        return idx % num_frames
    return idx[idx < num_frames]  # (T',) with T' < T


def uniform_indices(
    num_frames: int,
    num_samples: int,
    *,
    train: bool = False,
    generator: torch.Generator | None = None,
    short: str | ShortVideoPolicy = DEFAULT_SHORT,
    position: float = 0.5,
) -> Tensor:
    """TSN-style sampling: one frame from each of ``num_samples`` equal segments.

    ``position`` in [0, 1) places the eval frame within each segment (0.5: the middle); multi-view
    testing takes V views at positions (v + 0.5) / V.

    Segment ``i`` covers frames ``[i * n // T, (i + 1) * n // T)``. Eval takes the middle frame
    of each segment (deterministic); train takes a random frame of each segment. The indices are
    strictly increasing when ``num_frames >= num_samples``; otherwise ``short`` applies.
    Returns a LongTensor ``(T,)`` (``(num_frames,)`` for a short video under ``"keep"``).
    """
    n = _positive("num_frames", num_frames)
    t = _positive("num_samples", num_samples)
    short = _policy(short)
    if n < t:
        return _short_indices(n, t, 1, short)
    start = torch.arange(t) * n // t  # (T,)
    end = (torch.arange(t) + 1) * n // t  # (T,) every segment holds >= 1 frame since n >= t
    if not train:
        if _position(position) == 0.5:
            return (start + end) // 2
        return start + ((end - start) * position).long()  # (T,)
    u = torch.rand(t, generator=generator, dtype=torch.float64)  # (T,) in [0, 1)
    offset = (u * (end - start)).long()
    return start + torch.minimum(offset, end - start - 1)


def random_clip_indices(
    num_frames: int,
    num_samples: int,
    *,
    stride: int = 1,
    train: bool = True,
    generator: torch.Generator | None = None,
    short: str | ShortVideoPolicy = DEFAULT_SHORT,
    position: float = 0.5,
) -> Tensor:
    """A contiguous clip of ``num_samples`` frames taken every ``stride`` frames.

    The clip spans ``(T - 1) * stride + 1`` frames; it starts at a random frame when ``train``.
    In eval it starts at ``position`` (in [0, 1)) of the room the video leaves, ``int((n - span)
    * position)``: 0.5 centres it, and multi-view testing takes V clips spread over the video at
    positions (v + 0.5) / V. A video shorter than the span starts at frame 0 and ``short`` fills
    the rest. Returns a LongTensor ``(T,)``.
    """
    n = _positive("num_frames", num_frames)
    t = _positive("num_samples", num_samples)
    stride = _positive("stride", stride)
    short = _policy(short)
    span = (t - 1) * stride + 1
    if span > n:
        return _short_indices(n, t, stride, short)
    if train:
        start = int(torch.randint(0, n - span + 1, (1,), generator=generator))
    else:
        start = int((n - span) * _position(position))
    return start + torch.arange(t) * stride  # (T,)


def sliding_window_indices(
    num_frames: int,
    window: int,
    *,
    stride: int = 1,
    hop: int | None = None,
    short: str | ShortVideoPolicy = DEFAULT_SHORT,
) -> Tensor:
    """Every window of ``window`` frames (taken every ``stride``), starting every ``hop`` frames.

    ``hop`` defaults to ``window * stride``: back-to-back windows that continue one grid of
    every ``stride``-th frame. The last window is aligned to the end of the video, so with
    ``hop <= window * stride`` no frame is more than ``stride - 1`` frames from a sampled one
    (with ``stride=1``: every frame is sampled). A video shorter than one window
    gives a single window filled by ``short``. Returns a LongTensor ``(N, window)``
    (``(1, T')`` for a short video under ``"keep"``).
    """
    n = _positive("num_frames", num_frames)
    w = _positive("window", window)
    stride = _positive("stride", stride)
    hop = _positive("hop", hop) if hop is not None else w * stride
    short = _policy(short)
    span = (w - 1) * stride + 1
    if span > n:
        return _short_indices(n, w, stride, short)[None]  # (1, T')
    starts = torch.arange(0, n - span + 1, hop)  # (N,)
    if int(starts[-1]) + span < n:  # the tail is not covered yet: add a window ending at the last frame
        starts = torch.cat([starts, torch.tensor([n - span])])
    return starts[:, None] + torch.arange(w) * stride  # (N, window)


def fps_indices(
    num_frames: int,
    video_fps: float,
    target_fps: float,
    *,
    max_frames: int | None = None,
    position: float = 0.5,
) -> Tensor:
    """All frames of the video resampled to ``target_fps`` (nearest earlier frame).

    Output frame ``k`` is the source frame shown at time ``(k + phase) / target_fps``: 30 -> 10
    fps keeps every 3rd frame; a ``target_fps`` above ``video_fps`` repeats frames so the timeline
    stays exact. When more than ``max_frames`` frames result, they are thinned uniformly (one frame
    of each of ``max_frames`` equal segments, at ``position`` as :func:`uniform_indices` in eval),
    so the whole video is still covered but the effective rate drops below ``target_fps``.

    ``position`` in [0, 1) picks the view: the phase is ``(position - 0.5) mod 1`` of an output
    frame, so 0.5 (the default) starts at time 0 and multi-view testing at positions (v + 0.5) / V
    takes V interleaved samplings: up to ``video_fps / target_fps`` of them differ (or more when
    ``max_frames`` thins); with ``target_fps >= video_fps`` every frame is taken and views repeat.
    Returns a LongTensor ``(T,)``.
    """
    n = _positive("num_frames", num_frames)
    ratio = _rate("video_fps", video_fps) / _rate("target_fps", target_fps)  # source frames per output frame
    phase = (_position(position) - 0.5) % 1.0  # in output frames
    count = max(1, math.ceil(n / ratio - phase - 1e-9))
    idx = torch.floor((torch.arange(count, dtype=torch.float64) + phase) * ratio + 1e-9).long()  # (T,)
    idx = idx.clamp_(max=n - 1)
    if max_frames is not None and count > _positive("max_frames", max_frames):
        idx = idx[uniform_indices(count, max_frames, train=False, position=position)]  # (max_frames,)
    return idx


def window_starts(num_frames: int, span: int, hop: int) -> Tensor:
    """First frames of the windows of ``span`` frames every ``hop`` frames that cover a video.

    Windows start at 0, hop, 2 * hop, ... while they fit; when the last one ends before the
    video does, one more window ends at the last frame. So ``N = ceil((num_frames - span) / hop) + 1``
    windows (in seconds: ``ceil((duration - window) / stride) + 1``), and a video shorter than one
    window gets a single window starting at 0. Returns a LongTensor ``(N,)``.
    """
    n, span, hop = _positive("num_frames", num_frames), _positive("span", span), _positive("hop", hop)
    if span >= n:
        return torch.zeros(1, dtype=torch.long)
    starts = torch.arange(0, n - span + 1, hop)  # (N,)
    if int(starts[-1]) + span < n:
        starts = torch.cat([starts, torch.tensor([n - span])])
    return starts


@dataclass(frozen=True)
class SamplerConfig:
    """Which sampler to use and its scalars; :func:`sample_indices` dispatches on ``kind``.

    ``num_frames`` is the clip length T (the window for ``"sliding"``); ``stride`` applies to
    ``"random_clip"`` and ``"sliding"``; ``hop`` to ``"sliding"``; ``target_fps`` (required) and
    ``max_frames`` to ``"fps"``.
    """

    kind: str = "uniform"
    num_frames: int = 16
    stride: int = 1
    hop: int | None = None
    target_fps: float | None = None
    max_frames: int | None = None
    short: str = DEFAULT_SHORT.value
    position: float = 0.5  # eval view: where in the video (random_clip), segment (uniform) or frame period (fps)

    def __post_init__(self) -> None:
        if self.kind not in SAMPLER_KINDS:
            raise ValueError(f"SamplerConfig.kind must be one of {list(SAMPLER_KINDS)}; got {self.kind!r}")
        _positive("SamplerConfig.num_frames", self.num_frames)
        _positive("SamplerConfig.stride", self.stride)
        if self.hop is not None:
            _positive("SamplerConfig.hop", self.hop)
        if self.max_frames is not None:
            _positive("SamplerConfig.max_frames", self.max_frames)
        _policy(self.short)
        _position(self.position)
        if self.kind == "fps" and self.target_fps is None:
            raise ValueError("SamplerConfig(kind='fps') needs target_fps; got None. Set e.g. target_fps=10.0")


def sample_indices(
    cfg: SamplerConfig,
    num_frames: int,
    *,
    fps: float = 25.0,
    train: bool,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Indices of one clip ``(T,)`` from a video of ``num_frames`` frames at ``fps``.

    ``"sliding"`` gives many clips per video, so it is refused here: use
    :func:`sample_windows` (or :func:`sliding_window_indices`) for it.
    """
    if cfg.kind == "uniform":
        return uniform_indices(num_frames, cfg.num_frames, train=train, generator=generator, short=cfg.short,
                               position=cfg.position)
    if cfg.kind == "random_clip":
        return random_clip_indices(num_frames, cfg.num_frames, stride=cfg.stride, train=train, generator=generator,
                                   short=cfg.short, position=cfg.position)
    if cfg.kind == "fps":
        return fps_indices(num_frames, fps, cfg.target_fps, max_frames=cfg.max_frames, position=cfg.position)
    raise ValueError(
        f"sample_indices returns one clip, but kind={cfg.kind!r} gives several windows per video; "
        "call sample_windows(cfg, num_frames) to get all of them as an (N, T) tensor"
    )


def sample_timed_windows(cfg: SamplerConfig, num_frames: int, fps: float, window: float,
                         stride: float | None = None) -> tuple[Tensor, Tensor, int]:
    """Windows of ``window`` seconds every ``stride`` seconds (default: ``window``) over a whole
    video, each sampled by ``cfg`` as an eval clip of its own (a training clip of ``window``
    seconds is sampled the same way): ``(starts (N,), indices (N, T), span)``, where ``span`` is
    the window length in frames and ``indices`` are frame indices of the video.
    """
    fps = _rate("fps", fps)
    for name, value in (("window", window), ("stride", stride if stride is not None else window)):
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number of seconds; got {value!r}")
    if cfg.kind == "sliding":
        raise ValueError("timed windows sample each window as one clip; kind='sliding' makes many clips per window")
    n = _positive("num_frames", num_frames)
    span = min(n, max(1, round(window * fps)))
    starts = window_starts(n, span, max(1, round((stride if stride is not None else window) * fps)))  # (N,)
    pattern = sample_indices(cfg, span, fps=fps, train=False)  # (T,) within one window
    return starts, starts[:, None] + pattern[None], span  # (N,), (N, T)


def sample_windows(
    cfg: SamplerConfig,
    num_frames: int,
    *,
    fps: float = 25.0,
    train: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Indices of every clip the config takes from a video, ``(N, T)``; N = 1 except for ``"sliding"``."""
    if cfg.kind == "sliding":
        return sliding_window_indices(num_frames, cfg.num_frames, stride=cfg.stride, hop=cfg.hop, short=cfg.short)
    return sample_indices(cfg, num_frames, fps=fps, train=train, generator=generator)[None]  # (1, T)


__all__ = [
    "ShortVideoPolicy",
    "DEFAULT_SHORT",
    "SAMPLER_KINDS",
    "uniform_indices",
    "random_clip_indices",
    "sliding_window_indices",
    "fps_indices",
    "SamplerConfig",
    "sample_indices",
    "sample_windows",
    "window_starts",
    "sample_timed_windows",
]
