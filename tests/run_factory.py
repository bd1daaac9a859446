"""Write small real inputs for command-line tests: a labelled dataset of tiny videos, and a run
directory (what ``cnnlstm train`` writes) from an untrained model, so the readers of a run
(evaluate, predict, stream, export, serve) can be tested without training one first."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cnnlstm.config import TrainConfig, dump_yaml, resolve_defaults
from cnnlstm.data.video.encode import write_video
from cnnlstm.engine.checkpoint import save_weights
from cnnlstm.run import build_model

TINY_RUN = dict(backbone="test_tiny", size=32, frames=4, hidden_size=8, workers=0)


def tiny_frames(num: int = 8, seed: int = 0, size: int = 32) -> np.ndarray:
    """uint8 ``(T, H, W, 3)`` noise, every frame different."""
    return np.random.default_rng(seed).integers(0, 255, (num, size, size, 3), dtype=np.uint8)


def labelled_folder(root: Path, classes=("left", "right"), per_class: int = 2, ext: str = ".mp4",
                    codec: str | None = None) -> Path:
    """``root/<class>/<i><ext>``: tiny real videos, ``per_class`` per class."""
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            write_video(root / name / f"{i}{ext}", tiny_frames(8, seed=10 * c + i), fps=10, codec=codec)
    return root


def make_run(run: Path, classes=("left", "right"), **config) -> Path:
    """A finished run directory (config.yaml, labels.json, model.safetensors) of an untrained model."""
    cfg = resolve_defaults(TrainConfig(**{"data": "unused", "out": str(run), **TINY_RUN, **config}))
    model = build_model(cfg, len(classes), warn=False)
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.yaml").write_text(dump_yaml(cfg))
    (run / "labels.json").write_text(json.dumps(list(classes)))
    save_weights(model, run / "model.safetensors")
    return run
