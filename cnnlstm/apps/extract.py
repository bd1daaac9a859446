"""``cnnlstm extract``: per-frame (or per-window) features of many videos, as files other tools read.

Features come from a run's frame encoder (``run=``: its backbone, weights and preprocessing) or a
named backbone (``backbone="resnet18", weights="imagenet"``; ``weights="none"`` is a random init
seeded with 0, the same every run), with the preprocessing training
uses: the eval transform of the encoder's data config (shorter side resized, centre crop,
normalised). Frames: every frame (default), ``fps=F`` (the frames shown at F per second:
:func:`~cnnlstm.data.sampling.fps_indices`), or ``window=W`` (with ``stride=S``): one feature per
window, the mean of its T frames' features, sampled like a training clip of W seconds.

Each video is decoded once, in order, in an isolated worker (:class:`FrameWorker`: a file that
crashes or hangs FFmpeg costs that file), resized there, and its frames go through the encoder in
batches (the feature cache's settings: a copy in eval mode, ``channels_last``, ``inference_mode``).
Output, under ``out/``:

- ``<video path relative to the source>.safetensors`` per video (``a/b.mp4`` -> ``a/b.mp4.safetensors``):
  ``features`` (N, D), ``frame_indices`` (N,) (windows: (N, T)), ``times`` (N,) seconds of each
  frame (windows: ``window_start``/``window_end`` (N,)); metadata: the video's path, size and
  mtime, its fps and frame count, and the extraction ``key`` (encoder, weights digest, transform,
  frames) as JSON. Written atomically.
- ``index.csv``: one row per video: ``path, features, status (ok|error), frames, dim, fps,
  duration, error``.

Resumable: a video whose file is complete and was made from this version of the video with this
key is skipped (a second run does no work). Bad videos are reported (``status=error``) and retried
by the next run. Under ``torchrun`` each rank takes every world_size-th video; rank 0 writes the index.

Letters: N frames (or windows), T frames per window, C channels, S crop side, D feature size.
"""
from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from .._optional import require
from ..data.features import weights_digest
from ..data.sampling import SamplerConfig, fps_indices, sample_timed_windows
from ..data.transforms import DataConfig, EvalResize, eval_transform
from ..data.video.errors import VideoError
from ..data.video.sequential import FrameWorker
from ..data.video.types import Limits, is_video_file
from ..engine.io import atomic_write_bytes, atomic_write_text

FORMAT_VERSION = 1
INDEX_FIELDS = ("path", "features", "status", "frames", "dim", "fps", "duration", "error")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _hidden(folder: Path) -> bool:
    return any(part.startswith(".") for part in folder.parts)


def find_videos(sources: Sequence[str | os.PathLike]) -> list[tuple[str, str]]:
    """``(absolute path, output name)`` of every video: a folder's video files (recursively, by name),
    a video file itself, or the videos a dataset SPEC (CSV, list, ...) lists. Output names are
    paths relative to the folder (the SPEC's folder) plus ``.safetensors``."""
    from ..data.annotations.formats import load_spec

    found: dict[str, str] = {}
    for source in sources:
        base = Path(source).expanduser().absolute()
        if base.is_dir():
            paths = [Path(folder, name) for folder, _, files in os.walk(base) for name in files
                     if is_video_file(name) and not _hidden(Path(folder).relative_to(base))]
        elif is_video_file(base) or not base.is_file():
            paths, base = [base], base.parent  # a missing video is reported like any bad one
        else:
            paths, base = [Path(item.path) for item in load_spec(base, check_exists=False).items], base.parent
        for path in sorted(paths):
            rel = os.path.relpath(path, base)
            rel = str(path).lstrip(os.sep) if rel.startswith("..") else rel
            found.setdefault(str(path), rel + ".safetensors")
    return list(found.items())


@dataclasses.dataclass(frozen=True)
class FramePlan:
    """Which frames to encode: all of them, ``fps`` per second, or windows of ``window`` seconds."""

    fps: float | None = None
    window: float | None = None
    stride: float | None = None
    sampler: SamplerConfig = SamplerConfig()

    def __post_init__(self) -> None:
        if self.fps is not None and self.window is not None:
            raise ValueError(f"choose fps (frames per second) or window (seconds per feature), not both; got "
                             f"fps={self.fps}, window={self.window}")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"fps must be > 0; got {self.fps!r}")
        if self.stride is not None and self.window is None:
            raise ValueError(f"stride={self.stride} needs window= (seconds per window)")

    def indices(self, num_frames: int, fps: float) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Frame indices (N,) (windows: (N, T)) and window starts (N,) in frames (None without windows)."""
        if self.window is not None:
            starts, indices, _ = sample_timed_windows(self.sampler, num_frames, fps, self.window, self.stride)
            return indices, starts
        if self.fps is not None:
            return fps_indices(num_frames, fps, self.fps), None
        return torch.arange(num_frames), None

    def describe(self) -> dict:
        if self.window is not None:
            return {"window": self.window, "stride": self.stride or self.window,
                    "sampler": dataclasses.asdict(self.sampler), "pool": "mean"}
        return {"fps": self.fps} if self.fps is not None else {"every": 1}


class Extractor:
    """Features of one video at a time from ``encoder`` (a FrameEncoder) under ``data_cfg``."""

    def __init__(self, encoder, data_cfg: DataConfig, plan: FramePlan, *, device: torch.device,
                 dtype: torch.dtype = torch.float32, batch_size: int = 32, timeout: float = 120.0,
                 limits: Limits | None = Limits(), channels_last: bool = True):
        if not hasattr(encoder, "num_features") or not hasattr(encoder, "forward_maps"):
            raise TypeError(f"extract needs a frame encoder (a 2D CNN applied per frame); got {type(encoder).__name__}")
        self.encoder = copy.deepcopy(encoder).to(device).eval()  # the feature cache's settings; caller's untouched
        if channels_last:  # faster kernels, the same features to float rounding
            self.encoder = self.encoder.to(memory_format=torch.channels_last)
        self.transform, self.prepare = eval_transform(data_cfg), EvalResize(data_cfg)
        self.plan, self.device, self.dtype, self.batch_size = plan, device, dtype, batch_size
        self.worker = FrameWorker(timeout=timeout, limits=limits)
        self.key = {"format": FORMAT_VERSION, "encoder": encoder.name, "pool": type(encoder.pool).__name__,
                    "num_features": encoder.num_features, "weights": weights_digest(encoder),
                    "transform": repr(self.transform), "frames": plan.describe(),
                    "dtype": str(dtype).removeprefix("torch.")}
        self.key_json = json.dumps(self.key, sort_keys=True)

    def identity(self, path: str) -> dict[str, str]:
        """What an output file must have been made from: this version of the video, this key."""
        st = os.stat(path)
        return {"video": path, "size": str(st.st_size), "mtime_ns": str(st.st_mtime_ns), "key": self.key_json}

    def done(self, path: str, out: Path) -> dict | None:
        """The index facts of ``out`` when it is complete and matches the video and the key, else None."""
        try:
            with require("safetensors").safe_open(str(out), framework="pt") as f:
                meta = f.metadata() or {}
                shape = f.get_slice("features").get_shape()
            wanted = self.identity(path)
        except Exception:  # noqa: BLE001 - missing, truncated or foreign: extract again
            return None
        if any(meta.get(k) != v for k, v in wanted.items()):
            return None
        return {"frames": shape[0], "dim": shape[1], "fps": float(meta["fps"]), "duration": float(meta["duration"])}

    def extract(self, path: str, out: Path) -> dict:
        """Decode, encode and write one video's features; returns its index facts."""
        identity = self.identity(path)  # before decoding: a video rewritten meanwhile is not mislabelled
        info = self.worker.open(path)
        indices, starts = self.plan.indices(info.num_frames, info.fps)
        wanted = torch.unique(indices)  # (U,) sorted: one sequential pass
        feats = torch.empty(len(wanted), self.key["num_features"])  # (U, D)
        row = 0
        with torch.inference_mode():
            for _, frames in self.worker.frames(wanted.tolist(), chunk=self.batch_size, prepare=self.prepare):
                x = self.transform(frames).to(self.device)  # (n, C, S, S)
                f, _ = self.encoder(x[None])  # (1, n, D)
                feats[row:row + len(x)] = f[0].float().cpu()
                row += len(x)
        at = torch.searchsorted(wanted, indices)  # positions of the plan's frames among the decoded ones
        tensors = {"frame_indices": indices.long().contiguous()}
        if starts is None:
            tensors["features"] = feats[at].to(self.dtype).contiguous()  # (N, D)
            tensors["times"] = indices.double() / info.fps  # (N,)
        else:
            tensors["features"] = feats[at].mean(1).to(self.dtype).contiguous()  # (N, T, D) -> (N, D)
            span = round(self.plan.window * info.fps)
            tensors["window_start"] = starts.double() / info.fps  # (N,)
            tensors["window_end"] = (starts + span).clamp(max=info.num_frames).double() / info.fps  # (N,)
        meta = {**identity, "fps": repr(info.fps), "duration": repr(info.duration), "num_frames": str(info.num_frames)}
        atomic_write_bytes(out, require("safetensors.torch").save(tensors, metadata=meta))
        return {"frames": len(tensors["features"]), "dim": self.key["num_features"], "fps": info.fps,
                "duration": info.duration}

    def close(self) -> None:
        self.worker.close()


def run_shard(extractor: Extractor, videos: list[tuple[str, str]], out: Path, *, say=None) -> dict:
    """Extract ``videos`` (``(path, output name)``) unless done; returns index rows and counts."""
    rows, counts, frames, start = [], {"extracted": 0, "skipped": 0, "bad": 0}, 0, time.perf_counter()
    for path, name in videos:
        target = out / name
        row = {"path": path, "features": name, "status": "ok", "error": ""}
        facts = extractor.done(path, target)
        try:
            if facts is None:
                facts = extractor.extract(path, target)
                counts["extracted"] += 1
                frames += facts["frames"]
                what = f"extracted {facts['frames']} x {facts['dim']}"
            else:
                counts["skipped"] += 1
                what = "done before, skipped"
        except VideoError as exc:
            row.update(status="error", features="", error=f"{exc.reason}: {exc}")
            counts["bad"] += 1
            facts, what = {}, f"bad video, skipped ({row['error']})"
        if say is not None:
            say(f"{path}: {what}")
        rows.append({**row, **{k: facts.get(k, "") for k in ("frames", "dim", "fps", "duration")}})
    seconds = time.perf_counter() - start
    return {"rows": rows, **counts, "seconds": seconds, "frames_per_s": frames / seconds if frames else 0.0}


def index_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=INDEX_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda r: r["path"]))
    return buffer.getvalue()


def make_extractor(*, run: str | os.PathLike | None = None, backbone: str | None = None, weights: str | None = None,
                   size: int | None = None, pool: str | None = None, frames: int | None = None, plan: FramePlan,
                   device: torch.device, **kwargs: Any) -> Extractor:
    """An :class:`Extractor` over a run's encoder or a named backbone (exactly one of the two)."""
    if (run is None) == (backbone is None):
        raise ValueError("extract needs exactly one feature source: run= (a run directory) or backbone= (e.g. "
                         f"'resnet18'); got run={run!r}, backbone={backbone!r}")
    if run is not None:
        from ..run import load_run

        loaded = load_run(run, device="cpu")
        encoder, data_cfg = loaded.model.encoder, loaded.data_cfg
        if plan.window is not None:
            plan = dataclasses.replace(plan, sampler=loaded.sampler())
        if not hasattr(encoder, "forward_maps"):
            raise ValueError(f"run {run} has model {loaded.cfg.model!r}, a 3D CNN over whole clips; per-frame features "
                             "need a 2D frame encoder: use --backbone NAME, or a run of a CNN-LSTM model")
    else:
        from ..models.backbones import create_encoder

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # weights="none": the same random init every run, so a second run can resume
            encoder = create_encoder(backbone, weights=None if weights in (None, "none") else weights, pool=pool)
        data_cfg = DataConfig.from_backbone(encoder.data_config, **({"input_size": size} if size else {}))
        if frames is not None:
            plan = dataclasses.replace(plan, sampler=SamplerConfig(num_frames=frames))
    return Extractor(encoder, data_cfg, plan, device=device, **kwargs)


def extract(sources: Sequence[str | os.PathLike], out: str | os.PathLike, *, fps: float | None = None,
            window: float | None = None, stride: float | None = None, dtype: str = "float32",
            device: str = "auto", rank: int = 0, world_size: int = 1, say=None, **source: Any) -> dict:
    """Write features of every video in ``sources`` under ``out`` (see the module docstring).

    ``source``: ``run=`` or ``backbone=`` (with ``weights=``, ``size=``, ``pool=``, ``frames=`` for
    windows), plus Extractor options (``batch_size``, ``timeout``, ``limits``, ``channels_last``).
    Returns this rank's ``rows`` (index rows), ``extracted``, ``skipped`` (done before), ``bad``,
    ``seconds`` and ``frames_per_s``; ``rank``/``world_size`` pick every world_size-th video.
    """
    from ..engine.distributed import pick_device

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}; got {dtype!r}")
    if not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size; got rank={rank}, world_size={world_size}")
    videos = find_videos(sources)
    if not videos:
        raise ValueError(f"no videos found in {[os.fspath(s) for s in sources]} (extensions: .mp4 .mkv .avi ...)")
    plan = FramePlan(fps=fps, window=window, stride=stride)
    extractor = make_extractor(plan=plan, device=pick_device(device), dtype=DTYPES[dtype], **source)
    try:
        return run_shard(extractor, videos[rank::world_size], Path(out), say=say)
    finally:
        extractor.close()


# --- command line -----------------------------------------------------------------------------

def add_parser(sub) -> None:
    """Register ``cnnlstm extract`` on the CLI's subparsers."""
    p = sub.add_parser("extract", help="per-frame (or per-window) features of videos, one safetensors file each")
    p.add_argument("sources", nargs="+", help="folders of videos (searched recursively), video files or dataset SPECs")
    p.add_argument("--out", required=True, help="output folder: one .safetensors per video and index.csv")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", "--run-dir", dest="run", default=None,
                     help="a run directory: its frame encoder and preprocessing (under torchrun spell it --run-dir: "
                          "torchrun's own parser takes --run for its --run-path)")
    src.add_argument("--backbone", default=None, help="a backbone by name (resnet18, resnet50, efficientnet_b0, ...)")
    p.add_argument("--weights", default="none", help="with --backbone: none | imagenet | /path/to/file")
    p.add_argument("--size", type=int, default=None, help="with --backbone: input size (default: the backbone's)")
    p.add_argument("--pool", default=None, help="with --backbone: spatial pooling (avg | grid | attention; default: "
                   "the backbone's)")
    p.add_argument("--fps", type=float, default=None, help="frames per second to encode (default: every frame)")
    p.add_argument("--window", type=float, default=None, metavar="SECONDS",
                   help="one feature per window: the mean of its sampled frames' features")
    p.add_argument("--stride", type=float, default=None, metavar="SECONDS", help="with --window (default: the window)")
    p.add_argument("--frames", type=int, default=None, help="with --window and --backbone: frames sampled per window")
    p.add_argument("--dtype", default="float32", choices=list(DTYPES))
    p.add_argument("--batch-size", type=int, default=32, help="frames per encoder call")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per chunk of decoded frames")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_extract)


def cmd_extract(args: argparse.Namespace) -> int:
    """Extract features; under torchrun each rank takes its slice and rank 0 writes index.csv."""
    from ..engine import distributed

    info = distributed.setup(args.device)
    say = None if args.json else (lambda line: print(f"[rank {info.rank}] {line}" if info.enabled else line))
    source = {"run": args.run} if args.run else {"backbone": args.backbone, "weights": args.weights,
                                                  "size": args.size, "pool": args.pool, "frames": args.frames}
    try:
        result = extract(args.sources, args.out, fps=args.fps, window=args.window, stride=args.stride,
                         dtype=args.dtype, device=str(info.device), rank=info.rank, world_size=info.world_size,
                         say=say, batch_size=args.batch_size, timeout=args.timeout, **source)
        parts = distributed.gather_objects(info, result)
    finally:
        distributed.cleanup(info)
    if not info.is_main:
        return 0
    rows = [row for part in parts for row in part["rows"]]
    index = atomic_write_text(Path(args.out) / "index.csv", index_csv(rows))
    summary = {k: sum(part[k] for part in parts) for k in ("extracted", "skipped", "bad")}
    summary.update(index=str(index), bad_videos=[{"path": r["path"], "error": r["error"]} for r in rows
                                                 if r["status"] == "error"])
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"extracted {summary['extracted']}, skipped {summary['skipped']} (done before), "
              f"bad {summary['bad']}; index: {index}", file=sys.stdout)
    return 0 if not summary["bad"] else 1


__all__ = ["extract", "find_videos", "FramePlan", "Extractor", "make_extractor", "run_shard", "index_csv",
           "add_parser", "INDEX_FIELDS"]
