"""What a video is, as plain data: resource limits, the facts a probe measures, video file names.

A leaf module: it imports none of its siblings, so the decoder, its backends, the probe and the
annotation readers all depend on it and never on each other for these types.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

# Extensions of the containers people keep video in, all read by FFmpeg (PyAV's wheels bundle it).
# GIF and image formats are left out on purpose: a still image in a class folder would become a
# one-frame "video"; list such files in a CSV to use them. Audio-only containers (.m4a, .mp3, .wav)
# are not videos; a playlist (.m3u8) names other files and is never read (see is_playlist).
VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".3gp", ".3g2", ".f4v",  # MP4 / QuickTime family
    ".mkv", ".webm",  # Matroska
    ".avi",
    ".mpg", ".mpeg", ".m2v", ".vob",  # MPEG program streams (DVD)
    ".ts", ".mts", ".m2ts", ".m2t",  # MPEG transport streams: broadcast, camcorders (AVCHD), IP cameras, HLS segments
    ".wmv", ".asf",
    ".flv",
    ".ogv",
    ".mxf",  # broadcast production
    ".dv",
    ".y4m",  # raw YUV4MPEG (codec test sequences)
    ".h264", ".264", ".h265", ".265", ".hevc",  # elementary streams (IP camera dumps; no timestamps: 25 fps assumed)
})
# playlists (HLS/M3U, PLS, FFmpeg concat, DASH manifests, SDP session files): FFmpeg would open every
# file or address they name, so they are refused, never read
PLAYLIST_EXTENSIONS = frozenset({".m3u8", ".m3u", ".pls", ".ffconcat", ".mpd", ".sdp"})
_PLAYLIST_PREFIXES = (b"#EXTM3U", b"[playlist]", b"ffconcat", b"v=0")
_BOM = b"\xef\xbb\xbf"

# The first bytes of containers FFmpeg reads: (offset, magic) -> container name.
_MAGIC = (
    (0, b"\x1a\x45\xdf\xa3", "matroska/webm"),
    (0, b"FLV", "flv"),
    (0, b"OggS", "ogg"),
    (0, b"\x00\x00\x01\xba", "mpeg-ps"),
    (0, b"\x00\x00\x01\xb3", "mpeg video"),
    (0, b"\x30\x26\xb2\x75\x8e\x66\xcf\x11", "asf/wmv"),
    (0, b"\x06\x0e\x2b\x34\x02\x05\x01\x01", "mxf"),
    (0, b"YUV4MPEG2", "yuv4mpeg"),
    (0, b"\x1f\x07\x00", "dv"),
)
_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot")


def is_video_file(name: str | os.PathLike) -> bool:
    """True for a non-hidden file name with a known video extension (case-insensitive): how
    folders, lists, ``scan``, ``train``, ``predict`` and ``stream`` tell videos from other files."""
    base = os.path.basename(os.fspath(name))
    return not base.startswith(".") and os.path.splitext(base)[1].lower() in VIDEO_EXTENSIONS


def is_playlist(name: str | os.PathLike, head: bytes = b"") -> bool:
    """True for a playlist (HLS/M3U, PLS, FFmpeg concat) by its extension or its first bytes ``head``."""
    if os.path.splitext(os.fspath(name))[1].lower() in PLAYLIST_EXTENSIONS:
        return True
    text = head.removeprefix(_BOM).lstrip()
    return text.startswith(_PLAYLIST_PREFIXES) or (text.startswith(b"<") and b"<MPD" in head)


def sniff_container(head: bytes) -> str | None:
    """The container ``head`` (a file's first bytes, 512 are enough) starts like, or None."""
    if head[4:8] in _MP4_BOXES:
        return "mp4/mov"
    if head.startswith(b"RIFF") and head[8:12] in (b"AVI ", b"AVIX"):
        return "avi"
    for packet, offset in ((188, 0), (192, 4)):  # MPEG-TS, and M2TS with its 4-byte timestamp prefix
        if len(head) > offset + packet and head[offset] == 0x47 and head[offset + packet] == 0x47:
            return "mpeg-ts"
    return next((name for at, magic, name in _MAGIC if head[at:at + len(magic)] == magic), None)


def looks_binary(head: bytes) -> bool:
    """True when ``head`` cannot be the start of a text annotation file: a known container, or NUL
    bytes (text in any 8-bit encoding has none; a media file's header almost always does)."""
    return sniff_container(head) is not None or b"\x00" in head


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


__all__ = ["VIDEO_EXTENSIONS", "PLAYLIST_EXTENSIONS", "is_video_file", "is_playlist", "sniff_container",
           "looks_binary", "Limits", "VideoInfo"]
