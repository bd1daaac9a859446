"""fit(): one plain PyTorch training loop for every task (classify, segment, caption; :mod:`cnnlstm.tasks`).

Reads top to bottom: set up (processes, seed, run directory, data, model, precision), then for
each phase of the schedule (gradual unfreezing: a fresh optimizer per phase) run epochs: one
training epoch (:func:`~cnnlstm.engine.loop.train_one_epoch`), validation
(:func:`~cnnlstm.engine.loop.validate`), the epoch's log row, the best weights and a resumable
checkpoint. Under ``torchrun`` the same code trains with DistributedDataParallel; rank 0 writes.
"""
from __future__ import annotations

import argparse
import os
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ._optional import available
from .config import (
    RECIPE_KEYS,
    TrainConfig,
    add_config_options,
    config_overrides,
    dump_yaml,
    resolve_config,
    resolve_defaults,
)
from .data.datasets import EpochBatchSampler, SkipLog, VideoDataset, make_loader
from .data.fingerprint import dataset_fingerprint, fingerprint_changes
from .data.transforms import eval_transform, train_transform
from .engine import distributed
from .engine.checkpoint import Checkpoints, capture_rng, load_weights, restore_rng, save_weights
from .engine.health import LearningHealth
from .engine.io import atomic_write_json, atomic_write_text
from .engine.loop import EpochStats, Optimization, StepCounter, StopFlag, train_one_epoch, validate
from .engine.optim import Phase, apply_phase, build_optimizer, build_scheduler, pick_precision, plan_phases
from .engine.runlog import RunLog
from .errors import EXIT_STOPPED
from .models import model_recipe
from .models.weights import OFFLINE_ENV
from .preflight import check_config
from .run import build_model, check_resume, data_config, sampler_config
from .tasks import get_task
from .tasks.base import Task, TaskData


@dataclass
class Training:
    """What fit() sets up once and every phase and epoch uses."""

    cfg: TrainConfig
    info: distributed.DistInfo
    say: Callable[[str], None]
    task: Task
    data: TaskData
    model: nn.Module
    train_ds: VideoDataset
    val_ds: VideoDataset | None
    precision: str
    scaler: torch.amp.GradScaler  # one for the run: fp16's loss scale carries over from phase to phase
    checkpoints: Checkpoints
    runlog: RunLog | None = None
    counter: StepCounter = field(default_factory=StepCounter)
    best: dict = field(default_factory=lambda: {"score": float("-inf"), "epoch": -1})
    skipped: SkipLog = field(default_factory=SkipLog)  # bad videos over the whole run
    health: LearningHealth | None = None  # says once when the run is not learning
    last_val: Any = None  # what the task's final plot needs, from the last validation with videos

    @property
    def run(self) -> Path:
        return Path(self.cfg.out)

    @cached_property
    def fingerprint(self) -> dict:
        """The training set's paths, sizes and labels (:mod:`cnnlstm.data.fingerprint`), checked on resume."""
        return dataset_fingerprint(self.train_ds.videos.items, self.data.labels)

    def autocast(self):
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        return torch.autocast(self.info.device.type, dtype=dtype) if dtype else nullcontext()

    def save_checkpoint(self, opt: Optimization, epoch: int, batch_in_epoch: int) -> None:
        state = {"step": self.counter.step, "epoch": epoch, "batch_in_epoch": batch_in_epoch, **opt.state_dict(),
                 "rng": capture_rng(), "best": self.best, "fingerprint": self.fingerprint}
        self.checkpoints.save(self.counter.step, self.model, state)


@dataclass
class PhaseRun:
    """One phase's model wrapper (DDP, compile), data, batches and optimizer."""

    phase: Phase
    model: nn.Module  # what the steps call: the model, under DDP and torch.compile when asked
    opt: Optimization
    batches: EpochBatchSampler
    loader: Any
    per_epoch: int  # batches per epoch (--limit-batches, --dry-run)
    train_source: Any  # the training set, or its cached features while the backbone is frozen
    val_source: Any


def fit(cfg: TrainConfig, *, on_step: Callable[[int], None] | None = None, log: Callable[[str], None] = print) -> dict:
    """Train per ``cfg``; returns a summary. ``on_step(step)`` is called after every optimizer step.

    What ``cfg`` leaves at ``None`` is filled first (:func:`~cnnlstm.config.resolve_defaults`): the
    task's default model and the model family's recipe."""
    cfg = check_config(resolve_defaults(cfg))  # before any data, model or download: mistakes cost a second
    info = distributed.setup(cfg.device)
    try:
        return _fit(cfg, info, on_step, log)
    finally:  # on every way out (the end, a stop, an error): a process left in its group can abort at exit
        distributed.cleanup(info)


def _fit(cfg: TrainConfig, info: distributed.DistInfo, on_step, log) -> dict:
    """:func:`fit` once the process has joined its group (if any): set up, resume, train, finish."""
    say = log if info.is_main else (lambda *_: None)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    resume_from = check_resume(cfg, info.is_main, say)
    t = _set_up(cfg, info, say)
    phases = plan_phases(cfg)
    resume_from, state = (t.checkpoints.load_newest(t.model, say) if resume_from is not None else None) or (None, None)
    t.runlog = RunLog(t.run, enabled=info.is_main, resume_step=state["step"] if state else None)
    if state is not None:
        changed = fingerprint_changes(state["fingerprint"], t.fingerprint, t.train_ds.videos.items)
        if changed:
            raise ValueError(f"cannot resume {t.run}: the training set differs from the one its checkpoint was "
                             f"trained on: {changed}. Resume with the same --data, or train a new run (another --out)")
        say(f"resuming from {resume_from.name}: epoch {state['epoch'] + 1}, batch {state['batch_in_epoch']}")
        t.counter.step, t.best = state["step"], state["best"]
    say(f"training {cfg.model} ({cfg.backbone}) for {cfg.task} on {len(t.train_ds)} videos, {len(t.data.labels)} "
        f"{'classes' if t.task.labels_are_classes else 'tokens'}, {info.world_size} process(es) on {info.device}, "
        f"precision {t.precision}")
    return _train(t, phases, state, on_step) or _finish(t)


def _train(t: Training, phases: list[Phase], state: dict | None, on_step) -> dict | None:
    """The epochs of every phase from ``state`` (a checkpoint's, or None); a summary when stopped early
    by a signal, else None."""
    cfg, info = t.cfg, t.info
    with StopFlag() as stop:
        for phase in phases:
            if state and state["epoch"] >= phase.end_epoch:
                continue
            p = _start_phase(t, phase)
            first_epoch, start_batch = phase.start_epoch, 0
            if state and state["epoch"] >= phase.start_epoch:
                p.opt.load_state_dict(state)
                restore_rng(state["rng"])
                first_epoch, start_batch = state["epoch"], state["batch_in_epoch"]
            state = None
            for epoch in range(first_epoch, phase.end_epoch):
                p.batches.set_epoch(epoch, start_batch)
                p.train_source.set_epoch(epoch)
                stats = train_one_epoch(p.model, p.loader, t.task, p.opt, t.counter, epoch=epoch,
                                        batches=range(start_batch, p.per_epoch), cfg=cfg, device=info.device,
                                        autocast=t.autocast, after_step=_after_step(t, p, epoch, stop, on_step),
                                        shard=(info.rank, info.world_size), data=t.data,
                                        desc=f"epoch {epoch + 1}/{cfg.epochs} [{phase.name}]"
                                        + (" NOT LEARNING" if t.health.warned else ""),
                                        progress=info.is_main and cfg.progress)
                if stats.stopped:
                    return {"stopped": True, "step": t.counter.step}
                start_batch = 0
                if _end_epoch(t, p, epoch, stats):
                    return None
    return None


def _set_up(cfg: TrainConfig, info: distributed.DistInfo, say) -> Training:
    """The task's data, the model (on its device) and the datasets; the run directory's first files."""
    task = get_task(cfg.task)
    data = task.load(cfg, say)
    distributed.fetch_weights_first(cfg, info)
    model = build_model(cfg, len(data.labels))
    task.check_model(model)
    if cfg.sync_bn:
        model = distributed.sync_batchnorm(model, info)
    data_cfg = data_config(cfg, model)
    common = dict(sampler=sampler_config(cfg), classes=data.dataset_classes, on_error=cfg.on_error, seed=cfg.seed)
    augment = train_transform(data_cfg, flip=cfg.flip, scale=(cfg.min_crop_scale, 1.0))
    train_ds = VideoDataset(data.train, transform=augment, train=cfg.temporal_jitter, targets=data.train_targets,
                            **common)
    val_ds = VideoDataset(data.val, transform=eval_transform(data_cfg), train=False, targets=data.val_targets,
                          **common) if data.val else None
    model.to(info.device)
    if cfg.channels_last:
        model.encoder.to(memory_format=torch.channels_last)
    precision = pick_precision(cfg.precision, info.device)
    scaler = torch.amp.GradScaler(info.device.type, enabled=precision == "fp16")
    t = Training(cfg, info, say, task, data, model, train_ds, val_ds, precision, scaler, Checkpoints(cfg.out),
                 health=LearningHealth(cfg.warmup_epochs, labels=task.label_counts(data)))
    say(f"recipe {model_recipe(cfg.model)}: " + ", ".join(f"{k} {getattr(cfg, k)}" for k in RECIPE_KEYS
                                                        if getattr(cfg, k) is not None) + f", schedule {cfg.schedule}")
    if info.is_main:
        t.run.mkdir(parents=True, exist_ok=True)
        atomic_write_text(t.run / "config.yaml", dump_yaml(cfg))
        atomic_write_json(t.run / "labels.json", data.labels)
        task.save(t.run, data)
    return t


def _start_phase(t: Training, phase: Phase) -> PhaseRun:
    """Freeze/unfreeze for ``phase``, wrap the model (DDP, compile), pick its data (cached features
    while the backbone is frozen) and build a fresh optimizer and schedule."""
    cfg, info, model = t.cfg, t.info, t.model
    trainable = apply_phase(model, phase)
    t.say(f"phase {phase.name}: epochs {phase.start_epoch + 1}-{phase.end_epoch}, lr {phase.lr:g}, "
          f"{len(trainable)} trainable tensors "
          f"(backbone stages: {', '.join(model.encoder.trainable_stages) or 'none'})")
    t.runlog.event({"event": "phase", "phase": phase.name, "epoch": phase.start_epoch, "trainable": trainable})
    step_model = model
    if info.enabled:
        device_ids = [info.device.index] if info.device.type == "cuda" else None
        step_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    if cfg.compile:  # the frame CNN, in place (same checkpoint keys); the temporal model, ragged, stays eager
        model.encoder.compile()  # a whole compiled model failed on CUDA bf16 (torch 2.11): docs/training.md
    train_source, val_source = _phase_datasets(t, phase)
    batches = EpochBatchSampler(len(train_source), cfg.batch_size, shuffle=True, seed=cfg.seed, rank=info.rank,
                                world_size=info.world_size)
    loader = make_loader(train_source, batch_sampler=batches, workers=cfg.workers, seed=cfg.seed,
                         pin_memory=info.device.type == "cuda")  # page-locked batches copy to the GPU faster
    per_epoch = min(batches.num_batches(), cfg.limit_batches or batches.num_batches(), 1 if cfg.dry_run else 10**9)
    optimizer = build_optimizer(model, cfg, phase.lr)
    scheduler = build_scheduler(optimizer, per_epoch * phase.epochs, int(cfg.warmup_epochs * per_epoch))
    opt = Optimization(model, optimizer, scheduler, t.scaler, cfg.grad_clip)
    return PhaseRun(phase, step_model, opt, batches, loader, per_epoch, train_source, val_source)


def _phase_datasets(t: Training, phase: Phase):
    """While the backbone is frozen (and the cache is on), train and validate on cached features.

    With ``cache_views=1`` the training set is cached eval-style (deterministic sampling, centre
    crop): exact features, no augmentation. With K > 1 views, K augmented samples of each video
    are cached and epoch e trains on view e % K.
    """
    cfg, info, model, train_ds = t.cfg, t.info, t.model, t.train_ds
    if phase.trainable != "none" or cfg.cache == "off" or not model.encoder.cacheable:
        return train_ds, t.val_ds
    from .data.features import CachedFeatureDataset, FeatureCache, extract_features

    root = t.run / "cache" if cfg.cache == "auto" else Path(cfg.cache)
    if cfg.cache_views == 1:
        train_ds = train_ds.variant(transform=eval_transform(data_config(cfg, model)), train=False)
    out = []
    for name, dataset, views in (("train", train_ds, cfg.cache_views), ("val", t.val_ds, 1)):
        if dataset is None:
            out.append(None)
            continue
        cache = FeatureCache(root, encoder=model.encoder, dataset=dataset, views=views,
                             amp={"bf16": torch.bfloat16, "fp16": torch.float16}.get(t.precision))  # as training
        stats = extract_features(cache, batch_size=max(1, cfg.batch_size), workers=cfg.workers, device=info.device,
                                 rank=info.rank, world_size=info.world_size, channels_last=cfg.channels_last,
                                 progress=info.is_main, view=None)
        distributed.barrier(info)
        t.say(f"feature cache ({name}): {stats['extracted']} extracted, {stats['cached_before']} already cached "
              f"in {stats['seconds']:.1f} s, {len(stats['skipped'])} skipped -> {cache.dir}")
        out.append(CachedFeatureDataset(cache))
    return out[0], out[1]


def _after_step(t: Training, p: PhaseRun, epoch: int, stop: StopFlag, on_step) -> Callable[[int, EpochStats], bool]:
    """What happens after every optimizer step: the log row every ``log_every`` steps, ``on_step``, a
    checkpoint every ``checkpoint_every`` steps (or when a stop is asked for); True means stop."""
    cfg = t.cfg

    def after_step(batch_index: int, stats: EpochStats) -> bool:
        step = t.counter.step
        if step % cfg.log_every == 0:
            rate = stats.clips_per_s()
            t.runlog.scalars(step, {"train_loss": stats.loss.mean, "lr": max(p.opt.scheduler.get_last_lr()),
                                    "clips_per_s": rate}, epoch=epoch + 1, phase=p.phase.name)
            t.say(f"epoch {epoch + 1}/{cfg.epochs} step {step} loss {stats.loss.mean:.4f} {rate:.1f} clips/s")
        if on_step is not None:
            on_step(step)
        # a stop asked for at any time during the step (also from on_step) saves this step
        if t.info.is_main and ((cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or stop.requested):
            t.save_checkpoint(p.opt, epoch, batch_index + 1)
        if stop.requested:
            distributed.barrier(t.info)
            t.say(f"stopped at step {step}; continue with: cnnlstm train ... --out {t.run} --resume")
        return stop.requested

    return after_step


def _end_epoch(t: Training, p: PhaseRun, epoch: int, stats: EpochStats) -> bool:
    """Validate, log the epoch's row, keep the best weights, save a checkpoint; True ends training
    (early stop, dry run)."""
    cfg, task = t.cfg, t.task
    t.skipped.items += stats.skips.items
    row = {"train_loss": stats.loss.mean, "train_skipped": len(stats.skips), "nonfinite_steps": stats.nonfinite_steps,
           "lr": max(p.opt.scheduler.get_last_lr()), "epoch_s": stats.seconds()}
    if p.val_source is not None:
        val_row, _, val_last = validate(t.model, p.val_source, task, t.data, cfg, t.info, t.autocast)
        row.update(val_row)
        t.last_val = val_last if val_last is not None else t.last_val
    t.runlog.scalars(t.counter.step, row, epoch=epoch + 1, phase=p.phase.name)
    t.say(f"epoch {epoch + 1}/{cfg.epochs} [{p.phase.name}] " + " ".join(
        f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    for line in stats.notes():
        t.say(line)
    t.health.labels.merge(stats.labels)
    warning = t.health.check(epoch + 1, row["train_loss"], row.get("val_top1"))
    if warning:
        t.say(f"warning: {warning}")
        t.runlog.event({"event": "health", "epoch": epoch + 1, "message": warning})
    score = row.get(task.score_name, -row["train_loss"])
    if score > t.best["score"]:
        t.best = {"score": score, "epoch": epoch + 1}
        if t.info.is_main:
            save_weights(t.model, t.run / "model.safetensors")
            atomic_write_json(t.run / "best.json", {"epoch": epoch + 1, **row})  # what the kept weights scored
    if t.info.is_main:
        t.save_checkpoint(p.opt, epoch + 1, 0)
    distributed.barrier(t.info)
    if cfg.early_stop and epoch + 1 - t.best["epoch"] >= cfg.early_stop:
        t.say(f"early stop: no better {task.score_name} for {cfg.early_stop} epochs "
              f"(best {t.best['score']:.4f} at epoch {t.best['epoch']})")
        return True
    return cfg.dry_run


def _finish(t: Training) -> dict:
    """Last weights, curves, the task's final plot and summary.json; returns the summary."""
    cfg, info = t.cfg, t.info
    if info.is_main:
        save_weights(t.model, t.run / "last.safetensors")
        t.runlog.finish()
        if t.last_val is not None and available("matplotlib"):
            t.task.final_plot(t.last_val, t.data.labels, t.run)
    if t.val_ds is None and t.best["epoch"] > 0 and t.task.picks_on_training(cfg):  # what validation would pick
        distributed.barrier(info)  # rank 0 wrote the kept weights: validated once on the training videos
        load_weights(t.model, t.run / "model.safetensors")
        source = t.train_ds.variant(transform=eval_transform(data_config(cfg, t.model)), train=False)
        row = validate(t.model, source, t.task, t.data, cfg, info, t.autocast)[0]
        t.say("picked on the training videos (no --val): " + ", ".join(f"{k} {v}" for k, v in row.items()))
        if info.is_main:
            atomic_write_json(t.run / "best.json", {"epoch": t.best["epoch"], "scored_on": "train", **row})
    distributed.barrier(info)
    summary = {"run": str(t.run), "task": cfg.task, "best_epoch": t.best["epoch"], "best_score_name": t.task.score_name,
               "best_val_score": t.best["score"] if cfg.val else None, "steps": t.counter.step,
               "skipped": t.skipped.items, "classes": t.data.labels}
    summary[f"best_{t.task.score_name}"] = summary["best_val_score"]  # e.g. best_val_top1
    if info.is_main:
        atomic_write_json(t.run / "summary.json", summary)
    return summary


# --- command line -----------------------------------------------------------------------------

def add_parser(sub) -> None:
    """Register ``cnnlstm train`` on the CLI's subparsers."""
    p = sub.add_parser("train", help="train a model on your videos",
                       description="Train on a dataset. Config: defaults, then --config recipe.yaml, then options.")
    p.add_argument("--config", default=None, help="flat YAML recipe of config keys")
    add_offline_option(p)
    add_config_options(p)
    p.set_defaults(func=cmd_train)


def add_offline_option(p) -> None:
    """``--offline`` (train, compare): the command sets ``CNNLSTM_OFFLINE=1`` before building any model."""
    p.add_argument("--offline", action="store_true", help=f"never download pretrained weights, use the torch cache "
                   f"only (sets {OFFLINE_ENV}=1, which torchrun's processes inherit)")


def cmd_train(args: argparse.Namespace) -> int:
    """Train on a dataset SPEC; every config key is also an option (--key value or --key=value)."""
    if args.offline:
        os.environ[OFFLINE_ENV] = "1"
    summary = fit(resolve_config(args.config, config_overrides(args)))
    return EXIT_STOPPED if summary.get("stopped") else 0


__all__ = ["fit", "add_parser", "add_offline_option"]
