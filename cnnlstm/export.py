"""ONNX export of the frame encoder, the recurrent step and the clip model (being written)."""
from __future__ import annotations


def add_parser(sub) -> None:
    """Register the ``cnnlstm export`` subcommand on the CLI's subparsers (stdlib imports only here)."""
