"""Write frames to a real video file with PyAV (used by the synthetic datasets and the tests).

Letters: T frames, H/W height/width.
"""
from __future__ import annotations

import os
from fractions import Fraction
from typing import Mapping

import numpy as np

from ..._optional import require

# container extension -> default codec that the container holds and PyAV's FFmpeg encodes
DEFAULT_CODECS = {
    ".mp4": "libx264",
    ".mkv": "libx264",
    ".mov": "libx264",
    ".avi": "mpeg4",
    ".webm": "libvpx-vp9",
}


def write_video(
    path: str | os.PathLike,
    frames,
    *,
    fps: float = 25,
    codec: str | None = None,
    pix_fmt: str = "yuv420p",
    options: Mapping[str, str] | None = None,
    bit_rate: int | None = None,
) -> str:
    """Encode ``frames`` uint8 ``(T, H, W, 3)`` RGB (numpy or torch) into ``path``.

    The container follows the extension; ``codec`` defaults to one the container holds
    (see ``DEFAULT_CODECS``). ``options`` go to the encoder (e.g. ``{"crf": "0"}`` for lossless
    H.264, ``{"g": "1"}`` for all-keyframes). Returns the path as a string.
    """
    av = require("av", purpose="writing videos")
    path = os.fspath(path)
    array = np.asarray(frames.numpy() if hasattr(frames, "numpy") else frames)
    if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8:
        raise ValueError(
            f"write_video expects uint8 frames of shape (T, H, W, 3); got {array.dtype} {tuple(array.shape)}"
        )
    if len(array) == 0:
        raise ValueError(f"write_video needs at least one frame for {path}")
    ext = os.path.splitext(path)[1].lower()
    codec = codec or DEFAULT_CODECS.get(ext, "libx264")
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(path, mode="w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width = array.shape[2]
        stream.height = array.shape[1]
        stream.pix_fmt = pix_fmt
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        if options:
            stream.options = dict(options)
        for image in array:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
