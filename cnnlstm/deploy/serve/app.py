"""The ``cnnlstm serve`` app: a trained run behind a small HTTP API and a web page.

Endpoints: ``GET /health``, ``GET /models`` (the run's task, labels, frames), ``POST /predict``
(multipart field ``file``: one video; the answer is one prediction row as JSON), ``GET /`` (the
page) and ``/static/*``. Every error is JSON ``{"error": code, "detail": message}``.

An upload is untrusted (docs/RELIABILITY.md): bytes are counted as they arrive (413 past
``max_upload_mb``, also for chunked bodies), the file is stored under a server-made name and
always deleted, its container must be allowed by extension, by its first bytes and by FFmpeg's
probe (415), the probe (in an isolated worker, with a timeout) enforces the pixel and duration
limits (422), and decoding happens in the Predictor's isolated worker with a timeout (422).

Load: at most ``max_concurrent`` uploads are probed and predicted at once. A request that finds
every slot busy waits up to ``queue_timeout`` seconds for one, then gets 503 with ``Retry-After``.
At most ``4 * max_concurrent`` uploads may be streaming in at once (each can hold up to
``max_upload_mb`` of disk); more get 503 at once.
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Sequence

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from .live import LiveStreams, add_live_routes
from .uploads import Upload, UploadError, demuxer_allowed, probe_upload, receive_upload, remove_quietly

log = logging.getLogger("cnnlstm.deploy.serve")
STATIC = Path(__file__).parent / "static"
# reasons (VideoError.reason) that mean "not a video container we accept" rather than "a bad video"
_FORMAT_REASONS = {"format", "not_a_video", "unsupported_format"}
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; media-src 'self' blob:; img-src 'self' data: blob:; "
                               "object-src 'none'",
    "X-Content-Type-Options": "nosniff",
}


def create_app(run_dir: str | os.PathLike, *, max_upload_mb: float = 200, max_duration_s: float = 600,
               max_pixels: int = 3840 * 2160, max_concurrent: int = 2, timeout: float = 60.0, device: str = "auto",
               queue_timeout: float = 2.0, upload_dir: str | os.PathLike | None = None, threshold: float = 0.5,
               sources: Sequence[str] = (), stream_options: dict | None = None) -> FastAPI:
    """The FastAPI app serving the run in ``run_dir``; its Predictor loads at startup, closes at shutdown.

    ``sources`` (capture devices, URLs, files) are labelled live from startup to shutdown in one
    background stream, one batch per tick (:mod:`cnnlstm.deploy.serve.live`; ``stream_options``
    go to :func:`cnnlstm.deploy.stream.stream`, e.g. ``max_lag``, ``reconnect``); ``GET
    /streams`` returns each source's newest answer.

    ``max_pixels`` (width * height) and ``max_duration_s`` are checked when the upload is probed,
    before any frame is decoded; ``timeout`` bounds decoding one upload (seconds). Uploads are
    written to ``upload_dir`` (default: a fresh temp folder, removed at shutdown). ``threshold``:
    a multi-label run's prediction lists every class with a probability at least this.
    """
    if max_concurrent < 1 or not max_upload_mb > 0 or not timeout > 0 or queue_timeout < 0:
        raise ValueError(f"need max_concurrent >= 1, max_upload_mb > 0, timeout > 0 and queue_timeout >= 0; got "
                         f"{max_concurrent}, {max_upload_mb}, {timeout} and {queue_timeout}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be a probability in [0, 1]; got {threshold!r}")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} is not a directory; pass a run directory written by `cnnlstm train`")

    app = FastAPI(title="cnnlstm", docs_url=None, redoc_url=None,
                  lifespan=_lifespan(run_dir, max_pixels=max_pixels, max_duration_s=max_duration_s,
                                     max_concurrent=max_concurrent, timeout=timeout, device=device,
                                     upload_dir=upload_dir, threshold=threshold, sources=list(sources),
                                     stream_options=dict(stream_options or {})))
    _add_error_handlers(app)
    _add_routes(app, max_bytes=int(max_upload_mb * 2**20), max_uploading=4 * max_concurrent,
                max_concurrent=max_concurrent, queue_timeout=queue_timeout, timeout=timeout)
    add_live_routes(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _lifespan(run_dir: Path, *, max_pixels: int, max_duration_s: float, max_concurrent: int, timeout: float,
              device: str, upload_dir, sources: list[str], stream_options: dict, threshold: float = 0.5):
    """Load the Predictor and the probe worker at startup, close them (and the upload folder) at shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from ...data.video.pool import IsolatedPool
        from ...data.video.types import Limits
        from ...inference import Predictor

        limits = Limits(max_pixels=max_pixels, max_duration_s=max_duration_s)
        own_dir = upload_dir is None
        directory = tempfile.mkdtemp(prefix="cnnlstm-serve-") if own_dir else os.fspath(upload_dir)
        os.makedirs(directory, exist_ok=True)
        state = app.state
        state.upload_dir, state.limits, state.uploading = directory, limits, 0
        state.slots = threading.Semaphore(max_concurrent)
        state.probe_lock = threading.Lock()
        state.probe_pool = state.predictor = state.live = None
        try:
            if sources:
                from ...run import load_run

                state.live = LiveStreams(load_run(run_dir, device=device), sources, **stream_options).start()
                log.info("labelling %d live source(s): %s", len(sources), ", ".join(sources))
            state.probe_pool = IsolatedPool(1, timeout=min(timeout, 30.0))
            state.predictor = Predictor(run_dir, device=device, timeout=timeout, limits=limits, threshold=threshold)
            log.info("serving %s from %s (uploads in %s)", state.predictor.info().get("model"), run_dir, directory)
            yield
        finally:
            if state.live is not None:
                state.live.close()
            if state.predictor is not None:
                state.predictor.close()
            if state.probe_pool is not None:
                state.probe_pool.close()
            if own_dir:
                shutil.rmtree(directory, ignore_errors=True)

    return lifespan


def _add_error_handlers(app: FastAPI) -> None:
    """Every error is JSON ``{"error", "detail"}``, never a traceback."""

    @app.exception_handler(UploadError)
    async def _upload_error(request: Request, exc: UploadError) -> JSONResponse:
        return _error(exc.status, exc.error, exc.detail, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, "internal", "unexpected server error; the server log has the details",
                      {"Connection": "close"})


def _add_routes(app: FastAPI, *, max_bytes: int, max_uploading: int, max_concurrent: int, queue_timeout: float,
                timeout: float) -> None:
    """GET /health, GET /models, POST /predict (bounded uploads and predictions), GET / (the page)."""

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/models")
    async def models(request: Request) -> dict:
        return request.app.state.predictor.info()

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        state = request.app.state
        if state.uploading >= max_uploading:
            raise UploadError(503, "busy", f"{state.uploading} uploads in progress; try again shortly",
                              {"Retry-After": "2", "Connection": "close"})
        state.uploading += 1
        try:
            upload = await receive_upload(request.stream(), request.headers.get("content-type", ""),
                                          request.headers.get("content-length"), directory=state.upload_dir,
                                          max_bytes=max_bytes)
        except UploadError as exc:  # the body may be unread: close the connection rather than drain it
            exc.headers.setdefault("Connection", "close")
            raise
        except ClientDisconnect:
            return _error(400, "disconnected", "the client went away during the upload")
        finally:
            state.uploading -= 1
        try:
            if not await _acquire(state.slots, queue_timeout):
                raise UploadError(503, "busy", f"all {max_concurrent} prediction slots are busy; try again shortly",
                                  {"Retry-After": str(max(1, round(timeout / 10)))})
            try:
                return JSONResponse(await anyio.to_thread.run_sync(_probe_and_predict, state, upload))
            finally:
                state.slots.release()
        finally:
            remove_quietly(upload.path)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=_PAGE_HEADERS)


def _probe_and_predict(state, upload: Upload) -> dict:
    """Blocking (runs in a thread): probe in the isolated worker, check the container, predict."""
    from ...data.video.errors import VideoError

    with state.probe_lock:  # one probe worker; IsolatedPool is not thread-safe
        ((_, facts),) = state.probe_pool.map_unordered(probe_upload, [(0, upload.path, (upload.path, state.limits))])
    if isinstance(facts, VideoError):
        _raise_video_error(upload, facts.reason, str(facts))
    if isinstance(facts, BaseException):
        raise facts
    if not demuxer_allowed(facts["container"]):
        raise UploadError(415, "unsupported_format",
                          f"{upload.filename!r} is a {facts['container']!r} file; "
                          "allowed: MP4/MOV, Matroska/WebM, AVI, MPEG-PS/TS")
    (row,) = state.predictor.predict([upload.path])
    if "error" in row:
        _raise_video_error(upload, row.get("reason") or row["error"].split(":", 1)[0], row["error"])
    row.pop("path", None)
    return {"filename": upload.filename, **row}


def _raise_video_error(upload: Upload, reason: str, message: str) -> None:
    """A VideoError about the upload, as 415 (not an allowed container) or 422 (a bad or over-limit video)."""
    detail = message.replace(upload.path, upload.filename).replace(os.path.basename(upload.path), upload.filename)
    raise UploadError(415 if reason in _FORMAT_REASONS else 422, reason, detail)


async def _acquire(slots: threading.Semaphore, wait_s: float) -> bool:
    """Take a prediction slot, polling for up to ``wait_s`` seconds (not FIFO); False when none frees up."""
    deadline = time.monotonic() + wait_s
    while not slots.acquire(blocking=False):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def _error(status: int, code: str, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


__all__ = ["create_app"]
