"""Using a trained run outside Python training code: causal streaming (many sources in one process),
ONNX export (and a numpy + onnxruntime streamer for the exported files), and an HTTP service with a
web page."""
