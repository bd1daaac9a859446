"""Live sources held by ``cnnlstm serve``: N cameras or URLs labelled in one process, one batch per tick.

``LiveStreams`` runs :func:`cnnlstm.deploy.stream.stream` over every source in a background
thread (each source decoded in its own thread, live ones keeping only their newest frame) and
keeps, per source, the newest frame dict, the counts and the last event. ``GET /streams``
returns them; ``GET /streams/{i}`` one source. Nothing else is kept, so memory stays flat
however long the sources run.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Sequence

from fastapi import Request

from .uploads import UploadError

log = logging.getLogger("cnnlstm.deploy.serve")

__all__ = ["LiveStreams", "add_live_routes"]


class LiveStreams:
    """The newest answer of each source, updated by one streaming thread."""

    def __init__(self, loaded, sources: Sequence[str], **options: Any):
        from ..stream import stream

        self.sources = [str(s) for s in sources]
        self._frames = stream(loaded, self.sources, **options)  # raises now for bad options or models
        self._lock = threading.Lock()
        self._rows: dict[str, dict] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cnnlstm serve streams", daemon=True)
        self.running = False

    def start(self) -> LiveStreams:
        self.running = True
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        try:
            for item in self._frames:
                self._record(item)
                if self._stop.is_set():
                    break
        except Exception:  # noqa: BLE001 - the page reports it; the server stays up
            log.exception("live streams stopped")
        finally:
            self._frames.close()  # stops every source's decoding thread
            self.running = False

    def _record(self, item: dict) -> None:
        with self._lock:
            row = self._rows.setdefault(item["source"], {"source": item["source"], "frames": 0, "skipped": 0,
                                                         "latest": None, "event": None})
            if "event" in item:
                row["event"] = item
                return
            row["frames"] += 1
            row["skipped"] += item.get("skipped", 0)
            row["latest"] = item

    def snapshot(self) -> dict:
        """``{"running", "sources": [{"source", "frames", "skipped", "latest", "event"}, ...]}``.

        A folder source lists each of its files as it plays them; a source not heard from yet
        has ``latest`` None.
        """
        with self._lock:
            rows = [dict(r) for r in self._rows.values()]
        heard = {r["source"] for r in rows}
        rows += [{"source": s, "frames": 0, "skipped": 0, "latest": None, "event": None}
                 for s in self.sources if s not in heard]
        rows.sort(key=lambda r: self._given_index(r["source"]))  # stable: a folder's files as they played
        return {"running": self.running, "sources": rows}

    def _given_index(self, name: str) -> int:
        """The position of the given source ``name`` is (or, for a file of a folder source, lies in)."""
        for i, source in enumerate(self.sources):
            if name == source or name.startswith(source.rstrip("/") + "/"):
                return i
        return len(self.sources)


def add_live_routes(app) -> None:
    """GET /streams (every source's newest answer) and GET /streams/{index} (one of the given sources)."""
    def live(request: Request) -> LiveStreams:
        streams = getattr(request.app.state, "live", None)
        if streams is None:
            raise UploadError(404, "no_streams", "this server holds no live sources; start it with "
                                                 "`cnnlstm serve RUN --source URL [--source URL ...]`")
        return streams

    @app.get("/streams")
    async def streams(request: Request) -> dict:
        return live(request).snapshot()

    @app.get("/streams/{index}")
    async def one_stream(index: int, request: Request) -> dict:
        snapshot = live(request).snapshot()
        sources = live(request).sources
        if not 0 <= index < len(sources):
            raise UploadError(404, "not_found", f"source index {index} is out of range: this server holds "
                                                f"{len(sources)} source(s), 0..{len(sources) - 1}")
        rows = [r for r in snapshot["sources"] if r["source"] == sources[index]]
        return {"running": snapshot["running"], **rows[0]}
