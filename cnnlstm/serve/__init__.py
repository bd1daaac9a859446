"""HTTP service (FastAPI) with a web page (being written)."""
from __future__ import annotations


def add_parser(sub) -> None:
    """Register the ``cnnlstm serve`` subcommand on the CLI's subparsers (stdlib imports only here)."""
