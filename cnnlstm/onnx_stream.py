"""Compatibility path: the ONNX reference streamer lives in :mod:`cnnlstm.deploy.onnx_stream`."""
from .deploy.onnx_stream import OnnxStreamer, preprocess_frame

__all__ = ["OnnxStreamer", "preprocess_frame"]
