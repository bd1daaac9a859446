"""Run a function in a child process, so that a native crash or hang costs one item, not the run.

FFmpeg can segfault, abort or spin while holding the GIL on hostile input (PyAV#2344, decord#25,
decord#373); ``try/except`` cannot catch that. ``run_isolated`` decodes in a spawned worker with a
timeout (and optionally a memory limit), always kills the worker, and turns its fate into a typed
:class:`~cnnlstm.data.video.errors.VideoError`.
"""
from __future__ import annotations

import contextlib
import importlib
import math
import multiprocessing as mp
import os
import pickle
import signal
import traceback
from typing import Any, Callable

from .errors import DecodeCrashError, DecodeTimeoutError, VideoError


def run_isolated(
    fn: Callable[..., Any],
    *args: Any,
    timeout: float,
    path: str | os.PathLike,
    max_memory_mb: int | None = None,
    **kwargs: Any,
) -> Any:
    """Return ``fn(*args, **kwargs)`` computed in a fresh process (spawn context).

    ``fn``, its arguments and its result must pickle (``fn`` defined at module level). A
    :class:`VideoError` (or any other exception) raised in the child is re-raised here with its
    type. ``timeout`` (seconds, including the worker's start-up) -> :class:`DecodeTimeoutError`;
    the worker dying (segfault, abort, out of memory) -> :class:`DecodeCrashError`. Both name
    ``path``. ``max_memory_mb`` caps the worker's extra address space (Linux ``RLIMIT_AS``).
    Works inside DataLoader workers.
    """
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds; got {timeout!r}")
    path = os.fspath(path)
    ctx = mp.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    worker = ctx.Process(
        target=_child, args=(sender, fn, args, kwargs, timeout, max_memory_mb), name="cnnlstm-decode", daemon=True
    )
    try:
        with allow_children():
            worker.start()
        sender.close()  # the child holds the only writer: EOF on the pipe means it died
        if not receiver.poll(timeout):
            raise DecodeTimeoutError(path, f"decoding took longer than {timeout:g} s; the worker was killed")
        try:
            payload = receiver.recv_bytes()
        except EOFError:
            worker.join(5)
            raise DecodeCrashError(path, f"the decoding worker died ({describe_exit(worker.exitcode)})") from None
    finally:
        if worker.is_alive():
            worker.kill()
        if worker.pid is not None:
            worker.join()
        receiver.close()
        sender.close()
    ok, value, child_traceback = pickle.loads(payload)
    if ok:
        return value
    if isinstance(value, MemoryError):
        raise DecodeCrashError(path, f"the decoding worker ran out of memory (max_memory_mb={max_memory_mb})")
    if not isinstance(value, VideoError) and child_traceback and hasattr(value, "add_note"):
        value.add_note(f"raised in the isolated worker:\n{child_traceback}")
    raise value


def _child(sender, fn, args, kwargs, timeout: float, max_memory_mb: int | None) -> None:
    """Worker body: compute, then send ``(ok, value, traceback)`` pickled as bytes."""
    signal.alarm(math.ceil(timeout) + 5)  # backstop: dies by itself if the parent is gone
    try:
        if max_memory_mb is not None:
            # Load FFmpeg's libraries before the cap: it should measure decoding, not library mapping.
            with contextlib.suppress(ImportError):
                importlib.import_module("av")
            limit_memory(max_memory_mb)
        result = (True, fn(*args, **kwargs), "")
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        result = (False, exc, traceback.format_exc())
    try:
        payload = pickle.dumps(result)
    except Exception as exc:  # noqa: BLE001 - an unpicklable result or exception
        payload = pickle.dumps((False, RuntimeError(f"the isolated call's outcome does not pickle: {exc!r}"), ""))
    sender.send_bytes(payload)
    sender.close()


def limit_memory(max_memory_mb: int) -> None:
    """Cap the address space at what is mapped now plus ``max_memory_mb`` (Linux only)."""
    import resource

    with open("/proc/self/statm") as f:
        mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    cap = mapped + max_memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))


def describe_exit(code: int | None) -> str:
    if code is None:
        return "no exit code"
    if code < 0:
        name = signal.Signals(-code).name
        hint = ", likely killed for memory" if -code == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exit code {code}"


@contextlib.contextmanager
def allow_children():
    """DataLoader workers are daemonic, and multiprocessing forbids their children; ours is always
    killed and joined by ``run_isolated`` (and alarms itself), so lift the flag while starting it."""
    current = mp.current_process()
    daemon = current._config.get("daemon")  # noqa: SLF001 - no public switch exists
    current._config["daemon"] = False
    try:
        yield
    finally:
        if daemon is not None:
            current._config["daemon"] = daemon
        else:
            current._config.pop("daemon", None)


__all__ = ["run_isolated"]
