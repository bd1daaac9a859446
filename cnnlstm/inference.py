"""evaluate() and predict(): everything they need is in the run directory.

A run directory holds ``config.yaml`` (how clips are sampled and transformed), ``labels.json`` and
``model.safetensors``. ``predict`` decodes each untrusted video in an isolated worker process with
a timeout (a file that crashes or hangs FFmpeg costs that file, not the process) and only the
sampled frames, so a long video costs the memory of one clip.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from .checkpoint import load_weights
from .config import TrainConfig, load_saved_config
from .data.datasets import VideoDataset, make_loader
from .data.decode import Limits, VideoReader
from .data.errors import VideoError
from .data.pool import IsolatedPool
from .data.sampling import SamplerConfig, sample_indices
from .data.transforms import DataConfig, average_views, eval_transform
from .distributed import pick_device
from .metrics import classification_report
from .train import build_model, collect_logits, data_config


@dataclass
class LoadedRun:
    run: Path
    cfg: TrainConfig
    classes: list[str]
    model: torch.nn.Module
    data_cfg: DataConfig
    device: torch.device

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
    model = build_model(dataclasses.replace(cfg, weights="none"), len(classes))
    load_weights(model, run / weights)
    dev = pick_device(device)
    return LoadedRun(run, cfg, classes, model.to(dev).eval(), data_config(cfg, model), dev)


def evaluate(run_dir: str | os.PathLike, data: str | os.PathLike, *, root: str | os.PathLike | None = None,
             views: int = 1, batch_size: int = 8, workers: int = 0, device: str = "auto", plot: bool = True) -> dict:
    """Top-1/top-5, mean class accuracy, confusion matrix and per-class table on a dataset SPEC.

    ``views`` > 1 averages the logits of that many temporal views (uniform sampling at
    positions (v + 0.5) / views within each segment). Bad videos are skipped and listed.
    """
    if views < 1:
        raise ValueError(f"views must be >= 1; got {views}")
    loaded = load_run(run_dir, device=device)
    views_out = []  # per view: {dataset index: (logits (K,), target)}
    skipped: list[dict] = []
    for v in range(views):
        dataset = VideoDataset(data, root=root, classes=loaded.classes, sampler=loaded.sampler((v + 0.5) / views),
                               transform=eval_transform(loaded.data_cfg), on_error="skip")
        loader = make_loader(dataset, batch_size=batch_size, workers=workers)
        logits, targets, indices, bad = collect_logits(loaded.model, loader, loaded.device)
        views_out.append({i: (row, t) for i, row, t in zip(indices, logits, targets.tolist())})
        skipped += [b for b in bad if b["path"] not in {s["path"] for s in skipped}]
    common = sorted(set.intersection(*(set(v) for v in views_out)))  # videos that decoded in every view
    logits = torch.stack([torch.stack([v[i][0] for v in views_out]) for i in common]) if common else torch.empty(0, views, len(loaded.classes))
    logits = average_views(logits) if views > 1 else logits[:, 0]  # (N, V, K) -> (N, K)
    targets = torch.tensor([views_out[0][i][1] for i in common], dtype=torch.long)
    report = classification_report(logits, targets, loaded.classes, skipped=skipped)
    report["views"] = views
    if plot and len(targets):
        from ._optional import available

        if available("matplotlib"):
            from .viz import plot_confusion

            name = Path(str(data)).stem or "eval"
            report["confusion_plot"] = plot_confusion(report["confusion_matrix"], loaded.classes,
                                                      loaded.run / "plots" / f"confusion_{name}.png")
    return report


def read_clip(path: str, sampler: SamplerConfig, limits: Limits | None) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Decode one video's sampled frames: uint8 (T, C, H, W), indices (T,), and facts about it."""
    with VideoReader(path, limits=limits) as reader:
        info = reader.info
        indices = sample_indices(sampler, info.num_frames, fps=info.fps, train=False)
        frames = reader.get_frames(indices)
        facts = {"frames": info.num_frames, "fps": info.fps, "duration": info.duration, "corrupt_frames": reader.corrupt_frames}
    return frames, indices, facts


def predict(run_dir: str | os.PathLike, videos: Sequence[str | os.PathLike], *, topk: int = 5, device: str = "auto",
            plot: str | os.PathLike | None = None, timeout: float = 120.0, limits: Limits | None = Limits()) -> list[dict]:
    """Label each video; a bad video gets ``{"path", "error"}`` instead of a prediction.

    Each result: path, label, score, topk [(label, score)], frame_indices, and ``attention``
    (one weight per sampled frame) when the model has temporal attention.
    """
    loaded = load_run(run_dir, device=device)
    transform = eval_transform(loaded.data_cfg)
    paths = [os.fspath(v) for v in videos]
    results: list[dict] = [{} for _ in paths]
    k = min(topk, len(loaded.classes))
    with IsolatedPool(1, timeout=timeout) as pool:
        tasks = ((i, p, (os.path.abspath(p), loaded.sampler(), limits)) for i, p in enumerate(paths))
        for i, decoded in pool.map_unordered(read_clip, tasks):
            if isinstance(decoded, BaseException):
                reason = decoded.reason if isinstance(decoded, VideoError) else type(decoded).__name__
                results[i] = {"path": paths[i], "error": f"{reason}: {decoded}"}
                continue
            frames, indices, facts = decoded
            with torch.inference_mode():
                out = loaded.model(transform(frames)[None].to(loaded.device))  # (1, T, C, S, S)
            probs = out.logits.float().softmax(-1)[0].cpu()  # (K,)
            top = probs.topk(k)
            row = {"path": paths[i], "label": loaded.classes[int(top.indices[0])], "score": float(top.values[0]),
                   "topk": [[loaded.classes[int(c)], float(p)] for p, c in zip(top.values, top.indices)],
                   "frame_indices": indices.tolist(), **facts}
            if out.attention is not None:
                row["attention"] = [round(float(a), 6) for a in out.attention[0]]
            if plot is not None:
                row["plot"] = _plot_strip(frames, row, plot, i if len(paths) > 1 else None)
            results[i] = row
    return results


def _plot_strip(frames: torch.Tensor, row: dict, plot: str | os.PathLike, index: int | None) -> str:
    from .viz import plot_frame_strip

    path = Path(plot)
    if index is not None:
        path = path.with_name(f"{path.stem}_{index}{path.suffix or '.png'}")
    weights = torch.tensor(row["attention"]) if "attention" in row else None
    title = f"{Path(row['path']).name}: {row['label']} ({row['score']:.0%})"
    return plot_frame_strip(frames, path, weights=weights, title=title)
