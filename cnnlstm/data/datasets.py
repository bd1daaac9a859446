"""Datasets of real video files: sample frame indices, decode them, transform, label.

Letters: T frames, C channels, H/W height/width.

Bad videos follow an error policy: ``on_error="raise"`` stops at the first one; ``"skip"`` (the
default) turns it into a record that :func:`collate_videos` drops from the batch and lists in
``batch.skipped``, so the training loop counts and reports it. A run of
``max_consecutive_errors`` failures in a row raises: that is a broken dataset, not a bad file.
"""
from __future__ import annotations

import copy
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .annotations.formats import VideoItem, VideoList, load_spec
from .collate import IGNORE_INDEX, ClipBatch, collate_clips
from .sampling import SamplerConfig, sample_indices
from .video.decode import VideoReader
from .video.errors import VideoError
from .video.types import Limits

ON_ERROR = ("raise", "skip")


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A seed per (run seed, epoch, item): the same clip whatever worker decodes it."""
    return (seed * 1_000_003 + epoch * 7_919 + index) % (2**63 - 1)


class VideoDataset(Dataset):
    """One clip per video from a :class:`VideoList` (or any SPEC that ``load_spec`` reads).

    Each item is a dict: ``clip`` (T, C, H, W) (uint8 without a transform, float after one),
    ``label`` (class index, ``IGNORE_INDEX`` when unlabelled), ``path``, ``index``, ``frame_indices`` (T,).
    Random sampling and augmentation draw from a generator seeded by (seed, epoch, index), so a
    run is reproducible with any number of workers; call :meth:`set_epoch` every epoch.
    """

    def __init__(
        self,
        videos: VideoList | str | os.PathLike,
        *,
        sampler: SamplerConfig = SamplerConfig(),
        transform: Callable | None = None,
        train: bool = False,
        classes: Sequence[str] | None = None,
        root: str | os.PathLike | None = None,
        on_error: str = "skip",
        max_consecutive_errors: int = 50,
        backend: str = "pyav",
        decode_size: int | None = None,
        limits: Limits | None = Limits(),
        strict: bool = False,
        threads: int = 1,
        seed: int = 0,
        targets: Callable[..., Any] | None = None,
    ):
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}; got {on_error!r}")
        if not isinstance(videos, VideoList):
            videos = load_spec(videos, root=root, classes=classes)
        self.videos = videos
        self.classes = list(classes) if classes is not None else list(videos.classes)
        self._label_index = {c: i for i, c in enumerate(self.classes)}
        self.sampler, self.transform, self.train = sampler, transform, train
        self.on_error, self.max_consecutive_errors = on_error, max_consecutive_errors
        self.backend, self.decode_size, self.limits, self.strict = backend, decode_size, limits, strict
        self.threads, self.seed, self.epoch = threads, seed, 0
        self.targets = targets
        self._consecutive_errors = 0  # per worker process

    def __len__(self) -> int:
        return len(self.videos.items)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def variant(self, **changes: Any) -> "VideoDataset":
        """A copy with some attributes changed (e.g. ``transform``, ``train``), targets included."""
        new = copy.copy(self)
        for key, value in changes.items():
            if not hasattr(self, key):
                raise AttributeError(f"VideoDataset has no attribute {key!r}")
            setattr(new, key, value)
        return new

    def target_of(self, item: VideoItem, frame_indices: torch.Tensor, fps: float | None,
                  generator: torch.Generator | None = None):
        """The training target of a sampled clip: the class index, or what ``targets`` makes of
        (item, frame indices, fps, generator), e.g. per-frame labels (T,) or caption tokens (L,)."""
        if self.targets is None:
            return self.label_of(item)
        return self.targets(item, frame_indices, fps, generator)

    def label_of(self, item: VideoItem) -> int:
        if item.label is None:
            return IGNORE_INDEX
        if item.label not in self._label_index:
            raise ValueError(f"{item.path}: label {item.label!r} is not one of the classes {self.classes}")
        return self._label_index[item.label]

    def _read(self, item: VideoItem, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, float]:
        with VideoReader(item.path, backend=self.backend, threads=self.threads, strict=self.strict,
                         limits=self.limits) as reader:
            info = reader.info
            first, count = 0, info.num_frames
            # an untrimmed video with a [start, end] segment (Kinetics CSV): sample inside it
            if item.start is not None and item.end is not None and info.duration > item.end - item.start + 1.0:
                first = min(int(item.start * info.fps), info.num_frames - 1)
                count = max(1, min(int(item.end * info.fps), info.num_frames) - first)
            indices = sample_indices(self.sampler, count, fps=info.fps, train=self.train,
                                     generator=generator) + first  # (T,)
            frames = reader.get_frames(indices, size=self.decode_size)  # (T, C, H, W) uint8
        return frames, indices, info.fps

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.videos.items[index]
        generator = torch.Generator().manual_seed(item_seed(self.seed, self.epoch, index))
        try:
            frames, indices, fps = self._read(item, generator)
        except VideoError as exc:
            if self.on_error == "raise":
                raise
            self._consecutive_errors += 1
            if self._consecutive_errors >= self.max_consecutive_errors:
                raise RuntimeError(
                    f"{self._consecutive_errors} videos in a row failed to load; the last: {exc}. "
                    "The dataset looks broken: run `cnnlstm scan` on it"
                ) from exc
            return {"error": exc.reason, "message": str(exc), "path": item.path, "index": index}
        self._consecutive_errors = 0
        clip = self.transform(frames, generator=generator) if self.transform is not None else frames
        return {"clip": clip, "label": self.target_of(item, indices, fps, generator), "path": item.path, "index": index,
                "frame_indices": indices, "fps": fps}


def collate_videos(samples: Sequence[dict]) -> ClipBatch:
    """Collate the good samples, list the bad ones in ``batch.skipped`` (the batch may be empty)."""
    good = [s for s in samples if "error" not in s]
    skipped = [{k: s[k] for k in ("path", "error", "message")} for s in samples if "error" in s]
    if good:
        batch = collate_clips(good)
    else:
        batch = ClipBatch(torch.empty(0), torch.empty(0, dtype=torch.long), torch.empty(0, 0, dtype=torch.bool))
    batch.skipped = skipped
    return batch


def good_batches(loader, skipped: list[dict]):
    """The batches of ``loader`` that hold at least one clip; bad videos are appended to ``skipped``."""
    for batch in loader:
        skipped += batch.skipped
        if len(batch):
            yield batch


@dataclass
class SkipLog:
    """Counts the videos skipped during an epoch and says why."""

    items: list[dict] = field(default_factory=list)

    def update(self, batch: ClipBatch) -> None:
        self.items.extend(batch.skipped)

    def __len__(self) -> int:
        return len(self.items)

    def by_reason(self) -> dict[str, int]:
        return dict(Counter(i["error"] for i in self.items))

    def summary(self, limit: int = 5) -> str:
        if not self.items:
            return "no videos skipped"
        lines = [f"skipped {len(self.items)} bad video(s) {self.by_reason()}:"]
        lines += [f"  {i['message']}" for i in self.items[:limit]]
        if len(self.items) > limit:
            lines.append(f"  ... and {len(self.items) - limit} more")
        return "\n".join(lines)


def _worker_init(_worker_id: int) -> None:
    torch.set_num_threads(1)  # decoding workers must not fight the main process for cores


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int = 8,
    shuffle: bool = False,
    workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
    batch_sampler: Sampler | None = None,
    sampler: Sampler | None = None,
    timeout: float = 300.0,
    multiprocessing_context: str | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader for video datasets: decoders open inside workers, a hung worker becomes an
    error after ``timeout`` seconds, shuffling is seeded, bad videos land in ``batch.skipped``."""
    if getattr(dataset, "load_in_process", False):  # e.g. cached features held in memory: workers would start empty
        workers = 0
    kwargs: dict[str, Any] = dict(
        num_workers=workers,
        collate_fn=collate_videos,
        pin_memory=pin_memory,
        worker_init_fn=_worker_init if workers > 0 else None,
        timeout=timeout if workers > 0 else 0,
        multiprocessing_context=multiprocessing_context if workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
    )
    if batch_sampler is not None:
        return DataLoader(dataset, batch_sampler=batch_sampler, **kwargs)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle if sampler is None else False,
                      sampler=sampler, drop_last=drop_last, **kwargs)


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of one process, resumable mid-epoch and shardable across processes.

    The order of an epoch is a permutation seeded by (seed, epoch). Global batch ``b`` holds
    ``order[b * G : (b + 1) * G]``; with ``world_size`` processes, rank ``r`` takes its slice of
    every global batch, so N processes see exactly the global batches of one process. Under
    several processes the last incomplete global batch is filled from the start of the order (as
    ``DistributedSampler`` pads), so every rank runs the same number of steps.
    ``set_epoch(epoch, start_batch=k)`` skips the first ``k`` batches (resume).
    """

    def __init__(self, num_items: int, global_batch: int, *, shuffle: bool = True, seed: int = 0,
                 rank: int = 0, world_size: int = 1, drop_last: bool = False):
        if global_batch % world_size:
            raise ValueError(f"batch_size {global_batch} must divide evenly over {world_size} processes")
        self.n, self.global_batch, self.shuffle, self.seed = num_items, global_batch, shuffle, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def num_batches(self) -> int:
        full, rest = divmod(self.n, self.global_batch)
        return full + (1 if rest and not self.drop_last else 0)

    def __len__(self) -> int:
        return max(0, self.num_batches() - self.start_batch)

    def __iter__(self):
        if self.shuffle:
            order = torch.randperm(self.n,
                                   generator=torch.Generator().manual_seed(item_seed(self.seed, self.epoch, 0)))
        else:
            order = torch.arange(self.n)
        total = self.num_batches() * self.global_batch
        if self.world_size > 1 and total > self.n:
            order = torch.cat([order, order[: total - self.n]])  # equal steps on every rank
        for b in range(self.start_batch, self.num_batches()):
            chunk = order[b * self.global_batch : (b + 1) * self.global_batch]
            yield chunk.tensor_split(self.world_size)[self.rank].tolist()
