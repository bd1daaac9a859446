"""Causal streaming inference: one frame in, one recurrent step, one answer (being written)."""
from __future__ import annotations


def add_parser(sub) -> None:
    """Register the ``cnnlstm stream`` subcommand on the CLI's subparsers (stdlib imports only here)."""
