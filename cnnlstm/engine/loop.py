"""The loops over batches: one training epoch, validation, and a model run over a loader.

``fit`` (:mod:`cnnlstm.train`) owns the run: phases, epochs, checkpoints and logs. Each function
here owns one loop over batches: :func:`train_one_epoch` steps the optimizer, :func:`validate`
asks the run's task for its metrics, and :func:`run_model` runs a model over a loader in eval mode
(validation and evaluation of every task go through it; the task turns outputs into its rows).
"""
from __future__ import annotations

import signal
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..data.datasets import SkipLog, good_batches, make_loader
from ..models.dropout import batch_rows, step_seed
from ..progress import progress_bar
from . import distributed
from .health import LabelCounts, LabelStatistics


def run_model(model: nn.Module, loader, device: torch.device, rows_of: Callable[[Any, Any], list], *,
              autocast=nullcontext, forward: Callable | None = None) -> tuple[list, list[dict]]:
    """Run ``model`` over ``loader`` in eval mode, without autograd; returns the rows and the skipped videos.

    ``forward(model, clips, lengths)`` computes one batch's output (default ``model(clips, lengths)``,
    under ``autocast``); ``rows_of(batch, output)`` turns it into a list of rows, one per video.
    """
    model.eval()
    rows, skipped = [], []
    with torch.inference_mode():
        for batch in good_batches(loader, skipped):
            clips, lengths = batch.clips.to(device), batch.lengths.to(device)
            with autocast():
                out = forward(model, clips, lengths) if forward is not None else model(clips, lengths)
            rows += rows_of(batch, out)
    return rows, skipped


class RunningMean:
    """Weighted running mean of per-batch values (losses): ``update(batch_mean, n=batch_size)``."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def update(self, value: float | Tensor, n: int = 1) -> None:
        """Add ``value`` (the mean over ``n`` items); a tensor is read with ``.item()``."""
        if isinstance(n, bool) or int(n) != n or n < 0:
            raise ValueError(f"n must be a non-negative integer; got {n!r}")
        v = float(value.detach().item()) if isinstance(value, Tensor) else float(value)
        self.total += v * n  # a NaN loss stays visible in the mean; the loop decides what to do
        self.count += int(n)

    @property
    def mean(self) -> float:
        """The mean so far (0.0 before any update)."""
        return self.total / self.count if self.count else 0.0

    def reset(self) -> None:
        self.total, self.count = 0.0, 0

    def __repr__(self) -> str:
        return f"RunningMean(mean={self.mean:.6g}, count={self.count})"


@dataclass
class Optimization:
    """What one optimizer step needs; ``model`` is the plain module whose gradients are clipped."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    grad_clip: float  # max gradient norm (0: off)

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])


@dataclass
class StepCounter:
    step: int = 0  # optimizer steps so far, over every phase (and across a resume)
    bad_steps: int = 0  # consecutive steps with non-finite gradients


@dataclass
class EpochStats:
    loss: RunningMean = field(default_factory=RunningMean)  # mean training loss over the clips seen
    skips: SkipLog = field(default_factory=SkipLog)  # bad videos dropped from the batches
    labels: LabelStatistics = field(default_factory=LabelCounts)  # the training targets seen (for the health check)
    nonfinite_steps: int = 0  # steps skipped for non-finite gradients
    started: float = field(default_factory=time.perf_counter)
    stopped: bool = False  # the epoch ended early because a stop was asked for

    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def clips_per_s(self) -> float:
        return self.loss.count / max(self.seconds(), 1e-9)

    def notes(self) -> list[str]:
        """Lines for the log beside the epoch's row: the bad videos it dropped, the steps it skipped."""
        notes = [self.skips.summary()] if self.skips.items else []
        if self.nonfinite_steps:
            notes.append(f"warning: {self.nonfinite_steps} optimizer steps of this epoch were skipped, their gradients "
                         "not finite (inf/NaN): if it goes on, lower --lr or try --precision fp32")
        return notes


def optimizer_step(loss: Tensor, opt: Optimization, counter: StepCounter) -> bool:
    """Backward pass, gradient clipping and one optimizer step; False when the step was skipped
    because the gradients were not finite (10 such steps in a row raise FloatingPointError)."""
    opt.optimizer.zero_grad(set_to_none=True)
    opt.scaler.scale(loss).backward()
    opt.scaler.unscale_(opt.optimizer)
    norm = torch.nn.utils.clip_grad_norm_(opt.model.parameters(), opt.grad_clip if opt.grad_clip > 0 else float("inf"))
    if torch.isfinite(norm) or opt.scaler.is_enabled():  # fp16: the GradScaler skips inf steps itself
        opt.scaler.step(opt.optimizer)
        opt.scaler.update()
        counter.bad_steps = 0
        return True
    counter.bad_steps += 1  # bf16/fp32: an inf gradient would turn the weights into NaN; skip the step
    if counter.bad_steps >= 10:
        raise FloatingPointError(f"non-finite gradients in {counter.bad_steps} steps in a row (step {counter.step}): "
                                 "training diverged. Lower --lr, or try --precision fp32")
    return False


def advance_schedule(scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
    """One scheduler step per batch, also after a skipped optimizer step (non-finite gradients, an
    all-bad batch), so the schedule follows the batch count. PyTorch checks the order of the two
    steps only on a scheduler's first step, so only that one runs with its warning silenced."""
    if scheduler.last_epoch > 0:
        scheduler.step()
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
        scheduler.step()


def train_one_epoch(model: nn.Module, loader, task, opt: Optimization, counter: StepCounter, *, epoch: int,
                    batches: range, cfg, device: torch.device, autocast, after_step: Callable[[int, EpochStats], bool],
                    data=None, desc: str = "", progress: bool = False, shard: tuple[int, int] = (0, 1)) -> EpochStats:
    """Train ``model`` (possibly DDP/compiled) on the batches ``batches`` of ``loader``.

    ``batches`` is ``range(start_batch, per_epoch)``: the loader yields the epoch's batches from
    ``start_batch`` (a resumed epoch) and the loop stops at ``per_epoch`` (``--limit-batches``).
    ``after_step(batch_index, stats)`` runs after every optimizer step (logs, checkpoints,
    ``on_step``) and returns True to stop the run; the stats then say ``stopped``. ``data`` is the
    task's :class:`~cnnlstm.tasks.base.TaskData` (its loss and its count of the targets may use it).
    ``shard`` is (rank, world size): this process holds its slice of each global batch of
    ``cfg.batch_size``, and dropout masks are drawn per global-batch row
    (:mod:`cnnlstm.models.dropout`), so they do not depend on the number of processes.
    """
    rank, world_size = shard
    per_rank = cfg.batch_size // world_size
    stats = EpochStats(labels=task.label_counts(data))
    model.train()
    bar = progress_bar(total=len(batches), desc=desc, unit="batch", enabled=progress, leave=False)  # terminal only
    for batch_index, batch in enumerate(loader, start=batches.start):
        if batch_index >= batches.stop:
            break
        stats.skips.update(batch)
        stats.labels.observe(batch.labels)
        if len(batch):
            progress_now = (epoch + batch_index / batches.stop) / cfg.epochs  # for scheduled sampling
            rows = batch_rows(step_seed(cfg.seed, counter.step), total=cfg.batch_size, start=rank * per_rank,
                              size=len(batch))
            with autocast(), rows:
                loss = task.loss(model, batch, device, cfg, progress_now, data)
            if not optimizer_step(loss, opt, counter):
                stats.nonfinite_steps += 1
            stats.loss.update(loss, len(batch))
        advance_schedule(opt.scheduler)
        counter.step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{stats.loss.mean:.3f}", clips_s=f"{stats.clips_per_s():.1f}")
        if after_step(batch_index, stats):
            stats.stopped = True
            break
    bar.close()
    return stats


def validate(model: nn.Module, dataset, task, data, cfg, info: distributed.DistInfo,
             autocast) -> tuple[dict, float, Any]:
    """The task's validation row (``val_*`` keys), selection score and what its final plot needs.

    Each process validates its shard of ``dataset``; the task gathers the rows of every process.
    """
    loader = make_loader(dataset, batch_size=max(1, cfg.batch_size // info.world_size), workers=cfg.workers,
                         sampler=distributed.shard(len(dataset), info))
    return task.validate(model, loader, info.device, autocast, data, cfg, info)


class StopFlag:
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


__all__ = ["run_model", "RunningMean", "Optimization", "StepCounter", "EpochStats", "optimizer_step",
           "train_one_epoch", "validate", "StopFlag"]
