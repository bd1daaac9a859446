"""Compatibility path: streaming inference lives in :mod:`cnnlstm.deploy.stream`."""
from .deploy.stream import stream

__all__ = ["stream"]
