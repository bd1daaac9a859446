"""Compatibility path: segment files are read by :mod:`cnnlstm.data.annotations.segments`."""
from .annotations.segments import Segment, SegmentSpec, frame_targets, labels_to_segments, load_segments, mode_filter

__all__ = ["Segment", "SegmentSpec", "load_segments", "frame_targets", "mode_filter", "labels_to_segments"]
