"""Compatibility path: segment files are read by :mod:`cnnlstm.data.annotations.segments`; frame
targets and segments from labels are in :mod:`cnnlstm.tasks.segment.segments`."""
from ..tasks.segment.segments import frame_targets, labels_to_segments, mode_filter, segments_to_frames
from .annotations.segments import Segment, SegmentSpec, load_segments

__all__ = ["Segment", "SegmentSpec", "load_segments", "frame_targets", "mode_filter", "labels_to_segments",
           "segments_to_frames"]
