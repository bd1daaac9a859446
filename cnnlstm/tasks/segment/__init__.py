"""Temporal action segmentation: a label per frame (task, frame targets and segments, metrics,
timelines, the synthetic action sequences)."""
