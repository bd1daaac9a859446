"""Import paths that earlier versions (and the README) use still give the same objects."""
from __future__ import annotations

import importlib

import pytest

PATHS = [
    ("cnnlstm.stream", "stream", "cnnlstm.deploy.stream"),
    ("cnnlstm.onnx_stream", "OnnxStreamer", "cnnlstm.deploy.onnx_stream"),
    ("cnnlstm.onnx_stream", "preprocess_frame", "cnnlstm.deploy.onnx_stream"),
    ("cnnlstm.metrics_segment", "segmentation_report", "cnnlstm.tasks.segment.metrics"),
    ("cnnlstm.metrics_caption", "caption_report", "cnnlstm.tasks.caption.metrics"),
    ("cnnlstm.data.segments", "labels_to_segments", "cnnlstm.tasks.segment.segments"),
    ("cnnlstm.data.segments", "load_segments", "cnnlstm.data.annotations.segments"),
    ("cnnlstm.train", "fit", "cnnlstm.train"),
    ("cnnlstm.inference", "evaluate", "cnnlstm.inference"),
    ("cnnlstm.inference", "predict", "cnnlstm.inference"),
    ("cnnlstm.config", "TrainConfig", "cnnlstm.config"),
    ("cnnlstm.data.synth", "SynthConfig", "cnnlstm.data.synth"),
    ("cnnlstm.data.synth", "synthesize", "cnnlstm.data.synth"),
]


@pytest.mark.parametrize("old, name, new", PATHS, ids=[f"{o}.{n}" for o, n, _ in PATHS])
def test_old_import_paths_keep_working(old, name, new):
    assert getattr(importlib.import_module(old), name) is getattr(importlib.import_module(new), name)


def test_top_level_names():
    import cnnlstm

    assert callable(cnnlstm.create_model) and "cnn_lstm" in cnnlstm.list_models()
