"""PyAV backend: decode frames by index, seeking or decoding forward, exact with B-frames.

Frames are matched by pts to the packet index of :mod:`.probe`, so B-frames and seeks that land
on a keyframe before the target never shift the answer: frame ``i`` is always the ``i``-th frame of
plain sequential decoding.

Letters: T frames, C channels, H/W height/width.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from .errors import CorruptVideoError
from .probe import load_av, open_video, probe
from .types import Limits

# Seeking (demuxer seek, decoder flush, refilling FFmpeg's frame threads) costs about this many
# decoded frames; a seek happens only when it skips more frames than that (see benchmarks/decode.py).
SEEK_COST_FRAMES = 12

# Containers inherited over fork are never freed: FFmpeg's decoder threads do not exist in the child,
# so freeing would join threads that are gone (pytorch#130610, torchcodec#766).
_ABANDONED: list = []


class PyAVVideo:
    """Decoder state for one file: the packet index, plus a container opened on first use."""

    def __init__(self, path: str, *, threads: int = 0, strict: bool = False, limits: Limits | None = Limits()):
        self.path, self.threads, self.strict, self.limits = path, threads, strict, limits
        self.info, self.index = probe(path, limits)
        if strict and self.info.corrupt_frames:
            raise CorruptVideoError(path, f"{self.info.corrupt_frames} trailing packet(s) are truncated (strict=True)")
        self._corrupt: set[int] = set()  # indices of frames seen corrupt or undecodable
        self._container = self._stream = self._frames = self._scaler = None
        self._pid = 0
        self._cur, self._cur_idx = None, -1  # last frame taken from the decoder (idx None: just seeked)
        self._hole: int | None = None  # indices in [_hole, _cur_idx) did not decode
        self._threads = threads  # drops to 1 if frame threading loses frames after a decode error

    @property
    def corrupt_frames(self) -> int:
        return len(self._corrupt)

    def decode_sorted(self, indices: list[int], size: tuple[int, int]) -> torch.Tensor:
        """Frames at sorted unique ``indices`` as uint8 ``(T, 3, H, W)`` with ``size = (H, W)``."""
        out = torch.empty((len(indices), 3, *size), dtype=torch.uint8)  # (T, 3, H, W)
        rows = out.numpy()  # shares memory with out
        for row, index in enumerate(indices):
            self._fill(rows[row], self._frame_at(index))
        return out

    def close(self) -> None:
        if self._container is not None and self._pid != os.getpid():  # inherited over fork
            _ABANDONED.append((self._container, self._frames, self._cur, self._scaler))
        elif self._container is not None:
            self._frames.close()
            self._container.close()
        self._container = self._stream = self._frames = self._cur = self._scaler = None
        self._cur_idx, self._hole = -1, None

    # -- decoding -------------------------------------------------------------------------------

    def _open(self) -> None:
        """(Re)open the container at its start; a container inherited over fork is abandoned."""
        self.close()
        container, stream = open_video(self.path, self.limits)
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = self._threads
        options = {"err_detect": "explode"} if self.strict else {}  # strict: raise instead of concealing
        if self.limits is not None and self.limits.max_pixels:
            options["max_pixels"] = str(self.limits.max_pixels)  # a later frame cannot grow past the limit
        stream.codec_context.options = options
        self._container, self._stream, self._pid = container, stream, os.getpid()
        self._scaler = load_av().video.reformatter.VideoReformatter()  # one swscale context, reused
        self._frames = self._decode()

    def _frame_at(self, index: int):
        try:
            return self._find(index)
        except CorruptVideoError:
            if self.strict or self._threads == 1:
                raise
            # With frame threads, a decode error can surface at the final flush and swallow the
            # frames still queued there; single-threaded decoding reports it on its own packet.
            self._threads = 1
            self._open()
            return self._find(index)

    def _find(self, index: int):
        if self._container is None or self._pid != os.getpid():
            self._open()
        if self._cur is not None and index == self._cur_idx:
            return self._cur
        if self._hole is not None and self._hole <= index < self._cur_idx:
            return self._missing(index, self._cur)  # a known hole: do not decode again
        if self._want_seek(index):
            self._seek_before(index)
        for back in (1, 2):
            frame = self._forward_to(index)
            if frame is not None:
                return frame
            self._seek_before(index, back=back)  # the seek landed past the target: start earlier
        frame = self._forward_to(index)
        if frame is None:  # still past it: decode from the very start, which cannot overshoot
            self._open()
            frame = self._forward_to(index)
        return frame

    def _want_seek(self, index: int) -> bool:
        """Seek when going back, or when the keyframe before ``index`` is far past our position."""
        pos = self._cur_idx
        if pos is None:  # just seeked: the decoder is already before the target
            return False
        if not self.index.seekable:
            if index < pos:
                self._open()
            return False
        if index < pos:
            return True
        k = np.searchsorted(self.index.key_idx, index, side="right") - 1
        return k >= 0 and int(self.index.key_idx[k]) - pos > SEEK_COST_FRAMES

    def _seek_before(self, index: int, back: int = 0) -> None:
        """Seek to the keyframe at or before ``index`` (``back`` keyframes earlier), or restart."""
        k = int(np.searchsorted(self.index.key_idx, index, side="right")) - 1 - back
        if k <= 0 or not self.index.seekable:
            self._open()
            return
        self._frames.close()
        try:
            self._container.seek(int(self.index.pts[self.index.key_idx[k]]), stream=self._stream, backward=True)
        except load_av().error.FFmpegError:
            self._open()
            return
        self._frames = self._decode()
        self._cur, self._cur_idx, self._hole = None, None, None

    def _forward_to(self, index: int):
        """Decode forward to ``index``; None when the seek landed past it (first frame beyond it, or none)."""
        fresh = self._cur_idx is None
        before = self._cur_idx if self._cur_idx is not None else -1
        for i, frame in self._frames:
            self._cur, self._cur_idx, self._hole = frame, i, None
            if i == index:
                return frame
            if i > index:
                if fresh:
                    return None
                self._hole = before + 1
                return self._missing(index, frame)
            fresh, before = False, i
        if fresh and self._cur_idx is None:
            return None  # nothing decoded since the seek: it landed too late (or in a damaged stretch)
        return self._missing(index, self._cur)  # end of stream before the target

    def _missing(self, index: int, substitute):
        """A frame that the index lists but that does not decode: raise (strict) or repeat a neighbour."""
        if self.strict or substitute is None:
            raise CorruptVideoError(self.path, f"frame {index} of {self.info.num_frames} does not decode")
        self._corrupt.add(index)
        return substitute

    def _decode(self):
        """Yield ``(index, frame)`` in presentation order from the container's current position."""
        av = load_av()
        demux = self._container.demux(self._stream)
        count = -1
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                return
            except MemoryError:  # out of memory is not corruption: let it propagate
                raise
            except av.error.FFmpegError as exc:
                if self.strict:
                    raise CorruptVideoError(self.path, f"demuxing failed: {exc}") from exc
                return
            if packet.is_corrupt and self.index.seekable and self._indexed(packet.pts) is None:
                continue  # a truncated packet the index dropped: it cannot decode, and may poison the flush
            try:
                frames = packet.decode()
            except MemoryError:  # out of memory is not corruption: let it propagate
                raise
            except av.error.FFmpegError as exc:
                if self.strict:
                    raise CorruptVideoError(self.path, f"decoding failed near pts {packet.pts}: {exc}") from exc
                continue
            for frame in frames:
                if self.index.seekable:
                    i = self._indexed(frame.pts)
                    if i is None:
                        continue  # a frame the packet index does not list
                else:
                    count += 1
                    i = count
                if frame.is_corrupt:
                    if self.strict:
                        raise CorruptVideoError(self.path, f"frame {i} is corrupt (concealed by FFmpeg)")
                    self._corrupt.add(i)
                yield i, frame

    def _indexed(self, pts: int | None) -> int | None:
        """Presentation index of ``pts``, or None when the index does not list it."""
        if pts is None or not self.index.seekable:
            return None
        i = int(np.searchsorted(self.index.pts, pts))
        return i if i < self.index.num_frames and self.index.pts[i] == pts else None

    def _fill(self, out: np.ndarray, frame) -> None:
        """Write ``frame`` into ``out`` uint8 ``(3, H, W)`` as RGB in display orientation.

        FFmpeg's swscale converts and resizes to planar RGB (gbrp), so each channel is one plain
        copy; an interleaved rgb24 frame would need a slow (H, W, 3) -> (3, H, W) transpose.
        """
        k = self.info.rotation // 90
        height, width = out.shape[1:]
        coded_h, coded_w = (width, height) if k % 2 else (height, width)
        full_range = {"src_color_range": 2} if frame.color_range == 2 else {}  # JPEG/full range
        planar = self._scaler.reformat(frame, coded_w, coded_h, "gbrp", threads=1, **full_range)
        for channel, plane in zip((1, 2, 0), planar.planes, strict=False):  # gbrp stores G, B, R
            image = np.frombuffer(plane, np.uint8).reshape(coded_h, plane.line_size)[:, :coded_w]  # (H, W)
            out[channel] = np.rot90(image, k) if k else image
