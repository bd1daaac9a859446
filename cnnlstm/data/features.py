"""Feature cache: run a frozen frame encoder once, store per-video features, train from them.

Letters: B batch, T frames, C channels, H/W height/width, D feature size.

While the backbone is frozen its output for a clip never changes, so epochs can skip decoding
and the CNN: :func:`extract_features` stores one ``(T, D)`` tensor per video (and view), and
:class:`CachedFeatureDataset` serves them to the same model, which runs from features::

    model.encoder.freeze()
    cache = FeatureCache("cache/", encoder=model.encoder, dataset=train_set)
    extract_features(cache, rank=rank, world_size=world_size)  # under DDP: then dist.barrier()
    features = CachedFeatureDataset(cache)  # items hold "clip" = features (T, D)
    for epoch in range(epochs):
        features.set_epoch(epoch)
        for batch in make_loader(features, batch_size=8, shuffle=True, seed=epoch):
            logits = model(batch.clips, batch.lengths).logits  # clips: (B, T, D)

Caching rules:

- **Key.** Everything that changes the features picks the cache folder ``root/<hash>/``: the
  encoder's name, pooling and weights (a hash of every ``state_dict`` tensor, BatchNorm buffers
  included), the dataset's transform ``repr``, sampler config, ``decode_size``, ``train`` flag
  (plus ``seed`` when sampling or augmentation is random), ``views``, the storage ``dtype`` and
  the format version. ``key.json`` there lists it in plain text. Change any of them and you get
  a new, empty folder; the old one is left as it was.
- **Entries.** One file per (video, view), named by the video's identity: absolute path, size
  and ``mtime_ns`` (and the segment of a Kinetics-style row). A rewritten or touched video
  misses just its own entry. The videos must therefore stay where they were extracted.
- **Writes** are atomic (temp file in the same folder, flush, fsync, ``os.replace``, fsync of
  the folder), so several processes or ranks may fill one cache: two writers of one entry write
  the same bytes and the last rename wins. An entry carries a checksum and the identity it was
  made for; a truncated, corrupt or mismatched entry reads as missing (and is removed), never
  a crash. Bad videos are skipped and counted and never get an entry.
- **Precision.** ``dtype=torch.float32`` (default) stores what the encoder returns (bitwise with
  ``channels_last=False``, to ~1e-6 with the faster default ``channels_last=True``);
  ``float16`` halves the disk and rounds each feature to about 3 significant digits (relative
  error <= 2**-11, and values beyond 65504 overflow), ``bfloat16`` to about 2.

Random sampling and augmentation: an eval-style dataset (deterministic sampler, eval
transform) makes the cache exact, and is the recommended use. With a train dataset, cached view
``k`` is the clip that epoch ``k`` would have drawn (``dataset.set_epoch(k)``); training epoch
``e`` reads view ``e % views``. So ``views=1`` shows the model the same augmented clip every
epoch (a warning says so), and ``views=K`` cycles through K stored augmentations, which costs K
extraction passes and K times the disk. The cache holds no labels: they come from the dataset.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from .._optional import require
from ..engine.io import atomic_write_bytes
from ..progress import progress_bar
from .datasets import VideoDataset, item_seed, make_loader

FORMAT_VERSION = 1
DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _blake(*parts: Any) -> "hashlib._Hash":
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part if isinstance(part, (bytes, memoryview)) else str(part).encode())
        h.update(b"\0")
    return h


def _tensor_bytes(t: Tensor) -> memoryview:
    return memoryview(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())


def weights_digest(module: nn.Module) -> str:
    """Hash of every ``state_dict`` tensor (name, dtype, shape, bytes): equal iff the weights are equal."""
    h = _blake()
    for name, t in sorted(module.state_dict().items()):
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(_tensor_bytes(t))
    return h.hexdigest()


def _header(data: bytes) -> dict:
    """The JSON header of a safetensors file; ValueError if the bytes cannot hold one."""
    if len(data) < 8:
        raise ValueError("shorter than a safetensors header")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise ValueError("truncated header")
    header = json.loads(data[8 : 8 + n])
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    return header


def _complete(path: Path) -> bool:
    """Cheap check (reads the header only) that an entry file exists and is not truncated."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if not 0 <= n <= 1 << 20:
                return False
            header = _header(head + f.read(n))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
            return os.fstat(f.fileno()).st_size == 8 + n + end
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return False


def _segment(item) -> tuple[float, float] | None:
    return (item.start, item.end) if item.start is not None else None


class FeatureCache:
    """Per-video features of ``encoder`` on ``dataset``'s clips, on disk under ``root/<hash>/``.

    ``views`` > 1 stores that many random views per video (needs a train dataset); ``dtype`` is
    the storage precision (see the module docstring). The encoder must be frozen
    (``encoder.cacheable``). A pickled cache (e.g. in DataLoader workers) leaves the encoder
    behind: it reads and writes entries but cannot extract.
    """

    def __init__(self, root: str | os.PathLike, *, encoder: nn.Module, dataset: VideoDataset, views: int = 1,
                 dtype: torch.dtype = torch.float32):
        if not hasattr(encoder, "num_features") or not hasattr(encoder, "cacheable"):
            hint = " (pass model.encoder)" if hasattr(encoder, "encoder") else ""
            raise TypeError(f"encoder must be a FrameEncoder{hint}; got {type(encoder).__name__}")
        if not encoder.cacheable:
            trainable = [n for n, p in encoder.named_parameters() if p.requires_grad]
            raise ValueError(
                f"{encoder.name} has trainable parameters ({trainable[:3]}{' ...' if len(trainable) > 3 else ''}), "
                "so its "
                "features change during training and cannot be cached. Freeze it first: encoder.freeze() (and "
                "encoder.pool.requires_grad_(False) for pool='attention')"
            )
        if not isinstance(dataset, VideoDataset):
            raise TypeError(f"dataset must be a VideoDataset; got {type(dataset).__name__}")
        if dataset.transform is None:
            raise ValueError("dataset has no transform, so its clips are uint8; give it one, e.g. "
                             "eval_transform(DataConfig.from_backbone(encoder.data_config))")
        if isinstance(views, bool) or not isinstance(views, int) or views < 1:
            raise ValueError(f"views must be a positive integer; got {views!r}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {[str(d) for d in DTYPES]}; got {dtype}")
        transform = repr(dataset.transform)
        if " at 0x" in transform:
            raise ValueError(
                f"the dataset's transform repr {transform!r} holds a memory address, so the cache key would change "
                "every run; give the transform a __repr__ that states its settings (ClipTransform has one)"
            )
        random = bool(dataset.train or getattr(dataset.transform, "train", False))
        if views > 1 and not random:
            raise ValueError(f"views={views} needs a train dataset (random sampling or augmentation); "
                             "an eval dataset gives the same clip every time: use views=1")
        if views == 1 and random:
            warnings.warn("caching a train dataset with views=1: every epoch will see the same sampled and augmented "
                          "clip; use an eval-style dataset (exact) or views=K to cycle K stored augmentations",
                          stacklevel=2)
        self.encoder, self.dataset, self.views, self.dtype = encoder, dataset, views, dtype
        self.key = {
            "format": FORMAT_VERSION,
            "encoder": encoder.name,
            "pool": type(encoder.pool).__name__,
            "num_features": encoder.num_features,
            "weights": weights_digest(encoder),
            "transform": transform,
            "sampler": dataclasses.asdict(dataset.sampler),
            "decode_size": dataset.decode_size,
            "train": bool(dataset.train),
            "seed": dataset.seed if random else None,
            "views": views,
            "dtype": str(dtype).removeprefix("torch."),
        }
        self.hash = _blake(json.dumps(self.key, sort_keys=True)).hexdigest()[:16]
        self.dir = Path(root).expanduser().absolute() / self.hash
        self._write_key()

    def _write_key(self) -> None:
        path = self.dir / "key.json"
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):  # absent or unreadable: rewrite
            if json.loads(path.read_text())["key"] == json.loads(json.dumps(self.key)):  # tuples read back as lists
                return
            raise RuntimeError(f"{path} describes another cache than its folder name says; remove {self.dir}")
        from .. import __version__

        info = {"cnnlstm": __version__, "torch": torch.__version__, "created": time.strftime("%Y-%m-%d %H:%M:%S")}
        atomic_write_bytes(path, json.dumps({"hash": self.hash, "key": self.key, "info": info}, indent=1).encode())

    def __getstate__(self) -> dict:
        return {**self.__dict__, "encoder": None}  # workers only read entries; don't copy the CNN

    def __repr__(self) -> str:
        return (f"FeatureCache({str(self.dir)!r}, encoder={self.key['encoder']!r}, views={self.views}, "
                f"dtype={self.key['dtype']})")

    def _check_view(self, view: int) -> int:
        if not 0 <= view < self.views:
            raise ValueError(f"view must be in [0, {self.views}); got {view}")
        return view

    # --- entries ----------------------------------------------------------------------------
    def entry_path(self, video_path: str | os.PathLike, view: int = 0, *, segment: tuple | None = None) -> Path:
        """Where the entry of this version of the video lives (stats the file: it must exist)."""
        return self._locate(video_path, view, segment)[0]

    def _locate(self, video_path, view: int, segment) -> tuple[Path, dict[str, str]]:
        """Entry path and the identity stored in (and checked against) the entry's metadata."""
        path = os.path.abspath(video_path)
        st = os.stat(path)
        meta = {"cache": self.hash, "video": path, "size": str(st.st_size), "mtime_ns": str(st.st_mtime_ns),
                "segment": json.dumps(segment), "view": str(self._check_view(view))}
        h = _blake(path, st.st_size, st.st_mtime_ns, segment).hexdigest()
        return self.dir / h[:2] / f"{h}-v{view}.safetensors", meta

    def get(self, video_path: str | os.PathLike, view: int = 0, *, segment: tuple | None = None) -> dict | None:
        """``{"features": (T, D), "frame_indices": (T,)}`` in the stored dtype, or None when missing.

        A corrupt, truncated or mismatched entry is removed and reads as None.
        """
        try:
            path, meta = self._locate(video_path, view, segment)
            with open(path, "rb") as f:
                inode, data = os.fstat(f.fileno()).st_ino, f.read()
        except OSError:  # no entry, or the video itself is gone
            return None
        try:
            return self._decode(data, meta)
        except Exception as exc:  # noqa: BLE001 - any unreadable entry is a cache miss, not a crash
            with contextlib.suppress(OSError):
                if os.stat(path).st_ino == inode:  # not replaced by a good entry meanwhile
                    os.unlink(path)
            warnings.warn(f"removed a bad feature-cache entry {path} ({exc}); it will be extracted again", stacklevel=2)
            return None

    def _decode(self, data: bytes, meta: dict[str, str]) -> dict[str, Tensor]:
        stored = _header(data).get("__metadata__") or {}
        digest = stored.pop("digest", None)
        if stored != meta:
            raise ValueError(f"entry was written for {stored}, expected {meta}")
        tensors = require("safetensors.torch", purpose="the feature cache").load(data)
        feats, indices = tensors["features"], tensors["frame_indices"]
        if feats.dtype != self.dtype or feats.ndim != 2 or feats.shape[1] != self.key["num_features"] \
                or indices.shape != feats.shape[:1]:
            raise ValueError(f"unexpected tensors {feats.dtype} {tuple(feats.shape)}, {tuple(indices.shape)}")
        if digest != _blake(_tensor_bytes(feats), _tensor_bytes(indices)).hexdigest():
            raise ValueError("checksum mismatch")
        entry = {"features": feats, "frame_indices": indices}
        if "fps" in tensors:
            entry["fps"] = float(tensors["fps"][0])
        return entry

    def put(self, video_path: str | os.PathLike, features: Tensor, frame_indices: Tensor, view: int = 0, *,
            segment: tuple | None = None, fps: float | None = None) -> None:
        """Store features (T, D), frame indices (T,) and the video's fps (for time-based targets), atomically."""
        D = self.key["num_features"]
        if features.ndim != 2 or features.shape[1] != D or frame_indices.shape != features.shape[:1]:
            raise ValueError(f"need features (T, D={D}) and frame_indices (T,); got {tuple(features.shape)} "
                             f"and {tuple(frame_indices.shape)}")
        path, meta = self._locate(video_path, view, segment)
        feats = features.detach().to("cpu", self.dtype).contiguous()  # (T, D)
        if self.dtype != features.dtype and not bool(feats.isfinite().all()) and bool(features.isfinite().all()):
            raise ValueError(f"features overflow {self.dtype} (max |x| = {float(features.abs().max()):g}); use "
                             "dtype=torch.float32")
        indices = frame_indices.detach().to("cpu", torch.int64).contiguous()  # (T,)
        meta["digest"] = _blake(_tensor_bytes(feats), _tensor_bytes(indices)).hexdigest()
        save = require("safetensors.torch", purpose="the feature cache").save
        tensors = {"features": feats, "frame_indices": indices}
        if fps is not None:
            tensors["fps"] = torch.tensor([float(fps)], dtype=torch.float64)
        atomic_write_bytes(path, save(tensors, metadata=meta))

    def has(self, index: int, view: int = 0) -> bool:
        """True when dataset item ``index`` has a complete entry (reads only the header)."""
        item = self.dataset.videos.items[index]
        try:
            return _complete(self.entry_path(item.path, view, segment=_segment(item)))
        except OSError:
            return False

    def missing(self, view: int = 0) -> list[int]:
        """Dataset indices without a complete entry for ``view`` (bad videos always stay here)."""
        self._check_view(view)
        return [i for i in range(len(self.dataset)) if not self.has(i, view)]


def extract_features(cache: FeatureCache, *, batch_size: int = 8, workers: int = 0, device: str | torch.device = "cpu",
                     rank: int = 0, world_size: int = 1, channels_last: bool = True, progress: bool = True,
                     view: int | None = 0) -> dict:
    """Fill ``cache`` with this rank's missing entries (items ``rank::world_size``) of ``view``
    (None: every view). The encoder runs in eval mode under ``torch.inference_mode`` on a copy,
    so the caller's module is not touched. Returns ``extracted``, ``cached_before``, ``skipped``
    (path, error, message of each bad video), ``seconds`` and ``frames_per_s``.

    ``channels_last`` (faster on CPU and GPU) picks other convolution kernels, so the features
    equal ``encoder(clips)`` to float rounding (~1e-6); ``channels_last=False`` stores exactly
    what ``encoder(clips)`` returns. Every rank (or process) may run this at once; under DDP call
    ``dist.barrier()`` afterwards, before training from the cache.
    """
    if cache.encoder is None:
        raise RuntimeError("this FeatureCache was pickled without its encoder; build the FeatureCache in this process")
    if not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size; got rank={rank}, world_size={world_size}")
    views = range(cache.views) if view is None else [cache._check_view(view)]
    device = torch.device(device)
    encoder = copy.deepcopy(cache.encoder).to(device).eval()
    if channels_last:
        encoder = encoder.to(memory_format=torch.channels_last)
    dataset, epoch = cache.dataset, cache.dataset.epoch
    stats: dict[str, Any] = {"extracted": 0, "cached_before": 0, "skipped": [], "seconds": 0.0, "frames_per_s": 0.0}
    frames, start = 0, time.perf_counter()
    try:
        for v in views:
            shard = list(range(len(dataset)))[rank::world_size]  # fixed per rank, so ranks never overlap
            todo = [i for i in shard if not cache.has(i, v)]
            stats["cached_before"] += len(shard) - len(todo)
            if not todo:
                continue
            dataset.set_epoch(v)  # view v = the clip epoch v draws (before the workers copy the dataset)
            loader = make_loader(Subset(dataset, todo), batch_size=batch_size, workers=workers,
                                 pin_memory=device.type == "cuda")
            loader = progress_bar(loader, enabled=progress, desc=f"features (view {v})", unit="batch")
            with torch.inference_mode():
                for batch in loader:
                    stats["skipped"].extend(batch.skipped)
                    if len(batch) == 0:
                        continue
                    clips = batch.clips.to(device, non_blocking=True)  # (B, T, C, H, W)
                    feats, _ = encoder(clips, batch.lengths.to(device))  # (B, T, D), zeros on padding
                    feats = feats.cpu()
                    for b, meta in enumerate(batch.meta):
                        n = int(batch.lengths[b])
                        item = dataset.videos.items[meta["index"]]
                        cache.put(item.path, feats[b, :n], meta["frame_indices"], v, segment=_segment(item),
                                  fps=meta.get("fps"))
                    stats["extracted"] += len(batch)
                    frames += int(batch.lengths.sum())
    finally:
        dataset.set_epoch(epoch)
    stats["seconds"] = time.perf_counter() - start
    stats["frames_per_s"] = frames / stats["seconds"] if frames else 0.0
    return stats


class CachedFeatureDataset(Dataset):
    """The cache's dataset, served from cached features: items hold ``clip`` = features (T, D).

    Call :meth:`set_epoch` every epoch (epoch ``e`` reads view ``e % views``). An item without
    an entry (a bad video, or one not extracted yet) is the error record
    ``{"error": "missing", ...}``, which ``make_loader``'s collate drops and lists in
    ``batch.skipped``. Features come back as ``dtype`` (float32: what the model expects).
    """

    def __init__(self, cache: FeatureCache, *, dtype: torch.dtype = torch.float32):
        self.cache, self.dtype, self.view, self.epoch = cache, dtype, 0, 0

    def __len__(self) -> int:
        return len(self.cache.dataset)

    @property
    def classes(self) -> list[str]:
        return self.cache.dataset.classes

    def set_epoch(self, epoch: int) -> None:
        self.view, self.epoch = epoch % self.cache.views, epoch

    def __getitem__(self, index: int) -> dict[str, Any]:
        dataset = self.cache.dataset
        item = dataset.videos.items[index]
        entry = self.cache.get(item.path, self.view, segment=_segment(item))
        if entry is None:
            message = (f"{item.path}: no cached features (view {self.view}) in {self.cache.dir}; "
                       "a bad video, or extract_features has not run for it")
            return {"error": "missing", "message": message, "path": item.path, "index": index}
        generator = torch.Generator().manual_seed(item_seed(dataset.seed, self.epoch, index))
        label = dataset.target_of(item, entry["frame_indices"], entry.get("fps"), generator)
        return {"clip": entry["features"].to(self.dtype), "label": label, "path": item.path,
                "index": index, "frame_indices": entry["frame_indices"], "fps": entry.get("fps")}


__all__ = ["FORMAT_VERSION", "FeatureCache", "extract_features", "CachedFeatureDataset", "weights_digest"]
