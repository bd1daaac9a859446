"""TorchCodec backend (optional): frames by index with TorchCodec's exact-seek decoder.

File checks (open, format, streams, codec, header limits) reuse :mod:`.probe` so both backends
raise the same typed errors; frame counts come from TorchCodec's own scan of the file, so its
indices and ``info.num_frames`` agree. TorchCodec cannot report concealed corruption, so
``corrupt_frames`` stays at 0 and ``strict=True`` uses PyAV (see ``decode.py``).
"""
from __future__ import annotations

import os

import torch

from ..._optional import require
from . import probe as pyav_probe
from .errors import CorruptVideoError, EmptyVideoError
from .types import Limits, VideoInfo

_ABANDONED: list = []  # decoders inherited over fork are never freed (their threads are gone)


class TorchCodecVideo:
    """TorchCodec decoders for one file, one per output size, created on demand."""

    corrupt_frames = 0

    def __init__(self, path: str, *, threads: int = 0, limits: Limits | None = Limits()):
        container, stream = pyav_probe.open_video(path, limits)
        with container:
            self._stream_index, fmt = stream.index, container.format.name
        self.path, self.threads = path, threads
        self._decoders: dict = {}
        self._pid = os.getpid()
        meta = self._decoder(None).metadata
        num = meta.num_frames or 0
        if num == 0:
            raise EmptyVideoError(path, "the video stream has no decodable frame (torchcodec)")
        duration = float(meta.duration_seconds or 0.0)
        pyav_probe.check_limits(path, limits, frames=num, duration=duration)
        self.info = VideoInfo(
            path=path,
            container=fmt,
            codec=str(meta.codec),
            pix_fmt=str(meta.pixel_format),
            width=int(meta.width),  # TorchCodec reports (and decodes) display orientation
            height=int(meta.height),
            rotation=int(round((meta.rotation or 0) / 90)) * 90 % 360,
            num_frames=num,
            fps=num / duration if duration > 0 else float(meta.average_fps or 0),
            duration=duration,
            keyframe_interval=None,
        )

    def decode_sorted(self, indices: list[int], size: tuple[int, int]) -> torch.Tensor:
        """Frames at sorted unique ``indices`` as uint8 ``(T, 3, H, W)`` with ``size = (H, W)``."""
        same = size == (self.info.height, self.info.width)
        try:
            return self._decoder(None if same else size).get_frames_at(indices).data  # (T, 3, H, W)
        except (RuntimeError, IndexError) as exc:
            raise CorruptVideoError(self.path, f"torchcodec failed to decode frames {indices[:5]}: {exc}") from exc

    def close(self) -> None:
        if self._pid != os.getpid():
            _ABANDONED.append(self._decoders)
        self._decoders = {}

    def _decoder(self, size: tuple[int, int] | None):
        if self._pid != os.getpid():  # inherited over fork
            self.close()
            self._pid = os.getpid()
        if size not in self._decoders:
            decoders = require("torchcodec.decoders", purpose="backend='torchcodec'")
            transforms = None
            if size is not None:
                transforms = [require("torchcodec.transforms").Resize(size)]
            try:
                self._decoders[size] = decoders.VideoDecoder(
                    self.path,
                    stream_index=self._stream_index,
                    seek_mode="exact",
                    num_ffmpeg_threads=self.threads,
                    device="cpu",
                    transforms=transforms,
                )
            except (RuntimeError, ValueError) as exc:
                raise CorruptVideoError(self.path, f"torchcodec cannot decode it: {exc}") from exc
        return self._decoders[size]
