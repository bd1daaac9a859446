"""What a video is, as plain data: resource limits, the facts a probe measures, video file names.

A leaf module: it imports none of its siblings, so the decoder, its backends, the probe and the
annotation readers all depend on it and never on each other for these types.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ogv", ".3gp"}
)

def is_video_file(name: str | os.PathLike) -> bool:
    """True for a non-hidden file name with a known video extension (case-insensitive)."""
    base = os.path.basename(os.fspath(name))
    return not base.startswith(".") and os.path.splitext(base)[1].lower() in VIDEO_EXTENSIONS


@dataclass(frozen=True)
class Limits:
    """Resource limits checked when a video is probed, before any frame is decoded.

    ``None`` disables a limit. Pixels are ``width * height`` of the coded picture; duration is in
    seconds; streams counts every stream in the container (audio and subtitles too).
    """

    max_pixels: int | None = 4096 * 2304
    max_duration_s: float | None = 4 * 3600
    max_streams: int | None = 32
    max_frames: int | None = None

    def __post_init__(self):
        for name in ("max_pixels", "max_duration_s", "max_streams", "max_frames"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not value > 0):
                raise ValueError(f"Limits.{name} must be a positive number or None; got {value!r}")


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds, measured on the packets and frames rather than read from the header."""

    path: str
    container: str
    codec: str
    pix_fmt: str
    width: int  # display orientation (after rotation)
    height: int
    rotation: int  # degrees counter-clockwise applied for display: 0, 90, 180 or 270
    num_frames: int  # frames that can be indexed (packets with a timestamp, not the header's claim)
    fps: float  # num_frames / duration
    duration: float  # seconds, from the first frame's pts to the end of the last frame
    keyframe_interval: float | None  # mean spacing of keyframes, in frames
    corrupt_frames: int = 0  # packets the demuxer flagged corrupt and that were dropped (truncation)


__all__ = ["VIDEO_EXTENSIONS", "is_video_file", "Limits", "VideoInfo"]
