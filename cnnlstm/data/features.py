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
from torch.utils.data import Dataset

from .._optional import require
from ..engine.io import atomic_write_bytes
from .datasets import VideoDataset, item_seed
from .extract import extract_features

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
                 dtype: torch.dtype = torch.float32, amp: torch.dtype | None = None):
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
        if amp not in (None, torch.bfloat16, torch.float16):
            raise ValueError(f"amp must be None (fp32), torch.bfloat16 or torch.float16 (the autocast dtype training "
                             f"uses); got {amp}")
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
        self.encoder, self.dataset, self.views, self.dtype, self.amp = encoder, dataset, views, dtype, amp
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
        if amp is not None:  # features computed under autocast differ from fp32 ones (fp32 caches keep their key)
            self.key["amp"] = str(amp).removeprefix("torch.")
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

    def check_view(self, view: int) -> int:
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
                "segment": json.dumps(segment), "view": str(self.check_view(view))}
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

    def put_item(self, index: int, features: Tensor, frame_indices: Tensor, view: int = 0, *,
                 fps: float | None = None) -> None:
        """:meth:`put` for dataset item ``index`` (its video path and segment)."""
        item = self.dataset.videos.items[index]
        self.put(item.path, features, frame_indices, view, segment=_segment(item), fps=fps)

    def has(self, index: int, view: int = 0) -> bool:
        """True when dataset item ``index`` has a complete entry (reads only the header)."""
        item = self.dataset.videos.items[index]
        try:
            return _complete(self.entry_path(item.path, view, segment=_segment(item)))
        except OSError:
            return False

    def missing(self, view: int = 0) -> list[int]:
        """Dataset indices without a complete entry for ``view`` (bad videos always stay here)."""
        self.check_view(view)
        return [i for i in range(len(self.dataset)) if not self.has(i, view)]


class CachedFeatureDataset(Dataset):
    """The cache's dataset, served from cached features: items hold ``clip`` = features (T, D).

    Call :meth:`set_epoch` every epoch (epoch ``e`` reads view ``e % views``). An item without
    an entry (a bad video, or one not extracted yet) is the error record
    ``{"error": "missing", ...}``, which ``make_loader``'s collate drops and lists in
    ``batch.skipped``. Features come back as ``dtype`` (float32: what the model expects).

    Entries read once stay in memory (up to ``memory_mb``; a 144-clip x 16-frame x 512 cache is
    5 MB), so later epochs cost the temporal model's work and the collate, not file reads and
    checksums: a cached epoch is then within a few percent of the bare LSTM work
    (``benchmarks/cache_speed.py``). ``make_loader`` therefore loads this dataset in the training
    process (``load_in_process``): worker processes would each start empty, every epoch.
    """

    load_in_process = True

    def __init__(self, cache: FeatureCache, *, dtype: torch.dtype = torch.float32, memory_mb: float = 2048):
        self.cache, self.dtype, self.view, self.epoch = cache, dtype, 0, 0
        self.memory_bytes, self._held = int(memory_mb * 2**20), 0
        self._entries: dict[tuple[int, int], dict] = {}

    def __len__(self) -> int:
        return len(self.cache.dataset)

    @property
    def classes(self) -> list[str]:
        return self.cache.dataset.classes

    def set_epoch(self, epoch: int) -> None:
        self.view, self.epoch = epoch % self.cache.views, epoch

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_entries": {}, "_held": 0}  # a worker starts with an empty memory

    def _entry(self, index: int) -> dict | None:
        entry = self._entries.get((index, self.view))
        if entry is None:
            item = self.cache.dataset.videos.items[index]
            entry = self.cache.get(item.path, self.view, segment=_segment(item))
            if entry is None:
                return None
            entry["features"] = entry["features"].to(self.dtype)
            size = entry["features"].nbytes + entry["frame_indices"].nbytes
            if self._held + size <= self.memory_bytes:
                self._entries[(index, self.view)], self._held = entry, self._held + size
        return entry

    def __getitem__(self, index: int) -> dict[str, Any]:
        dataset = self.cache.dataset
        item = dataset.videos.items[index]
        entry = self._entry(index)
        if entry is None:
            message = (f"{item.path}: no cached features (view {self.view}) in {self.cache.dir}; "
                       "a bad video, or extract_features has not run for it")
            return {"error": "missing", "message": message, "path": item.path, "index": index}
        generator = torch.Generator().manual_seed(item_seed(dataset.seed, self.epoch, index))
        label = dataset.target_of(item, entry["frame_indices"], entry.get("fps"), generator)
        return {"clip": entry["features"], "label": label, "path": item.path,
                "index": index, "frame_indices": entry["frame_indices"], "fps": entry.get("fps")}


__all__ = ["FORMAT_VERSION", "FeatureCache", "extract_features", "CachedFeatureDataset", "weights_digest"]
