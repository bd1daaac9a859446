"""The run directory: what ``cnnlstm train`` wrote, read back to rebuild the model and its inputs.

A run directory holds ``config.yaml`` (how clips are sampled and transformed, which task),
``labels.json`` (class names, or the vocabulary of a captioning run), ``model.safetensors`` (best
weights) and whatever else the task saved (a captioning run's ``vocab.json``). :func:`build_model`
and the two data helpers are shared by training and by every reader of a run (evaluate, predict,
stream, serve, export, compare).
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .config import TrainConfig, load_saved_config
from .data.sampling import SamplerConfig
from .data.transforms import DataConfig
from .engine.checkpoint import load_weights, unwrap
from .engine.distributed import pick_device
from .models import create_model, get_model_builder
from .tasks import Task, get_task


def build_model(cfg: TrainConfig, num_classes: int) -> torch.nn.Module:
    """The configured model. Each config key goes only to builders that take it (``hidden_size``
    is the transformer's ``d_model``), so one recipe serves every registered model."""
    params = inspect.signature(get_model_builder(cfg.model)).parameters
    optional = {"backbone": cfg.backbone, "pool": cfg.pool, "dropout": cfg.dropout, "bidirectional": cfg.bidirectional,
                "num_layers": cfg.num_layers}
    if cfg.hidden_size is not None:
        optional["d_model" if "d_model" in params and "hidden_size" not in params else "hidden_size"] = cfg.hidden_size
    kwargs = {k: v for k, v in optional.items() if v is not None and k in params}
    return create_model(cfg.model, num_classes=num_classes, weights=None if cfg.weights == "none" else cfg.weights,
                        **kwargs)


def data_config(cfg: TrainConfig, model: torch.nn.Module) -> DataConfig:
    return DataConfig.from_backbone(unwrap(model).encoder.data_config, input_size=cfg.size, resize=None)


def sampler_config(cfg: TrainConfig) -> SamplerConfig:
    return SamplerConfig(kind=cfg.sampler, num_frames=cfg.frames, stride=cfg.stride, short=cfg.short)


@dataclass
class LoadedRun:
    run: Path
    cfg: TrainConfig
    classes: list[str]
    model: torch.nn.Module
    data_cfg: DataConfig
    device: torch.device
    state: Any = None  # what the task saved beyond labels.json (captioning: the Vocabulary)

    @property
    def task(self) -> Task:
        return get_task(self.cfg.task)

    def sampler(self, position: float = 0.5) -> SamplerConfig:
        c = self.cfg
        return SamplerConfig(kind=c.sampler, num_frames=c.frames, stride=c.stride, short=c.short, position=position)


def load_run(run_dir: str | os.PathLike, *, device: str = "auto", weights: str = "model.safetensors") -> LoadedRun:
    """Rebuild the trained model of a run directory, in eval mode."""
    run = Path(run_dir)
    for name in ("config.yaml", "labels.json", weights):
        if not (run / name).is_file():
            raise FileNotFoundError(f"{run} is not a finished run directory: {name} is missing")
    cfg = load_saved_config(run / "config.yaml")
    classes = json.loads((run / "labels.json").read_text())
    state = get_task(cfg.task).load_state(run)
    model = build_model(dataclasses.replace(cfg, weights="none"), len(classes))
    load_weights(model, run / weights)
    dev = pick_device(device)
    return LoadedRun(run, cfg, classes, model.to(dev).eval(), data_config(cfg, model), dev, state)


__all__ = ["LoadedRun", "load_run", "build_model", "data_config", "sampler_config"]
