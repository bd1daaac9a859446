"""Temporal action segmentation: a label for every sampled frame, from a segments file.

Targets are class indices (B, T) padded with ``IGNORE_INDEX``, logits (B, T, K); class 0 is the
background (frames in no segment). The best epoch is picked by the mean of frame accuracy, Edit
and F1@{10,25,50}; predictions are cut into segments ``{label, start, end, score}`` in seconds,
after a majority filter (``--smooth``) and the merging of short runs (``--min-segment``); where
those are not given, validation picks them (saved with the best epoch's row in ``best.json``; without
a val split, the kept weights are validated once on the training videos to pick them).

Letters: B batch, T frames, K classes.
"""
from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..._optional import available
from ...config import TSN_MIN_CROP_SCALE
from ...data.annotations.formats import check_group_leakage
from ...data.collate import IGNORE_INDEX
from ...data.datasets import VideoDataset, make_loader
from ...data.transforms import eval_transform
from ...engine import distributed
from ...engine.checkpoint import unwrap
from ...engine.health import LabelCounts
from ...engine.loop import run_model
from ..base import TaskData, softmax_scores, teacher_forcing_ratio
from .metrics import segmentation_report, sequence_scores
from .segments import SegmentTargets, clean_labels, labels_to_segments, mode_filter

REPORTED = ("frame_accuracy", "edit", "f1@10", "f1@25", "f1@50", "map@0.5")  # validation row and demo table


def smoothing_loss(logits: Tensor, labels: Tensor, clamp: float = 4.0) -> Tensor:
    """MS-TCN's smoothing loss (T-MSE): the squared change of each frame's log-probabilities from the
    previous frame's (held fixed), truncated at ``clamp`` squared, averaged over classes and the real
    frames after a clip's first. It penalises the one-frame flickers that break a timeline into short
    segments. logits (B, T, K), labels (B, T) with ``IGNORE_INDEX`` on padding -> a scalar."""
    logp = logits.float().log_softmax(-1)  # (B, T, K)
    change = (logp[:, 1:] - logp[:, :-1].detach()).pow(2).clamp(max=clamp ** 2).mean(-1)  # (B, T-1)
    real = (labels[:, 1:] != IGNORE_INDEX).to(change.dtype)  # (B, T-1); no host sync on a GPU
    return (change * real).sum() / real.sum().clamp(min=1)


def segment_score(report: dict) -> float:
    """One number to pick the best epoch: mean of frame accuracy, Edit and F1@{10,25,50}."""
    return sum(report[k] for k in ("frame_accuracy", "edit", "f1@10", "f1@25", "f1@50")) / 5


# how predicted labels are cleaned before segments are cut (in sampled frames): the majority filter's windows
# and the shortest runs validation tries when --smooth / --min-segment are not given, and what runs trained
# before the pick use: docs/training.md, "The majority filter"
SMOOTH_WINDOWS = (1, 3, 5, 7, 9, 11, 13, 15)
MIN_SEGMENTS = (1, 2, 3, 4, 6)
DEFAULT_CLEANING = {"smooth": 5, "min_segment": 1}


def pick_cleaning(rows: list[dict], cfg, labels: list[str]) -> tuple[dict, dict, list[Tensor]]:
    """How to clean validation rows' labels (``pred`` raw (T,), ``target``, ``probs``): ``cfg.smooth`` and
    ``cfg.min_segment`` where given, else the pair of :data:`SMOOTH_WINDOWS` x :data:`MIN_SEGMENTS` whose
    cleaned labels score best (:func:`segment_score`; the smaller window, then the shorter run, on a tie).
    Returns ``{"smooth", "min_segment"}``, the full report of that cleaning and its labels."""
    windows = (cfg.smooth,) if cfg.smooth is not None else SMOOTH_WINDOWS
    shortest = (cfg.min_segment,) if cfg.min_segment is not None else MIN_SEGMENTS
    targets = [r["target"] for r in rows]

    filtered = {w: [mode_filter(r["pred"], w) for r in rows] for w in windows}  # each window once

    def labels_of(window: int, min_length: int) -> list[Tensor]:
        return [clean_labels(pred, min_length=min_length) for pred in filtered[window]]

    scored = {(w, m): segment_score(sequence_scores(labels_of(w, m), targets)) for w in windows for m in shortest}
    window, min_length = max(scored, key=lambda wm: (scored[wm], -wm[0], -wm[1]))
    preds = labels_of(window, min_length)
    report = segmentation_report(preds, targets, [r["probs"] for r in rows], labels)
    return {"smooth": window, "min_segment": min_length}, report, preds


def cleaning(loaded) -> dict:
    """How a trained run's labels are cleaned: ``--smooth`` / ``--min-segment`` where they were given, else
    what validation picked for the kept weights (:meth:`SegmentTask.load_state`), else :data:`DEFAULT_CLEANING`."""
    picked = {**DEFAULT_CLEANING, **(loaded.state or {})}
    return {k: getattr(loaded.cfg, k) if getattr(loaded.cfg, k) is not None else picked[k] for k in DEFAULT_CLEANING}


def cleaned(pred: Tensor, loaded) -> Tensor:
    """Predicted frame labels (T,) as a trained run's segments are cut from them (:func:`cleaning`): what
    evaluation scores, so the metrics describe what predict returns."""
    how = cleaning(loaded)
    return clean_labels(pred, smooth=how["smooth"], min_length=how["min_segment"])


def collect_frames(model, loader, device, autocast=nullcontext) -> tuple[list[dict], list[dict]]:
    """Per-frame predictions over a loader: one dict per video (index, path, pred (T,), probs (T, K),
    target (T,) or None, frame_indices (T,), fps) and the skipped videos."""
    def rows_of(batch, out) -> list[dict]:
        probs = out.logits.float().softmax(-1).cpu()  # (B, T, K)
        rows = []
        for b, meta in enumerate(batch.meta):
            n = int(batch.lengths[b])
            target = batch.labels[b, :n] if batch.labels is not None and batch.labels.dim() == 2 else None
            rows.append({"index": meta["index"], "path": meta["path"], "pred": probs[b, :n].argmax(-1),
                         "probs": probs[b, :n], "target": target, "frame_indices": meta["frame_indices"],
                         "fps": meta.get("fps")})
        return rows

    return run_model(model, loader, device, rows_of, autocast=autocast)


def frame_summary(classes: list[str], probs: Tensor) -> dict:
    """Per-frame probabilities (T, K) -> the dominant action (the non-background class with most
    frames, background when there is none) with its mean probability, frame labels and scores."""
    pred = probs.argmax(-1)  # (T,)
    counts = torch.bincount(pred, minlength=len(classes))
    main = int(counts[1:].argmax()) + 1 if len(classes) > 1 and counts[1:].sum() > 0 else 0
    return {"label": classes[main], "score": float(probs[pred == main, main].mean()) if (pred == main).any() else 0.0,
            "frame_labels": [classes[int(c)] for c in pred],
            "frame_scores": [round(float(p), 6) for p in probs.max(-1).values]}


class SegmentTask:
    name = "segment"
    default_model = "seq2seq_cnn_lstm"
    default_frames = 32  # a label per sampled frame: 16 over an untrimmed video blur its boundaries
    scratch_min_crop_scale = TSN_MIN_CROP_SCALE  # demo set F1@50 0.89 with the crop, 0.76 without (seg6: even)
    feature_diff = True  # with --tmse, F1@50: seg6 0.23 / 0.24 (0.16-0.18 without), seg6fast 0.35 / 0.38 (0.18)
    # evenly spaced samples (the feature changes compare neighbours): F1@50 seg6 0.27 / 0.25 against 0.24 / 0.24 with
    # jitter, seg6fast 0.43 / 0.40 against 0.35 / 0.38, the demo's set 0.95 against 0.93
    temporal_jitter = False
    score_name = "val_score"
    output_kind = "per-frame"
    model_does = "labels every frame"
    labels_are_classes = True
    export_refusal = None

    # --- models ---------------------------------------------------------------------------------
    def fits(self, model) -> bool:
        return bool(getattr(model, "per_frame", False)) and not callable(getattr(model, "decode_step", None))

    def check_model(self, model) -> None:
        if not self.fits(model):
            raise ValueError(f"--task {self.name} needs a per-frame model: {self.default_model} (causal; "
                             "--bidirectional for offline use is a model option) or seq2seq_ar_cnn_lstm "
                             "(autoregressive label decoder)")

    # --- training -------------------------------------------------------------------------------
    def load(self, cfg, say) -> TaskData:
        from ...data.annotations.segments import load_segments

        train = load_segments(cfg.data, root=cfg.root, background=cfg.background)
        val = load_segments(cfg.val, root=cfg.root, classes=train.classes, background=cfg.background) \
            if cfg.val else None
        if val is not None:
            for message in check_group_leakage(train.videos, val.videos):
                say(f"warning: {message}")
        elif self.picks_on_training(cfg):
            say("no --val: the label cleaning (--smooth, --min-segment) will be picked on the training videos "
                "after training; a val split picks it, and the epoch, on videos the model did not learn from")
        return TaskData(train.videos, val.videos if val else None, list(train.classes),
                        SegmentTargets(train.segments, train.classes),
                        SegmentTargets(val.segments, train.classes) if val else None)

    def save(self, run: Path, data: TaskData) -> None:
        """Nothing beyond labels.json (training writes best.json with each better epoch)."""

    def load_state(self, run: Path) -> dict:
        """How validation cleaned the kept weights' labels (best.json's ``val_smooth`` and
        ``val_min_segment``; empty for runs trained before the pick)."""
        path = run / "best.json"
        if not path.is_file():
            return {}
        try:
            best = json.loads(path.read_text(encoding="utf-8"))
            return {k: int(best[f"val_{k}"]) for k in DEFAULT_CLEANING if f"val_{k}" in best}
        except (ValueError, TypeError, UnicodeDecodeError, AttributeError) as exc:
            raise ValueError(f"{path} is damaged ({exc}); delete it to clean labels with the defaults "
                             f"{DEFAULT_CLEANING}, or set smooth and min_segment in {run / 'config.yaml'}") from None

    def label_counts(self, data: TaskData) -> LabelCounts:
        return LabelCounts()

    def loss(self, model, batch, device, cfg, progress: float, data: TaskData) -> Tensor:
        clips, lengths = batch.clips.to(device, non_blocking=True), batch.lengths.to(device)
        if getattr(unwrap(model), "autoregressive", False):
            out = model(clips, lengths, targets=batch.labels.to(device),
                        teacher_forcing=teacher_forcing_ratio(cfg, progress))
        else:
            out = model(clips, lengths)
        labels = batch.labels.to(device)  # (B, T); padding is IGNORE_INDEX, the default ignore_index
        loss = F.cross_entropy(out.logits.float().flatten(0, 1), labels.flatten())
        return loss + cfg.tmse * smoothing_loss(out.logits, labels) if cfg.tmse else loss

    def picks_on_training(self, cfg) -> bool:
        return cfg.smooth is None or cfg.min_segment is None

    def validate(self, model, loader, device, autocast, data: TaskData, cfg, info):
        rows, skipped = collect_frames(model, loader, device, autocast)
        rows = [r for part in distributed.gather_objects(info, rows) for r in part]
        if not rows:
            return {}, float("-inf"), None
        how, report, preds = pick_cleaning(rows, cfg, data.labels)
        row = {f"val_{k}": report[k] for k in REPORTED}
        row["val_score"] = segment_score(report)
        row.update({f"val_{k}": v for k, v in how.items()})  # what evaluate and predict use with these weights
        row["val_skipped"] = len(skipped)
        return row, row["val_score"], [{**r, "pred": p} for r, p in zip(rows[:4], preds, strict=False)]

    def final_plot(self, last, labels: list[str], run: Path) -> None:
        from .viz import plot_timeline

        for i, r in enumerate(last):
            plot_timeline({"ground truth": r["target"], "prediction": r["pred"]}, labels,
                          run / "plots" / f"timeline_val_{i}.png", title=f"{Path(r['path']).name} (last epoch)")

    # --- evaluate and predict -------------------------------------------------------------------
    def evaluate(self, loaded, data, *, root, views: int, batch_size: int, workers: int, plot: bool) -> dict:
        from ...data.annotations.segments import load_segments

        if views != 1:
            raise ValueError(f"views > 1 averages clip logits; it applies to classification runs, not {self.name}")
        spec = load_segments(data, root=root, classes=loaded.classes, background=loaded.cfg.background)
        dataset = VideoDataset(spec.videos, sampler=loaded.sampler(), transform=eval_transform(loaded.data_cfg),
                               on_error="skip", targets=SegmentTargets(spec.segments, loaded.classes))
        rows, skipped = collect_frames(loaded.model, make_loader(dataset, batch_size=batch_size, workers=workers),
                                       loaded.device)
        rows.sort(key=lambda r: r["index"])
        rows = [{**r, "pred": cleaned(r["pred"], loaded)} for r in rows]
        report = segmentation_report([r["pred"] for r in rows], [r["target"] for r in rows],
                                     [r["probs"] for r in rows], loaded.classes)
        report.update(task=self.name, skipped=skipped, **cleaning(loaded),
                      videos=[{"path": r["path"], "frame_accuracy": float((r["pred"] == r["target"]).float().mean())}
                              for r in rows])
        if plot and rows and available("matplotlib"):
            from .viz import plot_timeline

            name = Path(str(data)).stem or "eval"
            report["timeline_plots"] = [
                plot_timeline({"ground truth": r["target"], "prediction": r["pred"]}, loaded.classes,
                              loaded.run / "plots" / f"timeline_{name}_{i}.png", title=Path(r["path"]).name)
                for i, r in enumerate(rows[:4])]
        return report

    def predict_row(self, loaded, clip: Tensor, times: Tensor, facts: dict, *, topk: int,
                    threshold: float = 0.5) -> dict:
        """Per-frame probabilities -> frame labels, segments in seconds, the dominant action."""
        probs = loaded.model(clip).logits.float()[0].softmax(-1).cpu()  # (T, K)
        return {**frame_summary(loaded.classes, probs),
                "segments": self._segments(loaded, probs, times, facts["duration"])}

    def _segments(self, loaded, probs: Tensor, times: Tensor, duration: float | None) -> list[dict]:
        """Segments in seconds of per-frame probabilities (T, K) at ``times`` (T,), named."""
        classes = loaded.classes
        segments = labels_to_segments(cleaned(probs.argmax(-1), loaded), probs, times, background=0)
        if duration:  # the last sampled frame's span can reach past the end
            segments = [{**s, "end": min(s["end"], duration)} for s in segments]
        return [{**s, "label": classes[int(s["label"])]} for s in segments]

    def window_rows(self, loaded, x: Tensor, times: Tensor, *, topk: int,
                    threshold: float = 0.5) -> tuple[list[dict], Tensor]:
        probs = loaded.model(x).logits.float().softmax(-1).cpu()  # (N, T, K)
        rows = [{**frame_summary(loaded.classes, p), "frame_times": [round(float(s), 4) for s in t]}
                for p, t in zip(probs, times, strict=True)]
        return rows, probs

    def summarize_windows(self, loaded, windows: list[dict], probs: Tensor, times: Tensor, *, topk: int,
                          threshold: float = 0.5) -> dict:
        """Segments over the whole video from every window's frames; a frame that several windows
        sampled (stride < window) takes the mean of their probabilities."""
        at, inverse = torch.unique(times.reshape(-1), return_inverse=True)  # (F,) sorted frame times
        flat = probs.flatten(0, 1)  # (N*T, K)
        summed = flat.new_zeros(len(at), flat.shape[-1]).index_add_(0, inverse, flat)  # (F, K)
        mean = summed / torch.bincount(inverse, minlength=len(at))[:, None]  # (F, K)
        summary = frame_summary(loaded.classes, mean)
        return {"label": summary["label"], "score": summary["score"],
                "segments": self._segments(loaded, mean, at, windows[-1]["end"] if windows else None)}

    def label_scores(self, loaded, logits: Tensor, *, topk: int, threshold: float = 0.5) -> dict:
        return softmax_scores(logits, loaded.classes, topk=topk)

    def plot_prediction(self, loaded, frames: Tensor, row: dict, path: Path) -> str:
        from ...viz import plot_frame_strip

        classes = loaded.classes
        labels = torch.tensor([classes.index(c) for c in row["frame_labels"]])
        scores = F.one_hot(labels, len(classes)).float() * torch.tensor(row["frame_scores"])[:, None]
        return plot_frame_strip(frames, path, scores=scores, classes=classes,
                                title=f"{Path(row['path']).name}: {row['label']}")

    def format_evaluation(self, report: dict) -> list[str]:
        lines = [f"{report['num_videos']} videos: frame accuracy {report['frame_accuracy']:.1%}  "
                 f"edit {report['edit']:.1%}  F1@10/25/50 {report['f1@10']:.1%} / {report['f1@25']:.1%} / "
                 f"{report['f1@50']:.1%}  mAP@0.5 {report['map@0.5']:.1%}"]
        lines += [f"timeline: {path}" for path in report.get("timeline_plots", [])]
        return lines + [f"skipped: {item['message']}" for item in report["skipped"]]

    def format_prediction(self, row: dict) -> list[str]:
        lines = [f"{row['path']}: {len(row['segments'])} segment(s), mostly {row['label']}"]
        return lines + [f"  {seg['start']:8.2f}s - {seg['end']:8.2f}s  {seg['label']}  ({seg['score']:.1%})"
                        for seg in row["segments"]]

    # --- synthetic data -------------------------------------------------------------------------
    def synthesize(self, out_dir, config, *, progress: bool = False) -> dict:
        from .synth import synthesize_segment

        return synthesize_segment(out_dir, config, progress=progress)

    def describe_synth(self, summary: dict) -> tuple[str, str]:
        from ...data.synth.output import split_list

        return "with per-frame action segments", f"{split_list(summary, '.csv')} (video,start,end,label), videos/"


__all__ = ["SegmentTask", "segment_score", "collect_frames", "frame_summary", "REPORTED"]
