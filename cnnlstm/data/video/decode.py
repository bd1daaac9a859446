"""Read frames by index from a video file: the only module that touches codecs.

``VideoReader(path).get_frames(indices)`` returns uint8 ``(T, C, H, W)`` RGB frames in display
orientation. Frame ``i`` is the ``i``-th frame that plain sequential decoding gives, in
presentation order, whatever the backend and whatever the access order.

Backends: PyAV (default; its wheels bundle FFmpeg) and TorchCodec (optional; needs FFmpeg's
shared libraries). Both are imported lazily. Bad input raises the typed errors of
:mod:`cnnlstm.data.video.errors`, each naming the file.

Letters: T frames, C channels (3, RGB), H/W height/width.
"""
from __future__ import annotations

import functools
import os
import warnings
from typing import Any, Iterator, Sequence

import torch

from ..._optional import available, require
from .types import Limits, VideoInfo

BACKENDS = ("pyav", "torchcodec", "auto")


class FrameIndexError(IndexError, ValueError):
    """A requested frame index is outside ``[0, num_frames)``; a caller bug, not a bad video."""


def probe(path: str | os.PathLike, *, limits: Limits | None = Limits(), backend: str = "pyav") -> VideoInfo:
    """Describe a video; raises a :class:`~cnnlstm.data.video.errors.VideoError` if it cannot be used.

    Header limits (pixels, duration, streams) are checked before decoding. The frame count and
    duration come from indexing every packet of the video stream (cheap: no decoding).
    """
    name = _select_backend(backend, strict=False)
    if name == "torchcodec":
        from . import _torchcodec

        return _torchcodec.TorchCodecVideo(os.fspath(path), threads=1, limits=limits).info
    from . import probe as pyav_probe

    return pyav_probe.probe(os.fspath(path), limits)[0]


class VideoReader:
    """Random-access and streaming reader over one video file.

    Cheap to construct inside DataLoader workers: construction probes the file (typed errors,
    limits, packet index; the index is cached per process) and the PyAV decoder opens on first
    use. Pickling drops the decoder, and a decoder inherited over fork is abandoned, never used,
    so no open container crosses a process boundary. One reader per thread (not thread-safe).
    Missing frames in a damaged file repeat their nearest decoded neighbour and count in
    ``corrupt_frames`` (``strict=True`` raises instead).

    Args:
        path: the video file.
        backend: ``"pyav"`` (default), ``"torchcodec"`` or ``"auto"`` (TorchCodec when usable).
        threads: FFmpeg decoding threads; 0 lets FFmpeg choose. Use 1 inside many workers.
        strict: raise :class:`CorruptVideoError` on any concealed corruption instead of counting it.
        limits: checked at construction (see :class:`Limits`); ``None`` disables them.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        backend: str = "pyav",
        threads: int = 0,
        strict: bool = False,
        limits: Limits | None = Limits(),
    ):
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
            raise ValueError(f"threads must be an int >= 0 (0 = FFmpeg's choice); got {threads!r}")
        self.path = os.fspath(path)
        self.threads = threads
        self.strict = bool(strict)
        self.limits = limits
        self.backend = _select_backend(backend, strict=self.strict)
        self._impl: Any = self._make_impl()
        self.info: VideoInfo = self._impl.info

    def _make_impl(self):
        if self.backend == "torchcodec":
            from ._torchcodec import TorchCodecVideo

            return TorchCodecVideo(self.path, threads=self.threads, limits=self.limits)
        from ._pyav import PyAVVideo

        return PyAVVideo(self.path, threads=self.threads, strict=self.strict, limits=self.limits)

    @property
    def corrupt_frames(self) -> int:
        """Distinct frames seen corrupt while decoding so far: concealed by FFmpeg (``is_corrupt``)
        or undecodable (repeated from a neighbour). Packets dropped at probe time (a truncated
        tail) are counted separately, in ``info.corrupt_frames``."""
        return self._impl.corrupt_frames if self._impl is not None else 0

    def __len__(self) -> int:
        return self.info.num_frames

    def get_frames(self, indices, *, size: int | tuple[int, int] | None = None) -> torch.Tensor:
        """Frames at ``indices`` (any order, repeats allowed) as uint8 ``(T, 3, H, W)`` RGB.

        ``size``: an int resizes the shorter side (keeping the aspect ratio), ``(h, w)`` resizes
        exactly, ``None`` keeps the display size. Resizing happens in FFmpeg's scaler while decoding.
        """
        wanted = _as_index_list(indices, self.info.num_frames, self.path)
        height, width = output_size(size, self.info.height, self.info.width)
        if not wanted:
            return torch.empty((0, 3, height, width), dtype=torch.uint8)
        unique = sorted(set(wanted))
        if self._impl is None:  # unpickled in a worker: reopen here
            self._impl = self._make_impl()
        frames = self._impl.decode_sorted(unique, (height, width))  # (U, 3, H, W)
        if unique == wanted:
            return frames
        row = {index: i for i, index in enumerate(unique)}
        return frames[torch.tensor([row[i] for i in wanted])]  # (T, 3, H, W)

    def iter_chunks(
        self, chunk_size: int = 32, *, step: int = 1, size: int | tuple[int, int] | None = None
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """Stream every ``step``-th frame as ``(first_index, uint8 (t, 3, H, W))`` chunks, in order.

        Memory is bounded by one chunk: frames are never accumulated across chunks.
        """
        for name, value in (("chunk_size", chunk_size), ("step", step)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1; got {value!r}")
        span = chunk_size * step
        for start in range(0, self.info.num_frames, span):
            indices = list(range(start, min(start + span, self.info.num_frames), step))
            yield start, self.get_frames(indices, size=size)

    def close(self) -> None:
        """Release the decoder (the reader reopens it if used again)."""
        if self._impl is not None:
            self._impl.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_impl"] = None  # reopened lazily in the process that uses it
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        i = self.info
        return (
            f"VideoReader({self.path!r}, backend={self.backend!r}, {i.num_frames} frames, "
            f"{i.width}x{i.height}, {i.fps:.3g} fps, codec={i.codec})"
        )


def read_frames(
    path: str | os.PathLike,
    indices,
    *,
    size: int | tuple[int, int] | None = None,
    backend: str = "pyav",
    **kwargs,
) -> torch.Tensor:
    """Open, read ``indices`` as uint8 ``(T, 3, H, W)`` and close. ``kwargs`` go to VideoReader."""
    with VideoReader(path, backend=backend, **kwargs) as reader:
        return reader.get_frames(indices, size=size)


def output_size(size: int | tuple[int, int] | None, height: int, width: int) -> tuple[int, int]:
    """Resolve ``size`` against a ``(height, width)`` frame: int = shorter side, pair = exact."""
    if size is None:
        return height, width
    if isinstance(size, int) and not isinstance(size, bool):
        if size < 1:
            raise ValueError(f"size must be >= 1; got {size}")
        if height <= width:
            return size, max(1, round(width * size / height))
        return max(1, round(height * size / width)), size
    if (
        isinstance(size, Sequence)
        and len(size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size)
    ):
        return int(size[0]), int(size[1])
    raise ValueError(f"size must be None, an int (shorter side) or a pair (height, width) of ints >= 1; got {size!r}")


def _as_index_list(indices, num_frames: int, path: str) -> list[int]:
    """Validate frame indices into a list of ints in ``[0, num_frames)``."""
    if isinstance(indices, torch.Tensor):
        if indices.is_floating_point() or indices.dtype == torch.bool or indices.dim() > 1:
            raise TypeError(f"indices must be a 1-D integer tensor; got {indices.dtype} {tuple(indices.shape)}")
        values = indices.reshape(-1).tolist()
    elif isinstance(indices, int) and not isinstance(indices, bool):
        raise TypeError(f"indices must be a sequence of ints (e.g. [{indices}]); got a single int")
    else:
        values = list(indices)
    out = []
    for value in values:
        if hasattr(value, "__index__") and not isinstance(value, bool):
            out.append(value.__index__())
        else:
            raise TypeError(f"frame indices must be ints; got {value!r} ({type(value).__name__})")
    bad = [i for i in out if not 0 <= i < num_frames]
    if bad:
        raise FrameIndexError(
            f"{path}: frame indices must be in [0, {num_frames}) (num_frames={num_frames}); "
            f"got {bad[:5]}{' ...' if len(bad) > 5 else ''}"
        )
    return out


@functools.cache
def torchcodec_status() -> tuple[bool, str]:
    """``(usable, why_not)``: TorchCodec imports and its FFmpeg libraries load (checked once)."""
    if not available("torchcodec.decoders"):
        return False, "torchcodec is not installed or does not import with this torch; pip install torchcodec"
    ops = require("torchcodec._core.ops")
    if not getattr(ops, "_FFMPEG_AVAILABLE", True):  # set by torchcodec when libavcodec & co. fail to load
        return False, (
            "torchcodec could not load FFmpeg's shared libraries (libavcodec etc.); "
            "install FFmpeg 4-8, e.g. apt-get install ffmpeg"
        )
    return True, ""


def _select_backend(backend: str, *, strict: bool) -> str:
    """Resolve ``backend`` to ``"pyav"`` or ``"torchcodec"``, warning when falling back."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
    if backend == "pyav":
        return "pyav"
    if strict:
        if backend == "torchcodec":
            warnings.warn(
                "backend='torchcodec' cannot detect concealed corruption, which strict=True needs; "
                "using PyAV instead",
                stacklevel=3,
            )
        return "pyav"
    usable, why = torchcodec_status()
    if usable:
        return "torchcodec"
    if backend == "torchcodec":
        warnings.warn(f"backend='torchcodec' is unusable, using PyAV instead: {why}", stacklevel=3)
    return "pyav"


__all__ = [
    "Limits",
    "VideoInfo",
    "VideoReader",
    "FrameIndexError",
    "probe",
    "read_frames",
    "output_size",
    "torchcodec_status",
]
