"""Stream a run exported by ``cnnlstm export --format onnx`` with numpy and onnxruntime only.

:class:`OnnxStreamer` is the reference for any ONNX runtime: it applies ``preprocess.json`` to each
uint8 RGB frame (:func:`preprocess_frame`, the numpy twin of the eval transform), runs
``encoder.onnx`` on it and ``step.onnx`` on the feature, and carries the state tensors from one
frame to the next.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .._optional import require
from .export import PREPROCESS


def _aa_weights(in_size: int, out_size: int):
    """(out, in) weights of an antialiased bilinear resize (a triangle filter widened when shrinking),
    the rule torch's ``interpolate(antialias=True)`` and PIL use."""
    import numpy as np

    scale = in_size / out_size
    support = max(scale, 1.0)
    inv = 1.0 / max(scale, 1.0)
    weights = np.zeros((out_size, in_size), dtype=np.float64)
    for i in range(out_size):
        center = scale * (i + 0.5)
        lo, hi = max(int(center - support + 0.5), 0), min(int(center + support + 0.5), in_size)
        j = np.arange(lo, hi)
        w = np.clip(1.0 - np.abs((j - center + 0.5) * inv), 0.0, None)
        weights[i, lo:hi] = w / w.sum()
    return weights


def preprocess_frame(frame, spec: dict):
    """One uint8 RGB frame (H, W, C) or (C, H, W) -> normalised float32 (C, S, S), following ``spec``
    (the ``input`` section of preprocess.json)."""
    import numpy as np

    frame = np.asarray(frame)
    channels = len(spec["mean"])
    if frame.dtype != np.uint8 or frame.ndim != 3 or channels not in (frame.shape[0], frame.shape[-1]):
        raise ValueError(f"expected one uint8 RGB frame (H, W, {channels}) or ({channels}, H, W); got {frame.dtype} "
                         f"{frame.shape}")
    chw = frame if frame.shape[0] == channels and frame.shape[-1] != channels else frame.transpose(2, 0, 1)  # (C, H, W)
    h, w = chw.shape[1:]
    size = spec["resize_shorter"]
    if h >= w:
        oh, ow = int(size * h / w), size
    else:
        oh, ow = size, int(size * w / h)
    x = chw.astype(np.float64)
    if (oh, ow) != (h, w):  # horizontal pass, then vertical, each rounded to uint8 like torch's uint8 kernel
        x = np.clip(np.rint(np.einsum("chw,ow->cho", x, _aa_weights(w, ow))), 0, 255)
        x = np.clip(np.rint(np.einsum("chw,oh->cow", x, _aa_weights(h, oh))), 0, 255)
    crop = spec["crop"]
    top, left = int(round((oh - crop) / 2.0)), int(round((ow - crop) / 2.0))
    x = x[:, top:top + crop, left:left + crop]  # (C, S, S)
    mean = np.asarray(spec["mean"], dtype=np.float64)[:, None, None]
    std = np.asarray(spec["std"], dtype=np.float64)[:, None, None]
    return ((x * spec["scale"] - mean) / std).astype(np.float32)


class OnnxStreamer:
    """Stream frames through ``encoder.onnx`` + ``step.onnx`` with the carried state: how any ONNX runtime streams.

    ``step(frame)`` takes one uint8 RGB frame (H, W, 3) or (3, H, W) and returns the class
    probabilities (K,) for the video so far (per-frame models: for this frame); ``logits`` keeps
    the last logits. ``reset()`` starts a new video.
    """

    def __init__(self, out_dir: str | os.PathLike, *, providers: list[str] | None = None):
        import numpy as np

        ort = require("onnxruntime", purpose="running exported ONNX models")
        folder = Path(out_dir)
        self.meta = json.loads((folder / PREPROCESS).read_text())
        if not self.meta["files"].get("step"):
            raise ValueError(f"{folder} has no step.onnx: model {self.meta['model']!r} cannot stream; run clip.onnx "
                             "on whole clips")
        providers = providers or ["CPUExecutionProvider"]
        self.encoder = ort.InferenceSession(str(folder / self.meta["files"]["encoder"]), providers=providers)
        self.stepper = ort.InferenceSession(str(folder / self.meta["files"]["step"]), providers=providers)
        self.labels: list[str] = self.meta["labels"]
        self.logits = np.zeros(len(self.labels), dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        """Forget the video so far: every state tensor back to its ``init`` value, for one stream."""
        import numpy as np

        self.state = {s["name"]: np.full([1 if d == -1 else d for d in s["shape"]], s["init"], dtype=np.float32)
                      for s in self.meta["state"]}

    def step(self, frame):
        """One frame -> probabilities (K,)."""
        import numpy as np

        x = preprocess_frame(frame, self.meta["input"])[None]  # (1, C, S, S)
        feature = self.encoder.run(["features"], {"frames": x})[0]  # (1, D)
        outs = self.stepper.run(None, {"feature": feature, **self.state})
        self.state = {s["name"]: value for s, value in zip(self.meta["state"], outs[1:], strict=False)}
        self.logits = outs[0][0]  # (K,)
        e = np.exp(self.logits - self.logits.max())
        return e / e.sum()


# --- CLI ------------------------------------------------------------------------------------


__all__ = ["OnnxStreamer", "preprocess_frame"]
