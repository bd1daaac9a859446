"""Decode the frames a long video's plan needs, once and in order, in an isolated worker process.

Windowed prediction and feature extraction read many frames spread over a whole (untrusted,
possibly hour-long) video. :class:`FrameWorker` keeps one spawned process that opens a video
(:meth:`FrameWorker.open` returns its :class:`~cnnlstm.data.video.types.VideoInfo`), then streams
the frames at a sorted list of indices back in chunks (:meth:`FrameWorker.frames`). The reader
decodes forward between indices and seeks only past a far keyframe (the rule of
:class:`~cnnlstm.data.video.decode.VideoReader`), so a dense plan is one sequential pass.

Memory is flat in the video's length: the worker holds one chunk, the pipe blocks it until the
caller has taken the previous one, and ``prepare`` (e.g. the eval transform's resize, run in the
worker) shrinks each chunk before it crosses the pipe, so a 720p hour never holds 720p frames.
A chunk that takes longer than ``timeout`` seconds kills the worker (:class:`DecodeTimeoutError`),
a dead worker is a :class:`DecodeCrashError`; both name the file, cost that one video, and the
next :meth:`~FrameWorker.open` starts a fresh worker.

Letters: N frames in a chunk, C channels, H/W height/width.
"""
from __future__ import annotations

import math
import multiprocessing as mp
import os
import pickle
import signal
import traceback
from typing import Callable, Iterator, Sequence

import torch

from .errors import DecodeCrashError, DecodeTimeoutError
from .isolate import allow_children, describe_exit, limit_memory
from .types import Limits, VideoInfo

DEFAULT_CHUNK = 32  # frames per message: large enough to amortise the pipe, small enough to stay flat
PREPARE_FRAMES = 4  # frames per prepare() call in the worker (its intermediates, e.g. float copies, stay small)


def _reply(conn, kind: str, *payload) -> None:
    conn.send_bytes(pickle.dumps((kind, *payload)))


def _serve(conn, max_memory_mb: int | None) -> None:
    """Worker loop: ``("open", alarm_s, path, limits, threads)`` -> ``("info", VideoInfo)``;
    ``("frames", alarm_s, indices, chunk, prepare)`` -> ``("chunk", indices (N,), frames)`` ...
    ``("done", corrupt)``. Any exception goes back as ``("error", exc, traceback)``. ``alarm_s`` is
    a backstop for an orphan: opening a video or decoding one chunk that takes that long ends the
    worker by itself (a parent that is gone is otherwise noticed on the pipe: EOF or a broken pipe)."""
    from .decode import VideoReader

    if max_memory_mb is not None:
        limit_memory(max_memory_mb)
    reader = None
    while True:
        signal.alarm(0)  # waiting and sending need no alarm: the pipe reports a dead parent
        try:
            message = pickle.loads(conn.recv_bytes())
        except EOFError:
            return
        if message is None:
            return
        try:
            if message[0] == "open":
                if reader is not None:
                    reader.close()
                _, alarm_s, path, limits, threads = message
                signal.alarm(alarm_s)
                reader = VideoReader(path, limits=limits, threads=threads)
                signal.alarm(0)
                _reply(conn, "info", reader.info)
                continue
            _, alarm_s, indices, chunk, prepare = message
            for start in range(0, len(indices), chunk):
                part = indices[start:start + chunk]
                signal.alarm(alarm_s)
                frames = reader.get_frames(part)  # (N, C, H, W) uint8
                if prepare is not None:  # a few frames at a time: a float resize of 32 720p frames is 350 MB
                    frames = torch.cat([prepare(frames[i:i + PREPARE_FRAMES])
                                        for i in range(0, len(frames), PREPARE_FRAMES)])
                signal.alarm(0)
                _reply(conn, "chunk", torch.as_tensor(part), frames)
            _reply(conn, "done", reader.corrupt_frames)
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
            signal.alarm(0)
            _reply(conn, "error", exc, traceback.format_exc())


class FrameWorker:
    """One isolated decoding process, reused across videos; see the module docstring.

    Args:
        timeout: seconds allowed for opening a video (the first open also starts the worker) and
            for each chunk of frames.
        limits: checked when a video is opened (see :class:`Limits`).
        threads: FFmpeg decoding threads in the worker (0: FFmpeg's choice).
        max_memory_mb: caps the worker's extra address space (Linux), None: no cap.
    """

    def __init__(self, *, timeout: float = 120.0, limits: Limits | None = Limits(), threads: int = 0,
                 max_memory_mb: int | None = None):
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds; got {timeout!r}")
        self.timeout, self.limits, self.threads, self.max_memory_mb = timeout, limits, threads, max_memory_mb
        self._ctx = mp.get_context("spawn")
        self._process = self._conn = None
        self._path = ""
        self.corrupt_frames = 0  # of the video opened last, once its frames have been read
        self.alarm_margin = 60.0  # the worker's own backstop: timeout + this, per open and per chunk

    def __enter__(self) -> FrameWorker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker (a later :meth:`open` starts a new one)."""
        if self._process is None:
            return
        if self._process.is_alive():
            try:
                self._conn.send_bytes(pickle.dumps(None))
                self._process.join(2)
            except OSError:
                pass
            if self._process.is_alive():
                self._process.kill()
        self._process.join()
        self._conn.close()
        self._process = self._conn = None

    def _start(self) -> None:
        self._conn, child = self._ctx.Pipe()
        self._process = self._ctx.Process(target=_serve, args=(child, self.max_memory_mb),
                                          name="cnnlstm-frames", daemon=True)
        try:
            with allow_children():
                self._process.start()
        except BaseException:
            self._conn.close()
            self._process = self._conn = None
            raise
        finally:
            child.close()

    def _alarm(self) -> int:
        return math.ceil(self.timeout + self.alarm_margin)

    def _ask(self, message: tuple) -> None:
        if self._process is None or not self._process.is_alive():
            self.close()
            self._start()
        self._conn.send_bytes(pickle.dumps(message))

    def _receive(self) -> tuple:
        """The worker's next message; a timeout or a crash kills the worker and raises."""
        if not self._conn.poll(self.timeout):
            self._kill()
            raise DecodeTimeoutError(self._path, f"no frames for {self.timeout:g} s; the decoding worker was killed")
        try:
            return pickle.loads(self._conn.recv_bytes())
        except (EOFError, OSError):
            self._process.join(5)
            code = self._process.exitcode
            self._kill()
            raise DecodeCrashError(self._path, f"the decoding worker died ({describe_exit(code)})") from None

    def _raise(self, message: tuple) -> None:
        """Re-raise an exception the worker reported (the worker is idle again, except after MemoryError)."""
        _, exc, child_traceback = message
        if isinstance(exc, MemoryError):
            self._kill()
            raise DecodeCrashError(self._path, "the decoding worker ran out of memory "
                                   f"(max_memory_mb={self.max_memory_mb})")
        if not hasattr(exc, "path") and hasattr(exc, "add_note"):
            exc.add_note(f"raised in the decoding worker for {self._path}:\n{child_traceback}")
        raise exc

    def _kill(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.kill()
        self.close()

    def open(self, path: str | os.PathLike) -> VideoInfo:
        """Open ``path`` in the worker (probe, limits, packet index); typed VideoError when it is bad."""
        self._path, self.corrupt_frames = os.fspath(path), 0
        self._ask(("open", self._alarm(), os.path.abspath(self._path), self.limits, self.threads))
        message = self._receive()
        if message[0] == "error":
            self._raise(message)
        return message[1]

    def frames(self, indices: Sequence[int], *, chunk: int = DEFAULT_CHUNK,
               prepare: Callable[[torch.Tensor], torch.Tensor] | None = None
               ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(indices (N,), frames)`` chunks of the opened video in order: uint8 (N, C, H, W),
        or what ``prepare`` (a picklable callable, run in the worker on a few frames at a time, so it
        must treat frames independently, like a resize) makes of them.

        ``indices`` must be sorted and unique. Leaving the loop early kills the worker (it is
        mid-stream); the next :meth:`open` starts another.
        """
        indices = [int(i) for i in indices]
        if any(b <= a for a, b in zip(indices, indices[1:], strict=False)):
            raise ValueError("indices must be sorted and unique (one sequential pass over the video)")
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ValueError(f"chunk must be an int >= 1; got {chunk!r}")
        if not indices:
            return
        self._ask(("frames", self._alarm(), indices, chunk, prepare))
        synced = False  # True once the worker has answered the whole request (done or error)
        try:
            while True:
                message = self._receive()
                if message[0] == "done":
                    synced, self.corrupt_frames = True, message[1]
                    return
                if message[0] == "error":
                    synced = True
                    self._raise(message)
                yield message[1], message[2]
        finally:
            if not synced:  # stopped early (or timed out): the worker may be blocked mid-stream
                self._kill()


__all__ = ["FrameWorker", "DEFAULT_CHUNK"]
