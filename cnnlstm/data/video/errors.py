"""Typed errors for video input. Every error names the file and the cause.

Catch :class:`VideoError` to handle any bad video; a dataset's error policy (raise, or skip and
count) works on this base class. ``error.reason`` is a short machine-readable cause
(``"open"``, ``"format"``, ``"no_video"``, ``"codec"``, ``"empty"``, ``"corrupt"``, ``"limit"``,
``"timeout"``, ``"crash"``).
"""
from __future__ import annotations

import os


class VideoError(Exception):
    """Base class: a video that cannot be used. ``path`` names the file."""

    reason = "error"

    def __init__(self, path: str | os.PathLike, message: str):
        self.path = os.fspath(path)
        self.message = message
        super().__init__(f"{self.path}: {message}")

    def __reduce__(self):  # picklable across worker processes
        return (type(self), (self.path, self.message))


class VideoOpenError(VideoError):
    """The file cannot be opened or read (missing, permission, empty file, I/O error)."""

    reason = "open"


class UnsupportedFormatError(VideoError):
    """The container format is not recognised or not allowed."""

    reason = "format"


class PlaylistError(UnsupportedFormatError):
    """A playlist (HLS/M3U, PLS, concat, DASH, SDP): never read, because FFmpeg would open the
    files or addresses it names."""

    def __init__(self, path: str | os.PathLike, message: str = ""):
        super().__init__(path, message or "a playlist: playlists are not read (FFmpeg would open every file or "
                                          "address it names); give the media files themselves, e.g. the .ts segments")


class NoVideoStreamError(VideoError):
    """The file has no video stream (audio only, data only)."""

    reason = "no_video"


class UnsupportedCodecError(VideoError):
    """The video stream's codec cannot be decoded."""

    reason = "codec"


class EmptyVideoError(VideoError):
    """The video stream has no decodable frame."""

    reason = "empty"


class CorruptVideoError(VideoError):
    """The stream is corrupt (decoding failed, or concealed errors in strict mode)."""

    reason = "corrupt"


class VideoLimitError(VideoError):
    """The video is over a limit (pixels, duration, frames, streams), checked at probe time."""

    reason = "limit"


class DecodeTimeoutError(VideoError):
    """Decoding took longer than the allowed time."""

    reason = "timeout"


class DecodeCrashError(VideoError):
    """The isolated decoding process died (a native crash or out of memory)."""

    reason = "crash"


__all__ = [
    "VideoError",
    "VideoOpenError",
    "UnsupportedFormatError",
    "PlaylistError",
    "NoVideoStreamError",
    "UnsupportedCodecError",
    "EmptyVideoError",
    "CorruptVideoError",
    "VideoLimitError",
    "DecodeTimeoutError",
    "DecodeCrashError",
]
