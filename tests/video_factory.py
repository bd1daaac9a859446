"""Generate special test videos at test time (tiny, seconds, no stored binaries).

Each helper writes one kind of input named in docs/RELIABILITY.md and returns its path; the
``run_isolated`` helpers at the bottom are module-level so a spawned worker can import them.
Letters: T frames, H/W height/width.
"""
from __future__ import annotations

import os
import signal
import time
from fractions import Fraction
from typing import Mapping, Sequence

import av
import numpy as np

from cnnlstm.data.video.encode import write_video
from cnnlstm.data.video.errors import CorruptVideoError

LOSSLESS = dict(codec="libx264rgb", pix_fmt="rgb24", options={"crf": "0"})


def make_frames(num: int = 24, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """uint8 ``(T, H, W, 3)``: a moving gradient plus fixed noise, every frame different.

    Smooth enough that x264 keeps P/B-frames (random noise would make every frame a keyframe).
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    noise = rng.integers(0, 24, (height, width, 3))
    frames = np.empty((num, height, width, 3), np.uint8)
    for t in range(num):
        frames[t, ..., 0] = (x * 3 + t * 7) % 200
        frames[t, ..., 1] = (y * 4 + t * 5) % 200
        frames[t, ..., 2] = (x + y + t * 11) % 200
        frames[t] += noise.astype(np.uint8)
    return frames


def write(
    path: str | os.PathLike,
    frames: np.ndarray,
    *,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    fps: float = 25,
    options: Mapping[str, str] | None = None,
    container_options: Mapping[str, str] | None = None,
    rotation: int | None = None,
    pts: Sequence[int] | None = None,
    time_base: Fraction | None = None,
) -> str:
    """A PyAV writer with what ``write_video`` lacks: rotation, explicit pts (VFR), muxer options."""
    path = os.fspath(path)
    with av.open(path, "w", options=dict(container_options or {})) as container:
        stream = container.add_stream(codec, rate=None if pts is not None else Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        if options:
            stream.options = dict(options)
        if rotation:
            stream.set_display_rotation(rotation)
        if pts is not None:
            stream.time_base = stream.codec_context.time_base = time_base or Fraction(1, 1000)
        for t, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = int(pts[t]), stream.codec_context.time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def lossless(path, frames: np.ndarray, **options: str) -> str:
    """Exact RGB (libx264rgb, crf 0) in Matroska; ``options`` add to the encoder's."""
    return write_video(path, frames, codec=LOSSLESS["codec"], pix_fmt="rgb24", options={"crf": "0", **options})


def bframes(path, frames: np.ndarray, gop: int = 6) -> str:
    """Lossless, a fixed short GOP with B-frames (pts != dts): random access must equal sequential."""
    return lossless(path, frames, g=str(gop), keyint_min=str(gop), bf="3", sc_threshold="0")


def rotated(path, frames: np.ndarray, degrees: int = 90) -> str:
    """Lossless mp4 with a display matrix rotating by ``degrees`` counter-clockwise."""
    return write(path, frames, codec="libx264rgb", pix_fmt="rgb24", options={"crf": "0"}, rotation=degrees)


def ten_bit(path, frames: np.ndarray) -> str:
    """FFV1 yuv444p10le (lossless 10-bit)."""
    return write(path, frames, codec="ffv1", pix_fmt="yuv444p10le")


def gray(path, frames: np.ndarray) -> str:
    """FFV1 gray (one channel)."""
    return write(path, frames, codec="ffv1", pix_fmt="gray")


def mjpeg_full_range(path, frames: np.ndarray) -> str:
    """MJPEG yuvj420p in AVI (full range: Y spans 0..255)."""
    return write(path, frames, codec="mjpeg", pix_fmt="yuvj420p", options={"q:v": "2"})


def vfr(path, frames: np.ndarray, pts_ms: Sequence[int]) -> str:
    """Lossless mkv with irregular timestamps (milliseconds)."""
    return write(path, frames, codec="libx264rgb", pix_fmt="rgb24", options={"crf": "0", "bf": "0"}, pts=pts_ms)


def mp4(path, frames: np.ndarray, *, faststart: bool) -> str:
    """H.264 mp4 with its index (moov) at the end, or at the start with ``faststart``."""
    muxer = {"movflags": "faststart"} if faststart else {}
    return write(path, frames, options={"g": "10"}, container_options=muxer)


def truncate(src, dst, keep: float = 0.6, *, head: bool = False) -> str:
    """Copy ``src`` keeping its first ``keep`` fraction (or, with ``head``, dropping that much)."""
    data = open(src, "rb").read()
    cut = int(len(data) * keep)
    open(dst, "wb").write(data[cut:] if head else data[:cut])
    return os.fspath(dst)


def bit_flip(src, dst, flips: int = 40, seed: int = 0) -> str:
    """Copy ``src`` with ``flips`` bytes inverted inside video packets after the first keyframe.

    Only payload bytes change (the container's structure stays intact), so FFmpeg demuxes every
    packet and conceals the damage: the frames come out flagged ``is_corrupt``.
    """
    with av.open(os.fspath(src)) as container:
        spans = [(p.pos + 8, p.size - 8) for p in container.demux(video=0) if p.size > 16 and p.pos is not None]
    data = bytearray(open(src, "rb").read())
    rng = np.random.default_rng(seed)
    for _ in range(flips):
        start, size = spans[1 + int(rng.integers(len(spans) - 1))]
        data[start + int(rng.integers(size))] ^= 0xFF
    open(dst, "wb").write(bytes(data))
    return os.fspath(dst)


def random_bytes(path, size: int = 4096, seed: int = 0) -> str:
    open(path, "wb").write(np.random.default_rng(seed).bytes(size))
    return os.fspath(path)


def unknown_codec(path, frames: np.ndarray) -> str:
    """Matroska whose video CodecID is renamed (same length) to one FFmpeg does not know."""
    tmp = lossless(f"{path}.src.mkv", frames)
    data = open(tmp, "rb").read()
    if b"V_MPEG4/ISO/AVC" not in data:
        raise RuntimeError("could not find the H.264 CodecID to rename")
    open(path, "wb").write(data.replace(b"V_MPEG4/ISO/AVC", b"V_ZZZZZ/ISO/ZZZ"))
    os.remove(tmp)
    return os.fspath(path)


def audio_only(path, seconds: float = 0.2, rate: int = 8000) -> str:
    """PCM audio in Matroska, no video stream."""
    with av.open(os.fspath(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=rate)
        samples = np.zeros((1, int(seconds * rate)), np.int16)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in list(stream.encode(frame)) + list(stream.encode()):
            container.mux(packet)
    return os.fspath(path)


def zero_frame_video(path, height: int = 48, width: int = 64) -> str:
    """Matroska with a configured H.264 track that holds no packet (plus a short audio track)."""
    with av.open(os.fspath(path), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("pcm_s16le", rate=8000)
        container.start_encoding()
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in list(audio.encode(frame)) + list(audio.encode()):
            container.mux(packet)
    return os.fspath(path)


def huge_resolution(path, side: int = 8192) -> str:
    """One black ``side x side`` H.264 frame: a few hundred KB that would decode to 200 MB."""
    black = np.zeros((1, side, side, 3), np.uint8)
    return write(path, black, options={"preset": "ultrafast"})


def long_duration(path, hours: float = 5.0) -> str:
    """Three tiny frames spread over ``hours``: a duration bomb a few KB big."""
    step = int(hours * 3600 * 1000 / 2)
    return write(path, make_frames(3, 16, 16), pts=[0, step, 2 * step], options={"bf": "0"})


# -- functions for run_isolated (module level, so a spawned worker imports them) ---------------


def crash() -> None:
    """Die like a native decoder bug would."""
    os.kill(os.getpid(), signal.SIGSEGV)


def hang(seconds: float = 60.0) -> None:
    time.sleep(seconds)


def raise_corrupt(path: str) -> None:
    raise CorruptVideoError(path, "raised in the worker")


def allocate(megabytes: int) -> int:
    return len(bytearray(megabytes * 2**20))


def _peak_rss_mb() -> float:
    """This process's resident-memory high-water mark (VmHWM; unlike ru_maxrss it restarts at exec)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def probe_peak_memory(path: str) -> tuple[str, float]:
    """In a fresh process: the error ``probe(path)`` raises and how many MB the peak RSS grew by."""
    from cnnlstm.data.video.decode import probe
    from cnnlstm.data.video.errors import VideoError

    warmup = write(f"{path}.warmup.mkv", make_frames(2, 16, 16))
    probe(warmup)  # load the libraries first
    os.remove(warmup)
    with open("/proc/self/clear_refs", "w") as f:  # restart the high-water mark here
        f.write("5")
    before = _peak_rss_mb()
    try:
        probe(path)
        outcome = "ok"
    except VideoError as exc:
        outcome = type(exc).__name__
    return outcome, _peak_rss_mb() - before


def slow_frames(frames, seconds: float = 60.0):
    """A ``prepare`` for FrameWorker that stalls (a hung decoder, as the worker's caller sees it)."""
    time.sleep(seconds)
    return frames


def crash_on_frames(frames) -> None:
    """A ``prepare`` for FrameWorker that dies like a native decoder bug."""
    crash()
