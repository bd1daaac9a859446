"""The three tasks one training loop serves: what a run learns, its loss and how it is scored.

- ``classify``: one label per clip (action recognition). Targets (B,), logits (B, K).
- ``segment``: one label per sampled frame (temporal action segmentation / detection), from a
  segments file. Targets (B, T) padded with -100, logits (B, T, K); class 0 is the background.
- ``caption``: a sentence per clip (encoder-decoder with attention). Targets are token ids
  (B, L) ``<bos> ... <eos>`` padded with -100; the decoder reads them shifted by one (teacher
  forcing, or scheduled sampling below 1.0) and predicts the next token.

``fit`` asks a :class:`Task` for the data, the loss of a batch and the validation metrics; the
selection score (higher is better) picks ``model.safetensors``: top-1 for classification, the mean
of frame accuracy, Edit and F1@{10,25,50} for segmentation, CIDEr-D for captioning.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from .data.annotations.formats import VideoItem, VideoList, check_group_leakage, load_spec
from .data.datasets import good_batches
from .engine import distributed

TASKS = ("classify", "segment", "caption")


@dataclass
class TaskData:
    train: VideoList
    val: VideoList | None
    labels: list[str]  # class names (classify, segment: background first) or vocabulary tokens (caption)
    train_targets: Callable | None = None  # (item, frame_indices, fps, generator) -> target, see VideoDataset
    val_targets: Callable | None = None
    references: dict[str, list[str]] | None = None  # caption: video path -> its captions (validation set)
    vocab: Any = None  # caption: the Vocabulary


class SegmentTargets:
    """Per-frame class indices (T,) at the sampled frames of a video, from its segments."""

    def __init__(self, segments: dict, classes: list[str], background: int = 0):
        self.segments, self.background = segments, background
        self.index = {c: i for i, c in enumerate(classes)}

    def __call__(self, item: VideoItem, frame_indices: torch.Tensor, fps: float | None, generator=None) -> torch.Tensor:
        from .data.annotations.segments import frame_targets

        segments = self.segments.get(item.path, [])
        if fps is None and any(s.unit == "s" for s in segments):
            raise ValueError(f"{item.path}: segments in seconds need the video's fps, which this sample lacks "
                             "(a feature cache written by an older version: delete RUN/cache)")
        return frame_targets(segments, frame_indices, fps or 1.0, self.index, background=self.background)


class CaptionTargets:
    """Token ids (L,) of one caption of the video: a random one per (seed, epoch, video) when
    ``random``, else the first."""

    def __init__(self, captions: dict[str, list[str]], vocab, *, random: bool):
        self.captions, self.vocab, self.random = captions, vocab, random

    def __call__(self, item: VideoItem, frame_indices, fps, generator=None) -> torch.Tensor:
        options = self.captions[item.path]
        k = int(torch.randint(len(options), (1,), generator=generator)) if self.random and len(options) > 1 else 0
        return torch.tensor(self.vocab.encode(options[k]), dtype=torch.long)  # (L,) <bos> ... <eos>


def teacher_forcing_ratio(cfg, progress: float) -> float:
    """Scheduled sampling: ``teacher_forcing`` at the start of training, linearly to
    ``teacher_forcing_end`` (when set) at the end; ``progress`` in [0, 1]."""
    if cfg.teacher_forcing_end is None:
        return cfg.teacher_forcing
    return cfg.teacher_forcing + (cfg.teacher_forcing_end - cfg.teacher_forcing) * min(max(progress, 0.0), 1.0)


class Task:
    name = "classify"
    score_name = "val_top1"

    def check_model(self, model) -> None:
        if getattr(model, "task", None) == "caption" or getattr(model, "per_frame", False):
            kind = "captions videos" if getattr(model, "task", None) == "caption" else "labels every frame"
            hint = "caption" if getattr(model, "task", None) == "caption" else "segment"
            raise ValueError(f"this model {kind}; train it with --task {hint} (task {self.name} needs a clip "
                             "classifier "
                             "such as cnn_lstm)")

    def load(self, cfg, say: Callable[[str], None]) -> TaskData:
        train = load_spec(cfg.data, root=cfg.root)
        val = load_spec(cfg.val, root=cfg.root, classes=train.classes) if cfg.val else None
        if val is not None:
            for message in check_group_leakage(train, val):
                say(f"warning: {message}")
        return TaskData(train, val, list(train.classes))

    def save(self, run: Path, data: TaskData) -> None:
        """Anything beyond labels.json that a run directory needs to be used later."""

    def forward(self, model, batch, device, cfg, progress: float):
        return model(batch.clips.to(device, non_blocking=True), batch.lengths.to(device))

    def loss(self, model, batch, device, cfg, progress: float) -> torch.Tensor:
        out = self.forward(model, batch, device, cfg, progress)
        return F.cross_entropy(out.logits.float(), batch.labels.to(device))

    def validate(self, model, loader, device, autocast, data: TaskData, cfg, info) -> tuple[dict, float, Any]:
        """Validation metrics (keys prefixed ``val_``), the selection score and what the final plot needs."""
        from .metrics import topk_accuracy
        from .train import collect_logits

        logits, targets, _, skipped = collect_logits(model, loader, device, autocast)
        parts = distributed.gather_objects(info, (logits, targets))
        parts = [p for p in parts if len(p[1])]
        if not parts:
            return {}, float("-inf"), None
        logits, targets = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        row = {"val_loss": F.cross_entropy(logits, targets, ignore_index=-1).item(),
               "val_top1": topk_accuracy(logits, targets, ks=(1,))[1], "val_skipped": len(skipped)}
        return row, row["val_top1"], (logits, targets)

    def final_plot(self, last, labels: list[str], run: Path) -> None:
        from .metrics import confusion_matrix
        from .viz import plot_confusion

        logits, targets = last
        plot_confusion(confusion_matrix(logits.argmax(1), targets, len(labels)), labels,
                       run / "plots" / "confusion_val.png",
                       title="last epoch: validation confusion")


def collect_frames(model, loader, device, autocast=nullcontext) -> tuple[list[dict], list[dict]]:
    """Per-frame predictions over a loader: one dict per video (index, path, pred (T,), probs (T, K),
    target (T,) or None, frame_indices (T,), fps) and the skipped videos."""
    model.eval()
    rows, skipped = [], []
    with torch.inference_mode():
        for batch in good_batches(loader, skipped):
            with autocast():
                out = model(batch.clips.to(device), batch.lengths.to(device))
            probs = out.logits.float().softmax(-1).cpu()  # (B, T, K)
            for b, meta in enumerate(batch.meta):
                n = int(batch.lengths[b])
                target = batch.labels[b, :n] if batch.labels is not None and batch.labels.dim() == 2 else None
                rows.append({"index": meta["index"], "path": meta["path"], "pred": probs[b, :n].argmax(-1),
                             "probs": probs[b, :n],
                             "target": target, "frame_indices": meta["frame_indices"], "fps": meta.get("fps")})
    return rows, skipped


class SegmentTask(Task):
    name = "segment"
    score_name = "val_score"

    def check_model(self, model) -> None:
        if not getattr(model, "per_frame", False) or getattr(model, "task", None) == "caption":
            raise ValueError("--task segment needs a per-frame model: seq2seq_cnn_lstm (causal; --bidirectional for "
                             "offline "
                             "use is a model option) or seq2seq_ar_cnn_lstm (autoregressive label decoder)")

    def load(self, cfg, say) -> TaskData:
        from .data.annotations.segments import load_segments

        train = load_segments(cfg.data, root=cfg.root, background=cfg.background)
        val = load_segments(cfg.val, root=cfg.root, classes=train.classes,
                            background=cfg.background) if cfg.val else None
        if val is not None:
            for message in check_group_leakage(train.videos, val.videos):
                say(f"warning: {message}")
        return TaskData(train.videos, val.videos if val else None, list(train.classes),
                        SegmentTargets(train.segments, train.classes),
                        SegmentTargets(val.segments, train.classes) if val else None)

    def forward(self, model, batch, device, cfg, progress: float):
        from .engine.checkpoint import unwrap

        clips, lengths = batch.clips.to(device, non_blocking=True), batch.lengths.to(device)
        if getattr(unwrap(model), "autoregressive", False):
            return model(clips, lengths, targets=batch.labels.to(device),
                         teacher_forcing=teacher_forcing_ratio(cfg, progress))
        return model(clips, lengths)

    def loss(self, model, batch, device, cfg, progress: float) -> torch.Tensor:
        out = self.forward(model, batch, device, cfg, progress)
        return F.cross_entropy(out.logits.float().flatten(0, 1), batch.labels.to(device).flatten())  # padding is -100

    def validate(self, model, loader, device, autocast, data, cfg, info):
        from .metrics_segment import segmentation_report

        rows, skipped = collect_frames(model, loader, device, autocast)
        rows = [r for part in distributed.gather_objects(info, rows) for r in part]
        if not rows:
            return {}, float("-inf"), None
        report = segmentation_report([r["pred"] for r in rows], [r["target"] for r in rows], [r["probs"] for r in rows],
                                     data.labels)
        row = {f"val_{k}": report[k] for k in ("frame_accuracy", "edit", "f1@10", "f1@25", "f1@50", "map@0.5")}
        row["val_score"] = segment_score(report)
        row["val_skipped"] = len(skipped)
        return row, row["val_score"], rows[:4]

    def final_plot(self, last, labels, run: Path) -> None:
        from .viz import plot_timeline

        for i, r in enumerate(last):
            plot_timeline({"ground truth": r["target"], "prediction": r["pred"]}, labels,
                          run / "plots" / f"timeline_val_{i}.png", title=f"{Path(r['path']).name} (last epoch)")


def segment_score(report: dict) -> float:
    """One number to pick the best epoch: mean of frame accuracy, Edit and F1@{10,25,50}."""
    return sum(report[k] for k in ("frame_accuracy", "edit", "f1@10", "f1@25", "f1@50")) / 5


class CaptionTask(Task):
    name = "caption"
    score_name = "val_cider"

    def check_model(self, model) -> None:
        if getattr(model, "task", None) != "caption":
            raise ValueError("--task caption needs a captioning model: --model caption_lstm")

    def load(self, cfg, say) -> TaskData:
        from .data.annotations.captions import load_captions
        from .text import Vocabulary

        train = load_captions(cfg.data, root=cfg.root)
        val = load_captions(cfg.val, root=cfg.root) if cfg.val else None
        if val is not None:
            for message in check_group_leakage(train.videos, val.videos):
                say(f"warning: {message}")
        vocab = Vocabulary.build([c for caps in train.captions.values() for c in caps], min_freq=cfg.min_word_freq)
        say(f"vocabulary: {len(vocab)} tokens (min frequency {cfg.min_word_freq}) from "
            f"{sum(len(c) for c in train.captions.values())} training captions")
        return TaskData(train.videos, val.videos if val else None, list(vocab.tokens),
                        CaptionTargets(train.captions, vocab, random=True),
                        CaptionTargets(val.captions, vocab, random=False) if val else None,
                        references=val.captions if val else None, vocab=vocab)

    def save(self, run: Path, data: TaskData) -> None:
        data.vocab.save(run / "vocab.json")

    def forward(self, model, batch, device, cfg, progress: float):
        tokens = batch.labels.to(device)  # (B, L) <bos> w1 .. wn <eos>, padded with -100
        return model(batch.clips.to(device, non_blocking=True), batch.lengths.to(device),
                     captions=tokens[:, :-1].clamp(min=0), teacher_forcing=teacher_forcing_ratio(cfg, progress))

    def loss(self, model, batch, device, cfg, progress: float) -> torch.Tensor:
        out = self.forward(model, batch, device, cfg, progress)  # logits (B, L-1, V)
        return F.cross_entropy(out.logits.float().flatten(0, 1), batch.labels[:, 1:].to(device).flatten())

    def validate(self, model, loader, device, autocast, data, cfg, info):
        from .metrics_caption import caption_report

        rows, skipped = generate_captions(model, loader, device, data.vocab, beam_size=1, max_len=cfg.max_caption_len,
                                          autocast=autocast)
        rows = [r for part in distributed.gather_objects(info, rows) for r in part]
        if not rows:
            return {}, float("-inf"), None
        report = caption_report([r["caption"] for r in rows], [data.references[r["path"]] for r in rows])
        row = {f"val_{k}": report[k] for k in ("bleu1", "bleu4", "cider")}
        row["val_skipped"] = len(skipped)
        return row, row["val_cider"], [{"path": r["path"], "caption": r["caption"],
                                        "references": data.references[r["path"]]}
                                       for r in rows[:8]]

    def final_plot(self, last, labels, run: Path) -> None:
        from .engine.io import atomic_write_json

        atomic_write_json(run / "plots" / "captions_val.json", last)


def generate_captions(model, loader, device, vocab, *, beam_size: int = 1, length_penalty: float = 1.0,
                      max_len: int = 20,
                      autocast=nullcontext) -> tuple[list[dict], list[dict]]:
    """Captions for every video of a loader: dicts (index, path, caption, tokens, attention (L, T),
    frame_indices, fps) and the skipped videos. Greedy when ``beam_size`` is 1."""
    from .generate import generate

    model.eval()
    rows, skipped = [], []
    with torch.inference_mode():
        for batch in good_batches(loader, skipped):
            with autocast():
                out = generate(model, batch.clips.to(device), batch.lengths.to(device), beam_size=beam_size,
                               length_penalty=length_penalty, max_len=max_len, bos=vocab.bos, eos=vocab.eos)
            for b, meta in enumerate(batch.meta):
                n = int(batch.lengths[b])
                attention = out[b]["attention"]
                rows.append({"index": meta["index"], "path": meta["path"], "caption": vocab.decode(out[b]["tokens"]),
                             "tokens": list(out[b]["tokens"]), "score": float(out[b]["score"]),
                             "attention": attention[:, :n].float().cpu() if attention is not None else None,
                             "frame_indices": meta["frame_indices"], "fps": meta.get("fps")})
    return rows, skipped


def get_task(name: str) -> Task:
    tasks = {"classify": Task, "segment": SegmentTask, "caption": CaptionTask}
    if name not in tasks:
        raise ValueError(f"unknown task {name!r}; expected one of {list(tasks)}")
    return tasks[name]()


__all__ = ["TASKS", "TaskData", "Task", "SegmentTask", "CaptionTask", "get_task", "collect_frames", "generate_captions",
           "segment_score", "teacher_forcing_ratio", "SegmentTargets", "CaptionTargets"]
