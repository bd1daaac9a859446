"""``cnnlstm serve RUN_DIR``: a trained run behind an HTTP API (FastAPI) and a web page.

The app lives in :mod:`cnnlstm.deploy.serve.app` (``create_app``), the upload-safety layer in
:mod:`cnnlstm.deploy.serve.uploads`; this module only registers the subcommand (standard library only,
so ``cnnlstm --help`` works without the ``serve`` extra).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys

from ..._optional import MissingDependencyError

_MISSING_HINT = "the serve command needs {}, which are not installed; install them with: pip install 'cnnlstm[serve]'"


def add_parser(sub) -> None:
    """Register the ``cnnlstm serve`` subcommand on the CLI's subparsers (stdlib imports only here)."""
    p = sub.add_parser("serve", help="serve a trained run over HTTP, with a web page to try videos",
                       description="HTTP API (GET /health, GET /models, POST /predict) and a web page at /. "
                                   "Uploads are untrusted: size, format, pixel and duration limits, isolated decoding.")
    p.add_argument("run", help="run directory written by cnnlstm train")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-upload-mb", type=float, default=200, help="reject larger uploads (413), counted as they "
                   "arrive")
    p.add_argument("--max-duration", type=float, default=600, help="reject longer videos (seconds; 422)")
    p.add_argument("--max-pixels", type=int, default=3840 * 2160, help="reject larger frames (width*height; 422)")
    p.add_argument("--max-concurrent", type=int, default=2, help="predictions at once; more wait briefly, then 503")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to decode one upload")
    p.add_argument("--threshold", type=float, default=0.5, help="multi-label runs: list every label with a "
                   "probability at least this")
    p.add_argument("--source", action="append", default=[], metavar="SOURCE",
                   help="label a live source (capture device, URL, file) from startup on; repeat for several: one "
                        "process, one batch per tick; GET /streams returns each source's newest answer")
    p.add_argument("--max-lag", type=float, default=2.0, metavar="S", help="live sources: skip to the next keyframe "
                   "when decoding falls more than S seconds behind")
    p.add_argument("--reconnect", type=int, default=3, metavar="N", help="reopen a stalled or dropped live source up "
                   "to N times")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    missing = [name for name in ("fastapi", "uvicorn", "python_multipart") if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingDependencyError(_MISSING_HINT.format(", ".join(missing)))
    import uvicorn

    from ...run import check_run_dir
    from .app import create_app

    app = create_app(args.run, max_upload_mb=args.max_upload_mb, max_duration_s=args.max_duration,
                     max_pixels=args.max_pixels, max_concurrent=args.max_concurrent, timeout=args.timeout,
                     device=args.device, threshold=args.threshold, sources=args.source,
                     stream_options={"max_lag": args.max_lag, "reconnect": args.reconnect})
    check_run_dir(args.run)  # before the server starts: the model loads when it does
    print(f"cnnlstm serve: http://{args.host}:{args.port}/  (Ctrl-C to stop)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
