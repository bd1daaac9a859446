"""A pool of long-lived isolated worker processes, with a timeout per task.

``run_isolated`` (isolate.py) starts a fresh process per call, which costs a Python + torch
start-up each time. For many untrusted files (``cnnlstm scan``), this pool keeps ``workers``
spawned processes and sends them one task at a time; a task that passes its timeout gets its
worker killed and replaced (:class:`DecodeTimeoutError`), a worker that dies is replaced
(:class:`DecodeCrashError`). Either way it costs that one item, never the run.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import time
import traceback
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Iterable, Iterator

from .errors import DecodeCrashError, DecodeTimeoutError
from .isolate import allow_children, describe_exit, limit_memory


def _serve(conn: Connection, max_memory_mb: int | None) -> None:
    """Worker loop: receive (fn, args), send back (ok, value, traceback), until told to stop."""
    if max_memory_mb is not None:
        limit_memory(max_memory_mb)
    while True:
        try:
            message = conn.recv_bytes()
        except EOFError:
            return
        fn, args = pickle.loads(message)
        if fn is None:
            return
        try:
            result = (True, fn(*args), "")
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
            result = (False, exc, traceback.format_exc())
        try:
            payload = pickle.dumps(result)
        except Exception as exc:  # noqa: BLE001
            payload = pickle.dumps((False, RuntimeError(f"the task's outcome does not pickle: {exc!r}"), ""))
        conn.send_bytes(payload)


class _Worker:
    def __init__(self, ctx, max_memory_mb: int | None):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, max_memory_mb), name="cnnlstm-pool", daemon=True)
        with allow_children():
            self.process.start()
        child.close()
        self.task: tuple[Any, str] | None = None  # (key, path)
        self.deadline = 0.0

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()


class IsolatedPool:
    """``workers`` spawned processes; :meth:`map_unordered` runs ``fn(*args)`` for each task.

    ``fn`` must be a module-level function; ``timeout`` counts from when a task is handed to a
    worker (the first task also pays the worker's start-up, so keep timeouts generous).
    """

    def __init__(self, workers: int = 2, *, timeout: float = 60.0, max_memory_mb: int | None = None):
        if workers < 1 or not timeout > 0:
            raise ValueError(f"need workers >= 1 and timeout > 0; got workers={workers}, timeout={timeout}")
        self._ctx = mp.get_context("spawn")
        self.timeout, self.max_memory_mb = timeout, max_memory_mb
        self._workers = [_Worker(self._ctx, max_memory_mb) for _ in range(workers)]

    def __enter__(self) -> "IsolatedPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for worker in self._workers:
            if worker.process.is_alive() and worker.task is None:
                try:
                    worker.conn.send_bytes(pickle.dumps((None, ())))
                except OSError:
                    pass
                worker.process.join(2)
            worker.kill()
        self._workers = []

    def _replace(self, worker: _Worker) -> _Worker:
        worker.kill()
        fresh = _Worker(self._ctx, self.max_memory_mb)
        self._workers[self._workers.index(worker)] = fresh
        return fresh

    def map_unordered(self, fn: Callable, tasks: Iterable[tuple[Any, str, tuple]]) -> Iterator[tuple[Any, Any]]:
        """Tasks are ``(key, path, args)``; yields ``(key, result)`` as they finish, where a failed
        task's result is the exception it raised (typed VideoError for timeouts and crashes)."""
        pending = iter(tasks)
        busy = 0

        def assign(worker: _Worker) -> bool:
            for key, path, args in pending:
                worker.task, worker.deadline = (key, os.fspath(path)), time.monotonic() + self.timeout
                worker.conn.send_bytes(pickle.dumps((fn, tuple(args))))
                return True
            return False

        for worker in list(self._workers):
            busy += assign(worker)
        while busy:
            now = time.monotonic()
            active = [w for w in self._workers if w.task is not None]
            ready = wait([w.conn for w in active], timeout=max(0.0, min(w.deadline for w in active) - now))
            for worker in active:
                key, path = worker.task
                if worker.conn in ready:
                    try:
                        ok, value, _ = pickle.loads(worker.conn.recv_bytes())
                    except (EOFError, OSError):
                        worker.process.join(5)
                        value = DecodeCrashError(path, "the decoding worker died "
                                                 f"({describe_exit(worker.process.exitcode)})")
                        worker = self._replace(worker)
                elif time.monotonic() >= worker.deadline:
                    value = DecodeTimeoutError(path, f"took longer than {self.timeout:g} s; the worker was killed")
                    worker = self._replace(worker)
                else:
                    continue
                worker.task = None
                busy -= 1
                yield key, value
                busy += assign(worker)
