"""fit(): one plain PyTorch training loop for every task (classify, segment, caption; see tasks.py).

Reads top to bottom: set up (processes, seed, data, model), then for each phase of the schedule
(gradual unfreezing: a fresh optimizer per phase) run epochs of steps; validate every epoch;
write metrics, the best weights and resumable checkpoints to the run directory. Under ``torchrun``
the same code trains with DistributedDataParallel; rank 0 writes.
"""
from __future__ import annotations

import json
import signal
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from ._optional import available
from .config import ARCHITECTURE_KEYS, TrainConfig, diff_configs, dump_yaml, load_saved_config
from .data.datasets import EpochBatchSampler, SkipLog, VideoDataset, good_batches, make_loader
from .data.transforms import eval_transform, train_transform
from .engine import distributed
from .engine.checkpoint import Checkpoints, capture_rng, restore_rng, save_weights
from .engine.io import atomic_write_text
from .engine.optim import Phase, apply_phase, build_optimizer, build_scheduler, pick_precision, plan_phases
from .engine.runlog import RunLog
from .run import build_model, data_config, sampler_config
from .tasks import get_task


def collect_logits(model, loader, device, autocast=nullcontext) -> tuple[torch.Tensor, torch.Tensor, list[int],
                                                                         list[dict]]:
    """Run ``model`` over a loader: logits (N, K), targets (N,), dataset indices and skipped videos."""
    model.eval()
    logits, targets, indices, skipped = [], [], [], []
    with torch.inference_mode():
        for batch in good_batches(loader, skipped):
            with autocast():
                out = model(batch.clips.to(device), batch.lengths.to(device))
            logits.append(out.logits.float().cpu())
            targets.append(batch.labels)
            indices += [m["index"] for m in batch.meta]
    if not logits:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long), [], skipped
    return torch.cat(logits), torch.cat(targets), indices, skipped


class _StopFlag:
    """SIGTERM / Ctrl-C ask the loop to finish the step, save and exit resumably."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def fit(cfg: TrainConfig, *, on_step: Callable[[int], None] | None = None, log: Callable[[str], None] = print) -> dict:
    """Train per ``cfg``; returns a summary. ``on_step(step)`` is called after every optimizer step."""
    dist_info = distributed.setup(cfg.device)
    device, main = dist_info.device, dist_info.is_main
    say = log if main else (lambda *_: None)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    run = Path(cfg.out)
    checkpoints = Checkpoints(run)
    resume_from = checkpoints.latest() if cfg.resume else None
    if cfg.resume and resume_from is None:
        say(f"--resume: no checkpoint in {run / 'checkpoints'}; starting from scratch")
    if resume_from is not None and (run / "config.yaml").is_file():
        changed = diff_configs(load_saved_config(run / "config.yaml"), cfg)
        fatal = {k: v for k, v in changed.items() if k in ARCHITECTURE_KEYS}
        if fatal:
            raise ValueError(f"cannot resume {run}: these settings differ from the saved run: {fatal}")
        for key, (old, new) in changed.items():
            if key not in ("resume",):
                say(f"warning: resuming with {key} changed from {old!r} to {new!r}")
    elif main and (run / "checkpoints").is_dir() and any((run / "checkpoints").iterdir()) and not cfg.resume:
        raise FileExistsError(f"{run} already holds a training run; pass --resume to continue it or choose another "
                              "--out")

    # --- data -------------------------------------------------------------------------------
    task = get_task(cfg.task)
    data = task.load(cfg, say)
    classes = data.labels  # class names, or the vocabulary for captioning
    model = build_model(cfg, len(classes))
    task.check_model(model)
    data_cfg = data_config(cfg, model)
    named = classes if cfg.task == "classify" else None  # dense tasks label through their targets
    train_ds = VideoDataset(data.train, sampler=sampler_config(cfg),
                            transform=train_transform(data_cfg, flip=cfg.flip, scale=(cfg.min_crop_scale, 1.0)),
                            train=cfg.temporal_jitter, classes=named, on_error=cfg.on_error, seed=cfg.seed,
                            targets=data.train_targets)
    val_ds = VideoDataset(data.val, sampler=sampler_config(cfg), transform=eval_transform(data_cfg), train=False,
                          classes=named, on_error=cfg.on_error, seed=cfg.seed,
                          targets=data.val_targets) if data.val else None
    fingerprint = {"num_videos": len(train_ds), "classes": classes}

    # --- model and run directory ------------------------------------------------------------
    model.to(device)
    if cfg.channels_last:
        model.encoder.to(memory_format=torch.channels_last)
    precision = pick_precision(cfg.precision, device)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype else nullcontext
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    if main:
        run.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run / "config.yaml", dump_yaml(cfg))
        atomic_write_text(run / "labels.json", json.dumps(classes, indent=2))
        task.save(run, data)
    phases = plan_phases(cfg)
    state = checkpoints.load(resume_from, model) if resume_from is not None else None
    runlog = RunLog(run, enabled=main, resume_step=state["step"] if state else None)
    if state is not None:
        if state["fingerprint"] != fingerprint:
            raise ValueError(f"cannot resume {run}: the dataset changed ({state['fingerprint']} -> {fingerprint})")
        say(f"resuming from {resume_from.name}: epoch {state['epoch'] + 1}, batch {state['batch_in_epoch']}")
    say(f"training {cfg.model} ({cfg.backbone}) for {cfg.task} on {len(train_ds)} videos, {len(classes)} "
        f"{'tokens' if cfg.task == 'caption' else 'classes'}, "
        f"{dist_info.world_size} process(es) on {device}, precision {precision}")

    step = state["step"] if state else 0
    best = state["best"] if state else {"score": float("-inf"), "epoch": -1}
    skip_total = SkipLog()
    stopped_early = False
    last_val = None
    bad_steps = 0  # consecutive steps with non-finite gradients
    with _StopFlag() as stop:
        for phase in phases:
            if state and state["epoch"] >= phase.end_epoch:
                continue
            trainable = apply_phase(model, phase)
            say(f"phase {phase.name}: epochs {phase.start_epoch + 1}-{phase.end_epoch}, lr {phase.lr:g}, "
                f"{len(trainable)} trainable tensors "
                f"(backbone stages: {', '.join(model.encoder.trainable_stages) or 'none'})")
            runlog.event({"event": "phase", "phase": phase.name, "epoch": phase.start_epoch, "trainable": trainable})
            ddp_model = model
            if dist_info.enabled:
                device_ids = [device.index] if device.type == "cuda" else None
                ddp_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
            step_model = torch.compile(ddp_model) if cfg.compile else ddp_model
            train_source, val_source = _phase_datasets(cfg, model, phase, train_ds, val_ds, dist_info, run, say)
            batches = EpochBatchSampler(len(train_source), cfg.batch_size, shuffle=True, seed=cfg.seed,
                                        rank=dist_info.rank, world_size=dist_info.world_size)
            loader = make_loader(train_source, batch_sampler=batches, workers=cfg.workers, seed=cfg.seed)
            per_epoch = min(batches.num_batches(), cfg.limit_batches or batches.num_batches(),
                            1 if cfg.dry_run else 10**9)
            optimizer = build_optimizer(model, cfg, phase.lr)
            scheduler = build_scheduler(optimizer, per_epoch * phase.epochs, int(cfg.warmup_epochs * per_epoch))
            first_epoch, start_batch = phase.start_epoch, 0
            if state and state["epoch"] >= phase.start_epoch:
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
                scaler.load_state_dict(state["scaler"])
                restore_rng(state["rng"])
                first_epoch, start_batch = state["epoch"], state["batch_in_epoch"]
            state = None
            for epoch in range(first_epoch, phase.end_epoch):
                batches.set_epoch(epoch, start_batch)
                train_source.set_epoch(epoch)
                step_model.train()
                skips, seen, loss_sum, tick = SkipLog(), 0, 0.0, time.perf_counter()
                skipped_steps = 0
                bar = tqdm(total=per_epoch - start_batch, desc=f"epoch {epoch + 1}/{cfg.epochs} [{phase.name}]",
                           unit="batch",
                           disable=not main or not cfg.progress, leave=False)
                for batch_index, batch in enumerate(loader, start=start_batch):
                    if batch_index >= per_epoch:
                        break
                    skips.update(batch)
                    if len(batch):
                        progress = (epoch + batch_index / per_epoch) / cfg.epochs  # for scheduled sampling
                        with autocast():
                            loss = task.loss(step_model, batch, device, cfg, progress)
                        optimizer.zero_grad(set_to_none=True)
                        scaler.scale(loss).backward()
                        scaler.unscale_(optimizer)
                        norm = torch.nn.utils.clip_grad_norm_(model.parameters(),
                                                              cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
                        if torch.isfinite(norm) or scaler.is_enabled():  # fp16: the GradScaler skips inf steps itself
                            scaler.step(optimizer)
                            scaler.update()
                            bad_steps = 0
                        else:  # bf16/fp32: an inf gradient would turn the weights into NaN; skip the step
                            bad_steps += 1
                            skipped_steps += 1
                            if bad_steps >= 10:
                                raise FloatingPointError(
                                    f"non-finite gradients in {bad_steps} steps in a row (step {step}): "
                                    "training diverged. "
                                    "Lower --lr, or try --precision fp32")
                        seen += len(batch)
                        loss_sum += loss.item() * len(batch)
                    scheduler.step()
                    step += 1
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss_sum / max(seen, 1):.3f}",
                                    clips_s=f"{seen / max(time.perf_counter() - tick, 1e-9):.1f}")
                    if step % cfg.log_every == 0:
                        rate = seen / max(time.perf_counter() - tick, 1e-9)
                        runlog.scalars(step,
                                       {"train_loss": loss_sum / max(seen, 1), "lr": max(scheduler.get_last_lr()),
                                        "clips_per_s": rate}, epoch=epoch + 1, phase=phase.name)
                        say(f"epoch {epoch + 1}/{cfg.epochs} step {step} loss {loss_sum / max(seen, 1):.4f} "
                            f"{rate:.1f} clips/s")
                    position = {"epoch": epoch, "batch_in_epoch": batch_index + 1}
                    if main and ((cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or stop.requested):
                        checkpoints.save(step, model,
                                         _train_state(step, position, optimizer, scheduler, scaler, best, fingerprint))
                    if on_step is not None:
                        on_step(step)
                    if stop.requested:
                        distributed.barrier(dist_info)
                        say(f"stopped at step {step}; continue with: cnnlstm train ... --out {run} --resume")
                        return {"stopped": True, "step": step}
                bar.close()
                start_batch = 0
                skip_total.items += skips.items
                row = {"train_loss": loss_sum / max(seen, 1), "train_skipped": len(skips),
                       "nonfinite_steps": skipped_steps,
                       "lr": max(scheduler.get_last_lr()),
                       "epoch_s": time.perf_counter() - tick}
                if val_source is not None:
                    val_loader = make_loader(val_source, batch_size=max(1, cfg.batch_size // dist_info.world_size),
                                             workers=cfg.workers,
                                             sampler=_shard(len(val_source), dist_info))
                    val_row, val_score, val_last = task.validate(model, val_loader, device, autocast, data, cfg,
                                                                 dist_info)
                    row.update(val_row)
                    last_val = val_last if val_last is not None else last_val
                runlog.scalars(step, row, epoch=epoch + 1, phase=phase.name)
                say(f"epoch {epoch + 1}/{cfg.epochs} [{phase.name}] " + " ".join(
                    f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
                if skips.items:
                    say(skips.summary())
                score = row.get(task.score_name, -row["train_loss"])
                if main and score > best["score"]:
                    best = {"score": score, "epoch": epoch + 1}
                    save_weights(model, run / "model.safetensors")
                if main:
                    end = {"epoch": epoch + 1, "batch_in_epoch": 0}
                    checkpoints.save(step, model,
                                     _train_state(step, end, optimizer, scheduler, scaler, best, fingerprint))
                distributed.barrier(dist_info)
                if cfg.early_stop and epoch + 1 - best["epoch"] >= cfg.early_stop:
                    say(f"early stop: no better {task.score_name} for {cfg.early_stop} epochs (best "
                        f"{best['score']:.4f} at epoch {best['epoch']})")
                    stopped_early = True
                    break
                if cfg.dry_run:
                    break
            if stopped_early or cfg.dry_run:
                break
    if main:
        save_weights(model, run / "last.safetensors")
        runlog.finish()
        if last_val is not None and available("matplotlib"):
            task.final_plot(last_val, classes, run)
    distributed.barrier(dist_info)
    summary = {"run": str(run), "task": cfg.task, "best_epoch": best["epoch"], "best_score_name": task.score_name,
               "best_val_score": best["score"] if cfg.val else None, "steps": step, "skipped": skip_total.items,
               "classes": classes}
    if cfg.task == "classify":
        summary["best_val_top1"] = summary["best_val_score"]
    if main:
        atomic_write_text(run / "summary.json", json.dumps(summary, indent=2))
    distributed.cleanup(dist_info)
    return summary


def _train_state(step, position, optimizer, scheduler, scaler, best, fingerprint) -> dict:
    return {"step": step, **position, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "rng": capture_rng(), "best": best, "fingerprint": fingerprint}


def _shard(n: int, info: distributed.DistInfo):
    if not info.enabled:
        return None
    return list(range(info.rank, n, info.world_size))


def _phase_datasets(cfg, model, phase: Phase, train_ds, val_ds, info, run: Path, say):
    """While the backbone is frozen (and the cache is on), train and validate on cached features.

    With ``cache_views=1`` the training set is cached eval-style (deterministic sampling, centre
    crop): exact features, no augmentation. With K > 1 views, K augmented samples of each video
    are cached and epoch e trains on view e % K.
    """
    if phase.trainable != "none" or cfg.cache == "off" or not model.encoder.cacheable:
        return train_ds, val_ds
    from .data.features import CachedFeatureDataset, FeatureCache, extract_features

    root = run / "cache" if cfg.cache == "auto" else Path(cfg.cache)
    if cfg.cache_views == 1:
        train_ds = train_ds.variant(transform=eval_transform(data_config(cfg, model)), train=False)
    out = []
    for name, dataset, views in (("train", train_ds, cfg.cache_views), ("val", val_ds, 1)):
        if dataset is None:
            out.append(None)
            continue
        cache = FeatureCache(root, encoder=model.encoder, dataset=dataset, views=views)
        stats = extract_features(cache, batch_size=max(1, cfg.batch_size), workers=cfg.workers, device=info.device,
                                 rank=info.rank, world_size=info.world_size, channels_last=cfg.channels_last,
                                 progress=info.is_main, view=None)
        distributed.barrier(info)
        say(f"feature cache ({name}): {stats['extracted']} extracted, {stats['cached_before']} already cached "
            f"in {stats['seconds']:.1f} s, {len(stats['skipped'])} skipped -> {cache.dir}")
        out.append(CachedFeatureDataset(cache))
    return out[0], out[1]
