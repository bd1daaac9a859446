"""Compatibility path: segmentation metrics live in :mod:`cnnlstm.tasks.segment.metrics`."""
from .tasks.segment.metrics import (
    F1_OVERLAPS,
    MAP_THRESHOLDS,
    edit_score,
    f1_at_k,
    frame_accuracy,
    segment_counts,
    segment_map,
    segmentation_report,
)

__all__ = ["frame_accuracy", "edit_score", "f1_at_k", "segment_counts", "segment_map", "segmentation_report",
           "F1_OVERLAPS", "MAP_THRESHOLDS"]
