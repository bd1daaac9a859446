"""Compatibility path: caption metrics live in :mod:`cnnlstm.tasks.caption.metrics`."""
from .tasks.caption.metrics import bleu, caption_report, cider_d

__all__ = ["bleu", "cider_d", "caption_report"]
