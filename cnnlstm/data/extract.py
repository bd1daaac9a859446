"""Filling a feature cache: as fast as an epoch that does not cache at all.

An extraction epoch does the decoding and CNN work of a plain training epoch with a frozen
backbone, plus the writes, so it should cost no more than that epoch (``benchmarks/cache_speed.py``
measures both on the same clips). Hence: clips decoded in DataLoader workers and batched across
clips (the CNN sees every real frame of ``batch_size`` clips at once, padding skipped), the CNN
under the autocast dtype training uses (``FeatureCache(amp=torch.bfloat16)``: bf16 on CPUs and
GPUs that run it natively), channels_last, and the writes (safetensors, checksum, atomic
rename with fsync) in a background thread, off the hot path.

Letters: B clips in a batch, T frames, D feature size.
"""
from __future__ import annotations

import copy
import queue
import threading
import time
from contextlib import nullcontext
from typing import Any, Callable

import torch

from ..progress import progress_bar
from .datasets import make_loader

__all__ = ["extract_features"]

WRITE_QUEUE = 64  # clips waiting to be written before the CNN waits for the disk


class _Writer:
    """Runs ``put`` calls in one background thread; the first error is raised by :meth:`close`."""

    def __init__(self):
        self.jobs: queue.Queue = queue.Queue(WRITE_QUEUE)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="cnnlstm feature writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (job := self.jobs.get()) is not None:
            if self.error is None:
                try:
                    job()
                except BaseException as exc:  # noqa: BLE001 - handed to the caller by close()
                    self.error = exc

    def submit(self, job: Callable[[], None]) -> None:
        if self.error is not None:
            raise self.error
        self.jobs.put(job)

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


def extract_features(cache, *, batch_size: int = 8, workers: int = 0, device: str | torch.device = "cpu",
                     rank: int = 0, world_size: int = 1, channels_last: bool = True, progress: bool = True,
                     view: int | None = 0) -> dict:
    """Fill ``cache`` (a :class:`~cnnlstm.data.features.FeatureCache`) with this rank's missing
    entries (items ``rank::world_size``) of ``view`` (None: every view). The encoder runs in eval
    mode under ``torch.inference_mode`` (and ``torch.autocast`` with ``cache.amp``) on a copy, so
    the caller's module is not touched. Returns ``extracted``, ``cached_before``, ``skipped``
    (path, error, message of each bad video), ``seconds`` and ``frames_per_s``.

    ``channels_last`` (faster on CPU and GPU) picks other convolution kernels, so the features
    equal ``encoder(clips)`` to float rounding (~1e-6); ``channels_last=False`` (and ``amp=None``)
    stores exactly what ``encoder(clips)`` returns. Every rank (or process) may run this at once;
    under DDP call ``dist.barrier()`` afterwards, before training from the cache.
    """
    if cache.encoder is None:
        raise RuntimeError("this FeatureCache was pickled without its encoder; build the FeatureCache in this process")
    if not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size; got rank={rank}, world_size={world_size}")
    views = range(cache.views) if view is None else [cache.check_view(view)]
    device = torch.device(device)
    encoder = copy.deepcopy(cache.encoder).to(device).eval()
    if channels_last:
        encoder = encoder.to(memory_format=torch.channels_last)
    amp = torch.autocast(device.type, dtype=cache.amp) if cache.amp is not None else nullcontext()
    dataset, epoch = cache.dataset, cache.dataset.epoch
    stats: dict[str, Any] = {"extracted": 0, "cached_before": 0, "skipped": [], "seconds": 0.0, "frames_per_s": 0.0}
    frames, start, writer = 0, time.perf_counter(), _Writer()
    try:
        for v in views:
            shard = list(range(len(dataset)))[rank::world_size]  # fixed per rank, so ranks never overlap
            todo = [i for i in shard if not cache.has(i, v)]
            stats["cached_before"] += len(shard) - len(todo)
            if not todo:
                continue
            dataset.set_epoch(v)  # view v = the clip epoch v draws (before the workers copy the dataset)
            from torch.utils.data import Subset

            loader = make_loader(Subset(dataset, todo), batch_size=batch_size, workers=workers,
                                 pin_memory=device.type == "cuda")
            loader = progress_bar(loader, enabled=progress, desc=f"features (view {v})", unit="batch")
            with torch.inference_mode():
                for batch in loader:
                    stats["skipped"].extend(batch.skipped)
                    if len(batch) == 0:
                        continue
                    clips = batch.clips.to(device, non_blocking=True)  # (B, T, C, H, W)
                    with amp:
                        feats, _ = encoder(clips, batch.lengths.to(device))  # (B, T, D), zeros on padding
                    feats = feats.cpu()
                    for b, meta in enumerate(batch.meta):
                        n = int(batch.lengths[b])
                        writer.submit(lambda m=meta, f=feats[b, :n], v=v: cache.put_item(
                            m["index"], f, m["frame_indices"], v, fps=m.get("fps")))
                    stats["extracted"] += len(batch)
                    frames += int(batch.lengths.sum())
    finally:
        dataset.set_epoch(epoch)
        writer.close()  # every entry is on disk when this returns
    stats["seconds"] = time.perf_counter() - start
    stats["frames_per_s"] = frames / stats["seconds"] if frames else 0.0
    return stats
