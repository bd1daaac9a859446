"""Open a video with typed errors, check limits, and index its packets (PyAV, no decoding).

Both backends start here, so a bad file raises the same :mod:`~cnnlstm.data.video.errors` whichever
decodes it. Frame ``i`` of a video is the ``i``-th timestamp of its video packets sorted in
presentation order; the index is built by demuxing (cheap) and cached per file and process.
"""
from __future__ import annotations

import dataclasses
import os
import stat
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..._optional import require
from .errors import (
    CorruptVideoError,
    EmptyVideoError,
    NoVideoStreamError,
    PlaylistError,
    UnsupportedCodecError,
    UnsupportedFormatError,
    VideoLimitError,
    VideoOpenError,
)
from .types import Limits, VideoInfo, is_playlist, sniff_container

# demuxers that open other files or inputs: refused even when a file's first bytes hid what it is
_DENIED_FORMATS = {"hls", "concat", "dash", "tee", "lavfi"}

_CACHE: OrderedDict = OrderedDict()  # (realpath, size, mtime, inode) -> (info, index, header facts)
_CACHE_SIZE = 32


@dataclass(frozen=True)
class PacketIndex:
    """Timestamps of the video stream's packets, in presentation order (cheap: demux only)."""

    pts: np.ndarray | None  # (N,) int64 sorted, None when timestamps are missing or repeated
    key_idx: np.ndarray  # (K,) int64 presentation indices of keyframes
    num_frames: int
    time_base: Fraction
    dropped: int  # trailing packets flagged corrupt (a truncated file), not indexed

    @property
    def seekable(self) -> bool:
        return self.pts is not None


def load_av():
    """PyAV, imported on first use."""
    return require("av", purpose="decoding videos")


def open_video(path: str, limits: Limits | None):
    """Open ``path`` and pick its video stream, raising typed errors; header limits are checked here."""
    av = load_av()
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise VideoOpenError(path, "no such file") from None
    except OSError as exc:
        raise VideoOpenError(path, f"cannot stat the file: {exc}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise VideoOpenError(path, "not a regular file (a directory, pipe or device); pass a video file")
    if info.st_size == 0:
        raise VideoOpenError(path, "the file is empty (0 bytes)")
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as exc:
        raise VideoOpenError(path, f"cannot read the file: {exc}") from exc
    if is_playlist(path, head):
        raise PlaylistError(path)
    # FFmpeg decodes a frame or two while opening (avformat_find_stream_info); max_pixels makes the
    # decoder refuse a resolution bomb there, before our own header check rejects the file.
    options = {"max_pixels": str(limits.max_pixels)} if limits and limits.max_pixels else {}
    options["protocol_whitelist"] = "file"  # a local file never makes FFmpeg reach the network
    try:
        container = av.open(path, metadata_errors="ignore", options=options)
    except MemoryError:
        raise
    except (av.error.InvalidDataError, av.error.EOFError) as exc:
        known = sniff_container(head)
        if known:
            raise CorruptVideoError(
                path, f"starts like a {known} file but its header/index is unreadable (truncated or damaged): {exc}"
            ) from exc
        what = f"not a container format FFmpeg recognises (first bytes {head[:8]!r})"
        raise UnsupportedFormatError(path, what) from exc
    except OSError as exc:
        raise VideoOpenError(path, f"cannot open: {exc}") from exc
    except av.error.FFmpegError as exc:
        raise UnsupportedFormatError(path, f"FFmpeg cannot open it: {exc}") from exc
    try:
        return container, _video_stream(container, path, limits)
    except BaseException:
        container.close()
        raise


def _video_stream(container, path: str, limits: Limits | None):
    """The first real video stream (cover art does not count), after checking header limits."""
    av = load_av()
    streams = list(container.streams)
    check_limits(path, limits, streams=len(streams))
    if container.format.name in _DENIED_FORMATS:
        raise UnsupportedFormatError(path, f"container format {container.format.name!r} is refused")
    if not streams:
        raise CorruptVideoError(path, "the container lists no streams at all: its header or index is damaged (or the "
                                      "file was cut short while being written)")
    cover = av.stream.Disposition.attached_pic
    videos = [s for s in container.streams.video if not s.disposition & cover]
    if not videos:
        kinds = ", ".join(s.type for s in streams) or "none"
        what = "an audio-only file" if streams and all(s.type == "audio" for s in streams) else "not a video"
        raise NoVideoStreamError(path, f"no video stream: {what} (streams: {kinds}); give a file with a video track")
    stream = videos[0]
    if stream.codec_context is None:
        raise UnsupportedCodecError(path, "FFmpeg has no decoder for the video stream's codec (unknown codec tag?)")
    ctx = stream.codec_context
    durations = [container.duration / 1e6 if container.duration else 0.0]
    if stream.duration and stream.time_base:
        durations.append(float(stream.duration * stream.time_base))
    check_limits(path, limits, pixels=ctx.width * ctx.height, duration=max(durations), frames=stream.frames or 0)
    return stream


def check_limits(path: str, limits: Limits | None, **values: float) -> None:
    """Raise VideoLimitError when a value (streams, pixels, duration, frames) is over its limit."""
    if limits is None:
        return
    caps = {
        "streams": limits.max_streams,
        "pixels": limits.max_pixels,
        "duration": limits.max_duration_s,
        "frames": limits.max_frames,
    }
    fields = {"streams": "max_streams", "pixels": "max_pixels", "duration": "max_duration_s", "frames": "max_frames"}
    for key, value in values.items():
        cap = caps[key]
        if cap is not None and value > cap:
            raise VideoLimitError(
                path, f"{key} = {value:g} is over the limit {fields[key]}={cap:g}; "
                      f"raise it with Limits({fields[key]}=...)"
            )


def probe(path: str, limits: Limits | None) -> tuple[VideoInfo, PacketIndex]:
    """Describe ``path`` from its header, its packets and its first decoded frame (cached per file)."""
    try:
        st = os.stat(path)
        key = (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ino)
    except OSError:
        key = None
    if key is not None and key in _CACHE:
        _CACHE.move_to_end(key)
        info, index, header = _CACHE[key]
        check_limits(path, limits, **header)
        check_limits(path, limits, duration=info.duration, frames=info.num_frames)
        return dataclasses.replace(info, path=path), index
    container, stream = open_video(path, limits)
    with container:
        ctx = stream.codec_context
        header = {"streams": len(container.streams), "pixels": ctx.width * ctx.height}
        header["duration"] = container.duration / 1e6 if container.duration else 0.0
        ctx.thread_count = 1
        index, first, last_duration = _index_packets(container, stream, path, limits)
        info = _describe(path, container, stream, index, first, last_duration)
    check_limits(path, limits, duration=info.duration, frames=info.num_frames)
    if key is not None:
        _CACHE[key] = (info, index, header)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return info, index


def _index_packets(container, stream, path: str, limits: Limits | None):
    """Demux every packet of ``stream`` (no decoding, except until the first frame comes out)."""
    av = load_av()
    pts, keys, corrupt, durations = [], [], [], []
    first, low, high = None, None, None
    demux = container.demux(stream)
    while True:
        try:
            packet = next(demux)
        except StopIteration:
            break
        except MemoryError:  # out of memory is not corruption: let it propagate
            raise
        except av.error.FFmpegError:  # the container breaks off here: keep what was read
            pts.append(None), keys.append(False), corrupt.append(True), durations.append(0)
            break
        if packet.size and not packet.is_discard:
            pts.append(packet.pts)
            keys.append(packet.is_keyframe)
            corrupt.append(packet.is_corrupt)
            durations.append(packet.duration or 0)
            if packet.pts is not None:
                low = packet.pts if low is None else min(low, packet.pts)
                high = packet.pts if high is None else max(high, packet.pts)
            if len(pts) % 256 == 0 and low is not None:  # stop a duration/frame-count bomb early
                check_limits(path, limits, frames=len(pts), duration=float((high - low) * stream.time_base))
        if first is None:
            try:
                frames = packet.decode()
            except MemoryError:  # out of memory is not corruption: let it propagate
                raise
            except av.error.FFmpegError:
                continue
            first = frames[0] if frames else None
    dropped = 0
    while corrupt and corrupt[-1]:  # truncated tail: partial packets that cannot decode
        for column in (pts, keys, corrupt, durations):
            column.pop()
        dropped += 1
    if first is None:
        what = f"{len(pts)} packets but none decodes" if pts else "no packets"
        raise EmptyVideoError(path, f"the video stream has no decodable frame ({what})")
    num = len(pts)
    if None in pts or len(set(pts)) != num:  # no usable timestamps: decode sequentially, count frames
        return PacketIndex(None, np.zeros(0, np.int64), num, stream.time_base, dropped), first, 0
    order = np.argsort(np.asarray(pts, dtype=np.int64), kind="stable")
    sorted_pts = np.asarray(pts, dtype=np.int64)[order]
    key_idx = np.flatnonzero(np.asarray(keys, dtype=bool)[order]).astype(np.int64)
    last_duration = durations[int(order[-1])]
    return PacketIndex(sorted_pts, key_idx, num, stream.time_base, dropped), first, last_duration


def _describe(path, container, stream, index: PacketIndex, first, last_duration: int) -> VideoInfo:
    rate = stream.average_rate or stream.guessed_rate
    num = index.num_frames
    if index.seekable:
        span = int(index.pts[-1] - index.pts[0])
        step = Fraction(span, num - 1) if num > 1 else Fraction(0)
        end = last_duration or step or (1 / rate / index.time_base if rate else 0)
        duration = float((span + end) * index.time_base)
    else:
        duration = container.duration / 1e6 if container.duration else (float(num / rate) if rate else 0.0)
    fps = num / duration if duration > 0 else float(rate or 0)
    rotation = int(round(first.rotation / 90)) * 90 % 360
    height, width = stream.codec_context.height or first.height, stream.codec_context.width or first.width
    if rotation in (90, 270):
        height, width = width, height
    keys = index.key_idx
    return VideoInfo(
        path=path,
        container=container.format.name,
        codec=stream.codec_context.name,
        pix_fmt=first.format.name,
        width=width,
        height=height,
        rotation=rotation,
        num_frames=num,
        fps=fps,
        duration=duration,
        keyframe_interval=float(keys[-1] - keys[0]) / (len(keys) - 1) if len(keys) > 1 else None,
        corrupt_frames=index.dropped,
    )
