"""Check a training config before anything heavy runs: values in range, names that exist, paths there.

:func:`check_config` runs at the start of :func:`~cnnlstm.train.fit` (so on every rank, in
``cnnlstm train`` and ``cnnlstm compare``), before any dataset, model or weights download: a typo
costs a second, not the time it takes to index a dataset. Each error names the key and its option,
what was received, what was expected and what to do. The checks that need the data (labels,
annotations) stay with the task that reads them.
"""
from __future__ import annotations

import math
import os
from typing import Any

from .config import TrainConfig

WEIGHT_NAMES = ("none", "imagenet", "kinetics")

# key -> (lowest allowed, whether the lowest is allowed itself, what the value is); None values pass
_RANGES: dict[str, tuple[float, bool, str]] = {
    "lr": (0, False, "the peak learning rate"),
    "weight_decay": (0, True, "AdamW weight decay"),
    "warmup_epochs": (0, True, "warmup length in epochs"),
    "grad_clip": (0, True, "the max gradient norm (0: off)"),
    "backbone_lr_scale": (0, True, "the backbone's share of the learning rate"),
    "hidden_size": (1, True, "the temporal model's width"),
    "num_layers": (1, True, "LSTM layers"),
    "stride": (1, True, "the frame step of the random_clip sampler"),
    "fps": (0, False, "frames per second to sample at"),
    "workers": (0, True, "DataLoader worker processes (0: load in the main process)"),
    "threads": (0, True, "torch threads (0: torch's default)"),
    "cache_views": (1, True, "cached views per video"),
    "checkpoint_every": (0, True, "steps between checkpoints (0: epoch ends only)"),
    "limit_batches": (0, True, "batches per epoch (0: all)"),
    "early_stop": (0, True, "epochs without improvement (0: off)"),
    "log_every": (1, True, "steps between log lines"),
    "length_penalty": (0, True, "the beam search length penalty"),
}


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _check_range(key: str, value: Any) -> None:
    low, inclusive, what = _RANGES[key]
    ok = math.isfinite(value) and (value >= low if inclusive else value > low)
    if not ok:
        bound = f">= {low:g}" if inclusive else f"> {low:g}"
        raise ValueError(f"{key} ({_flag(key)}) is {what}: it must be a finite number {bound}; got {value!r}")


def check_values(cfg: TrainConfig) -> None:
    """Values in range (what ``TrainConfig`` itself does not check), and keys that need each other."""
    for key in _RANGES:
        value = getattr(cfg, key)
        if value is not None:
            _check_range(key, value)
    if cfg.dropout is not None and not (math.isfinite(cfg.dropout) and 0 <= cfg.dropout < 1):
        raise ValueError(f"dropout (--dropout) is a probability: it must be in [0, 1); got {cfg.dropout!r}")
    for key in ("phase_epochs", "phase_lrs"):
        values = getattr(cfg, key)
        if values is not None and not all(math.isfinite(v) and v > 0 for v in values):
            raise ValueError(f"{key} ({_flag(key)}) must list positive numbers, one per phase; got {values}")
    if cfg.sampler == "fps" and cfg.fps is None:
        raise ValueError("--sampler fps samples at a frame rate you choose: set --fps (config key fps), e.g. --fps 10")


def check_names(cfg: TrainConfig) -> None:
    """The model, backbone and weights exist, and the device can be used."""
    from .engine.distributed import pick_device
    from .models import get_model_builder
    from .models.backbones import BACKBONES

    if cfg.model is not None:
        get_model_builder(cfg.model)  # unknown names raise, with the closest valid ones
    BACKBONES.get(cfg.backbone)  # unknown names raise, with the closest valid ones
    if cfg.weights not in WEIGHT_NAMES and not os.path.isfile(os.path.expanduser(cfg.weights)):
        raise FileNotFoundError(
            f"--weights {cfg.weights}: no such file; expected none (random init), imagenet (2D backbones), kinetics "
            "(3D CNNs) or the path of a weights file (.safetensors or a torch.save state dict)")
    pick_device(cfg.device)


def check_paths(cfg: TrainConfig) -> None:
    """The data, validation and root paths exist (their content is read by the task)."""
    if not cfg.data:
        raise ValueError("--data SPEC is required (on the command line or in the --config file): a folder of class "
                         "folders, a CSV with a `path,label` header, a text list, a UCF101 split or a Kinetics CSV")
    for key in ("data", "val"):
        path = getattr(cfg, key)
        if path and not os.path.exists(os.path.expanduser(path)):
            link = " (a broken symbolic link)" if os.path.islink(path) else ""
            raise FileNotFoundError(
                f"{_flag(key)} {path} does not exist{link}; expected a folder of class folders or an annotation file "
                "(CSV `path,label`, a text list, a UCF101 split, a Kinetics CSV; for --task segment or caption, "
                "its segments or captions file)")
    if cfg.root and not os.path.isdir(os.path.expanduser(cfg.root)):
        raise FileNotFoundError(f"--root {cfg.root} is not a folder; it should hold the videos the annotation files "
                                "name with relative paths")
    if os.path.isfile(cfg.out):
        raise FileExistsError(f"--out {cfg.out} is a file; the run directory must be a folder (new or an earlier run)")


def check_config(cfg: TrainConfig) -> TrainConfig:
    """Every check above, cheapest first; returns ``cfg`` unchanged."""
    check_values(cfg)
    check_paths(cfg)
    check_names(cfg)
    return cfg


__all__ = ["check_config", "check_values", "check_names", "check_paths", "WEIGHT_NAMES"]
