"""Live video sources for streaming: files, folders of files, capture devices and network URLs.

``open_source(source)`` opens one with PyAV/FFmpeg under open and read timeouts (a stalled
network source raises :class:`StreamTimeoutError` instead of hanging) and yields frames one at a
time; a folder expands to its video files in name order. Used by :mod:`cnnlstm.deploy.stream`.
"""
from __future__ import annotations

import os
import re
import time
from typing import Callable, Iterator

from .errors import (
    CorruptVideoError,
    EmptyVideoError,
    NoVideoStreamError,
    UnsupportedCodecError,
    UnsupportedFormatError,
    VideoError,
    VideoOpenError,
)
from .types import is_video_file

__all__ = ["NETWORK_SCHEMES", "StreamError", "StreamTimeoutError", "Source", "open_source", "expand_source", "is_live"]

NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https", "udp", "rtmp", "rtmps")
# Protocols FFmpeg may open under each scheme: a playlist served over http cannot reach file:// this way.
_PROTOCOLS = {
    "rtsp": "rtsp,rtp,srtp,udp,tcp", "rtsps": "rtsps,rtsp,rtp,srtp,udp,tcp,tls",
    "http": "http,https,tcp,tls,crypto", "https": "http,https,tcp,tls,crypto",
    "udp": "udp,rtp", "rtmp": "rtmp,tcp", "rtmps": "rtmps,rtmp,tcp,tls",
}
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
MAX_PIXELS = 4096 * 2304  # the decoder refuses larger frames (a live source can switch resolution mid-stream)

class StreamError(VideoError):
    """A live source failed while streaming: it dropped (unexpected end) or a read failed."""

    reason = "stream"


class StreamTimeoutError(StreamError):
    """A source did not answer within the open or read timeout (a stalled network or device)."""

    reason = "timeout"


def _kind(source: str) -> str:
    """'url', 'device', 'dir' or 'file'; an unknown URL scheme raises."""
    match = _SCHEME.match(source)
    if match:
        if match.group(1).lower() not in NETWORK_SCHEMES:
            raise UnsupportedFormatError(
                source, f"URL scheme {match.group(1)!r} is not supported; use one of {list(NETWORK_SCHEMES)}")
        return "url"
    if source.startswith("/dev/"):
        return "device"
    return "dir" if os.path.isdir(source) else "file"


class Source:
    """One opened source: its container and video stream, read with :meth:`frames`; close it after use."""

    def __init__(self, name: str, kind: str, container, stream):
        self.name, self.kind, self.container, self.stream = name, kind, container, stream
        self.live = kind != "file"
        # a known duration means the whole video exists (a file, or a file served over http): its end is normal
        self.duration = container.duration / 1e6 if container.duration and container.duration > 0 else None
        rate = stream.average_rate or stream.guessed_rate
        self.rate = float(rate) if rate else None
        stream.thread_type = "SLICE" if self.live else "AUTO"  # frame threads would delay each live frame
        stream.codec_context.options = {"max_pixels": str(MAX_PIXELS)}

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.container.close()

    def frames(self, skip: Callable[[object], bool] | None = None) -> Iterator[tuple[int, float, object]]:
        """Yield ``(index, seconds since the first frame, av.VideoFrame)`` in presentation order.

        Packets that do not decode are skipped, and so are those for which ``skip(packet)`` is
        True (a live feed that fell behind drops packets up to the next keyframe). Raises
        :class:`StreamTimeoutError` on a stall, :class:`StreamError` when a live source ends before
        its known duration (or has none), :class:`EmptyVideoError` when nothing decodes.
        """
        from .probe import load_av

        av = load_av()
        index, first, last_time, started = -1, None, 0.0, time.monotonic()
        demux = self.container.demux(self.stream)
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                break
            except av.error.ExitError as exc:  # PyAV's timeout interrupted a blocking read
                message = f"no data for the read timeout after {index + 1} frame(s); the source stalled"
                raise StreamTimeoutError(self.name, message) from exc
            except (av.error.FFmpegError, OSError) as exc:
                if not self.live:
                    raise CorruptVideoError(self.name, f"demuxing failed after {index + 1} frame(s): {exc}") from exc
                raise StreamError(self.name, f"reading failed after {index + 1} frame(s): {exc}") from exc
            if skip is not None and skip(packet):
                continue
            try:
                decoded = packet.decode()
            except MemoryError:
                raise
            except av.error.FFmpegError:
                continue  # a damaged packet: FFmpeg resynchronises at the next keyframe
            for frame in decoded:
                index += 1
                if frame.time is None:  # no timestamps: count frames (or wall time when the rate is unknown too)
                    now = index / self.rate if self.rate else time.monotonic() - started
                else:
                    first = frame.time if first is None else first
                    now = frame.time - first
                last_time = now
                yield index, now, frame
        if index < 0:
            raise EmptyVideoError(self.name, "no frame decoded")
        if self.live and not self._complete(last_time):
            end = (f"before its end ({self.duration:.1f} s)" if self.duration
                   else "(a live source does not end by itself)")
            raise StreamError(self.name, f"the stream ended after {index + 1} frame(s) at {last_time:.2f} s {end}")

    def _complete(self, last_time: float) -> bool:
        """True when the last frame is within a few frames (or half a second) of the known duration."""
        if self.duration is None:
            return False
        slack = max(0.5, 3 / self.rate) if self.rate else 0.5
        return last_time >= self.duration - slack


def open_source(source: str | os.PathLike, *, open_timeout: float = 10.0, read_timeout: float = 10.0) -> Source:
    """Open a video file, a capture device (``/dev/video0``, v4l2) or a network URL for streaming.

    Network and device reads time out after ``read_timeout`` seconds without data (opening after
    ``open_timeout``), raising :class:`StreamTimeoutError`. Bad sources raise the typed
    :class:`~cnnlstm.data.video.errors.VideoError` subclasses, each naming the source.
    """
    from .probe import load_av

    av = load_av()
    name = os.fspath(source)
    kind = _kind(name)
    if kind == "dir":
        raise VideoOpenError(name, "is a folder; stream() plays each of its videos in turn, open_source() opens one")
    if kind == "file":
        from .probe import open_video
        from .types import Limits

        container, video = open_video(name,
                                      Limits(max_duration_s=None, max_frames=None))  # streaming has no length limit
        return Source(name, kind, container, video)
    options = {"rw_timeout": str(int(read_timeout * 1e6))}
    fmt = None
    if kind == "url":
        scheme = _SCHEME.match(name).group(1).lower()
        options["protocol_whitelist"] = _PROTOCOLS[scheme]
        if scheme.startswith("rtsp"):
            options.update(rtsp_transport="tcp", timeout=str(int(read_timeout * 1e6)))  # TCP: no silent UDP loss
        if scheme == "udp":  # a reader that is late for a moment loses packets, it does not end the stream
            options.setdefault("overrun_nonfatal", "1")
    else:
        fmt = "v4l2"
        if not os.path.exists(name):
            raise VideoOpenError(name, "no such capture device; list them with: ls /dev/video*")
    try:
        container = av.open(name, format=fmt, options=options, timeout=(open_timeout, read_timeout),
                            metadata_errors="ignore")
    except MemoryError:
        raise
    except av.error.ExitError as exc:
        raise StreamTimeoutError(name, f"no answer within the open timeout ({open_timeout:g} s)") from exc
    except av.error.InvalidDataError as exc:
        raise UnsupportedFormatError(name, f"the data is not a video format FFmpeg recognises: {exc}") from exc
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoOpenError(name, f"cannot open: {exc}") from exc
    try:
        cover = av.stream.Disposition.attached_pic
        videos = [s for s in container.streams.video if not s.disposition & cover]
        if not videos:
            raise NoVideoStreamError(name, "no video stream (streams: "
                                     f"{', '.join(s.type for s in container.streams) or 'none'})")
        if videos[0].codec_context is None:
            raise UnsupportedCodecError(name, "FFmpeg has no decoder for the video stream's codec")
        return Source(name, kind, container, videos[0])
    except BaseException:
        container.close()
        raise


def is_live(source: str) -> bool:
    """True for a network URL or a capture device (it can stall or drop), False for a file."""
    return bool(_SCHEME.match(source)) or source.startswith("/dev/")


def expand_source(source: str) -> list[str] | VideoError:
    """The sources to play in turn: a folder's video files sorted by name, else the source itself."""
    if _SCHEME.match(source) or not os.path.isdir(source):
        return [source]
    files = sorted(os.path.join(source, f) for f in os.listdir(source) if is_video_file(f))
    files = [f for f in files if os.path.isfile(f)]
    return files or VideoOpenError(source, "the folder holds no video files (by extension, e.g. .mp4 .mkv .avi)")
