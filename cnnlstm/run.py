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
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .config import ARCHITECTURE_KEYS, TrainConfig, diff_configs, load_saved_config, read_recipe
from .data.sampling import SamplerConfig
from .data.transforms import DataConfig
from .engine.checkpoint import Checkpoints, load_weights, unwrap
from .engine.distributed import pick_device
from .models import create_model, get_model_builder, model_recipe
from .tasks import Task, get_task


def build_model(cfg: TrainConfig, num_classes: int, *, warn: bool = True) -> torch.nn.Module:
    """The configured model. Each config key goes only to builders that take it (``hidden_size``
    is the transformer's ``d_model``), so one recipe serves every registered model; with ``warn``, a
    key the user set that the model does not take is named in a warning (once per model and key)."""
    builder = get_model_builder(cfg.model)
    params = inspect.signature(builder).parameters
    optional = {"backbone": cfg.backbone, "pool": cfg.pool, "dropout": cfg.dropout, "bidirectional": cfg.bidirectional,
                "num_layers": cfg.num_layers, "feature_diff": cfg.feature_diff}
    if cfg.hidden_size is not None:
        optional["d_model" if "d_model" in params and "hidden_size" not in params else "hidden_size"] = cfg.hidden_size
    kwargs = {k: v for k, v in optional.items() if v is not None and k in params}
    if warn:
        _warn_dropped(cfg, [k for k, v in optional.items() if v is not None and k not in params], params)
    return create_model(cfg.model, num_classes=num_classes, weights=None if cfg.weights == "none" else cfg.weights,
                        **kwargs)


def _warn_dropped(cfg: TrainConfig, dropped: list[str], params) -> None:
    """Warn about config keys the user set that ``cfg.model`` does not take (a recipe's values and
    the defaults are not the user's: they apply where they fit)."""
    recipe = read_recipe(model_recipe(cfg.model))
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    for key in dropped:
        value = getattr(cfg, "hidden_size" if key == "d_model" else key)
        if value == defaults[key] or value == recipe.get(key):
            continue
        takes = [p for p in params if p in _MODEL_KEYS]
        warnings.warn(f"{cfg.model} does not take {key} (--{key.replace('_', '-')} {value}): ignored. The config keys "
                      f"{cfg.model} takes: {', '.join(takes) or 'none'}", UserWarning, stacklevel=3)


_MODEL_KEYS = ("backbone", "pool", "hidden_size", "d_model", "dropout", "bidirectional", "num_layers", "feature_diff")


def data_config(cfg: TrainConfig, model: torch.nn.Module) -> DataConfig:
    return DataConfig.from_backbone(unwrap(model).encoder.data_config, input_size=cfg.size, resize=None)


def sampler_config(cfg: TrainConfig, position: float = 0.5) -> SamplerConfig:
    """How clips are sampled: the config's sampler, clip length, stride, short-video policy and rate
    (the fps sampler takes ``fps`` frames per second, at most ``frames`` of them: a long video is
    thinned evenly, so memory stays one clip's); ``position`` places eval frames within each
    uniform segment."""
    fps = cfg.sampler == "fps"
    return SamplerConfig(kind=cfg.sampler, num_frames=cfg.frames, stride=cfg.stride, short=cfg.short,
                         target_fps=cfg.fps, max_frames=cfg.frames if fps else None, position=position)


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
        return sampler_config(self.cfg, position)


def check_run_dir(run_dir: str | os.PathLike, weights: str = "model.safetensors") -> Path:
    """``run_dir`` as a Path, if it holds a finished run (config.yaml, labels.json, the weights); else
    FileNotFoundError saying what is missing and what to pass instead."""
    run = Path(run_dir)
    if not run.is_dir():
        what = "is a file" if run.exists() else "does not exist"
        raise FileNotFoundError(f"run directory {run} {what}; pass the folder `cnnlstm train --out` wrote "
                                "(it holds config.yaml, labels.json and model.safetensors)")
    missing = [name for name in ("config.yaml", "labels.json", weights) if not (run / name).is_file()]
    if missing:
        hint = (" (training has not finished a first epoch yet, or it failed)" if (run / "config.yaml").is_file()
                else "; pass the folder `cnnlstm train --out` wrote")
        raise FileNotFoundError(f"{run} is not a finished run directory: {', '.join(missing)} missing{hint}")
    return run


def check_resume(cfg: TrainConfig, is_main: bool, say) -> Path | None:
    """Before training into ``cfg.out``: the checkpoint to resume from (None: start fresh); refuses to
    resume a changed model or to write over another run (checked by the main process, ``is_main``)."""
    run = Path(cfg.out)
    resume_from = Checkpoints(run).latest() if cfg.resume else None
    if cfg.resume and resume_from is None:
        say(f"--resume: no checkpoint in {run / 'checkpoints'}; starting from scratch")
    if resume_from is not None and (run / "config.yaml").is_file():
        changed = diff_configs(load_saved_config(run / "config.yaml"), cfg)
        fatal = {k: v for k, v in changed.items() if k in ARCHITECTURE_KEYS}
        if fatal:
            raise ValueError(f"cannot resume {run}: these settings differ from the saved run (saved, now): {fatal}; "
                             f"resume with the saved values, or train a new run with another --out")
        for key, (old, new) in changed.items():
            if key not in ("resume",):
                say(f"warning: resuming with {key} changed from {old!r} to {new!r}")
    elif is_main and (run / "checkpoints").is_dir() and any((run / "checkpoints").iterdir()) and not cfg.resume:
        raise FileExistsError(f"{run} already holds a training run; pass --resume to continue it or choose another "
                              "--out")
    return resume_from


def load_run(run_dir: str | os.PathLike, *, device: str = "auto", weights: str = "model.safetensors") -> LoadedRun:
    """Rebuild the trained model of a run directory, in eval mode."""
    run = check_run_dir(run_dir, weights)
    cfg = load_saved_config(run / "config.yaml")
    try:
        classes = json.loads((run / "labels.json").read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{run / 'labels.json'} is damaged ({exc}); restore it, or retrain the run") from None
    state = get_task(cfg.task).load_state(run)
    model = build_model(dataclasses.replace(cfg, weights="none"), len(classes), warn=False)
    try:
        load_weights(model, run / weights)
    except ValueError as exc:
        raise ValueError(f"cannot load the run {run}: {exc}") from None
    dev = pick_device(device)
    return LoadedRun(run, cfg, classes, model.to(dev).eval(), data_config(cfg, model), dev, state)


__all__ = ["LoadedRun", "load_run", "check_run_dir", "check_resume", "build_model", "data_config", "sampler_config"]
