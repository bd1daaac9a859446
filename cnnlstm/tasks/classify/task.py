"""Classification: one label per clip (action recognition). Targets (B,), logits (B, K).

Validation top-1 picks the best epoch. Evaluation reports top-1/top-5, mean class accuracy, the
confusion matrix and a per-class table; with several temporal views, video accuracy (softmax
averaged over the views) and clip accuracy (every view a clip), as torchvision's reference.

Letters: B batch, N videos, V views, K classes.
"""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..._optional import available
from ...data.annotations.formats import check_group_leakage, load_spec
from ...data.collate import IGNORE_INDEX
from ...data.transforms import average_views
from ...engine import distributed
from ...engine.health import LabelCounts
from ...engine.loop import run_model
from ..base import TaskData, is_clip_classifier, logits_in_every_view, merge_windows, softmax_scores
from ..base import collect_views as base_collect_views
from .metrics import classification_report, format_per_class, topk_accuracy


def collect_logits(model, loader, device, autocast=nullcontext) -> tuple[Tensor, Tensor, list[int], list[dict]]:
    """Run ``model`` over a loader: logits (N, K), targets (N,), dataset indices and skipped videos."""
    def rows_of(batch, out) -> list[tuple]:
        logits = out.logits.float().cpu()  # (B, K)
        return [(logits[b], batch.labels[b], meta["index"]) for b, meta in enumerate(batch.meta)]

    rows, skipped = run_model(model, loader, device, rows_of, autocast=autocast)
    if not rows:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long), [], skipped
    return torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows]), [r[2] for r in rows], skipped


def collect_views(loaded, data, *, root, views: int, batch_size: int = 8,
                  workers: int = 0) -> tuple[list[dict[int, tuple]], list[dict]]:
    """The run's model over ``views`` temporal views of every video of ``data``
    (:func:`~cnnlstm.tasks.base.collect_views`). Returns, per view, ``{dataset index: (logits (K,),
    target, frame indices (T,))}``, and the videos that failed to decode (each listed once).
    """
    def rows_of(batch, out) -> list[tuple]:
        logits = out.logits.float().cpu()  # (B, K)
        return [(m["index"], (logits[b], int(batch.labels[b]), m["frame_indices"])) for b, m in enumerate(batch.meta)]

    return base_collect_views(loaded, data, views=views, rows_of=rows_of, batch_size=batch_size, workers=workers,
                              root=root, classes=loaded.classes)


def views_report(per_view: list[dict[int, tuple]], classes: list[str], skipped: list[dict]) -> dict:
    """The evaluation report of :func:`collect_views`'s output, over the videos that decoded in every view.

    ``top1``, ``top5``, the confusion matrix and the per-class table score each video by its class
    probabilities averaged over the views (``video_top1``/``video_top5`` say the same);
    ``clip_top1``/``clip_top5`` count every view as a clip. One view: all of them agree.
    """
    views, num_classes = len(per_view), len(classes)
    common, logits = logits_in_every_view(per_view, num_classes)  # (N, V, K)
    targets = torch.tensor([per_view[0][i][1] for i in common], dtype=torch.long)  # (N,)
    report = classification_report(average_views(logits, softmax=True), targets, classes, skipped=skipped)
    k5 = report["top5_k"]
    clip = topk_accuracy(logits.flatten(0, 1), targets.repeat_interleave(views), ks=(1, k5))  # (N * V, K)
    report.update(views=views, num_clips=len(common) * views, video_top1=report["top1"], video_top5=report["top5"],
                  clip_top1=clip[1], clip_top5=clip[k5])
    return report


def top_row(classes: list[str], probs: Tensor, topk: int) -> dict:
    """``label``, ``score`` and ``topk`` [[label, p], ...] of class probabilities (K,)."""
    top = probs.topk(min(topk, len(classes)))
    return {"label": classes[int(top.indices[0])], "score": float(top.values[0]),
            "topk": [[classes[int(c)], float(p)] for p, c in zip(top.values, top.indices, strict=True)]}


class ClassifyTask:
    name = "classify"
    default_model = "cnn_lstm"
    default_frames = 16
    scratch_min_crop_scale = 1.0  # no crop: on 2 of 3 from-scratch clip sets it cost 12-18 points (docs/training.md)
    feature_diff = False  # pairs8 -5.6 points with it (3 seeds), rhythm5 +22, shapes12 even (docs/training.md)
    temporal_jitter = True  # TSN's sampling; pairs8: one offset for all segments 70.8% against 75.0% (docs/training.md)
    score_name = "val_top1"
    output_kind = "clip"
    model_does = "labels each clip"
    labels_are_classes = True
    export_refusal = None

    # --- models ---------------------------------------------------------------------------------
    def fits(self, model) -> bool:
        return is_clip_classifier(model)

    def check_model(self, model) -> None:
        if self.fits(model):
            return
        from .. import task_of_model

        other = task_of_model(model)
        raise ValueError(f"this model {other.model_does}; train it with --task {other.name} (task {self.name} needs a "
                         f"clip classifier such as {self.default_model})")

    # --- training -------------------------------------------------------------------------------
    def load(self, cfg, say) -> TaskData:
        train = load_spec(cfg.data, root=cfg.root)
        val = load_spec(cfg.val, root=cfg.root, classes=train.classes) if cfg.val else None
        for key, videos in (("--data", train), ("--val", val)):
            unlabelled = [item.path for item in videos.items if item.label is None] if videos is not None else []
            if unlabelled:
                raise ValueError(f"{key} {videos.source}: {len(unlabelled)} videos have no label (e.g. "
                                 f"{unlabelled[0]}); training needs labels: put the videos in class folders "
                                 "(DATA/<class>/<video>) or list them in a CSV with a `path,label` header")
        if val is not None:
            for message in check_group_leakage(train, val):
                say(f"warning: {message}")
        return TaskData(train, val, list(train.classes), dataset_classes=list(train.classes))

    def save(self, run: Path, data: TaskData) -> None:
        """Nothing beyond labels.json."""

    def load_state(self, run: Path) -> None:
        return None

    def label_counts(self, data: TaskData) -> LabelCounts:
        return LabelCounts()

    def loss(self, model, batch, device, cfg, progress: float, data: TaskData) -> Tensor:
        out = model(batch.clips.to(device, non_blocking=True), batch.lengths.to(device))
        return F.cross_entropy(out.logits.float(), batch.labels.to(device))

    def picks_on_training(self, cfg) -> bool:
        return False

    def validate(self, model, loader, device, autocast, data: TaskData, cfg, info):
        logits, targets, _, skipped = collect_logits(model, loader, device, autocast)
        parts = [p for p in distributed.gather_objects(info, (logits, targets)) if len(p[1])]
        if not parts:
            return {}, float("-inf"), None
        logits, targets = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        row = {"val_loss": F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX).item(),
               "val_top1": topk_accuracy(logits, targets, ks=(1,))[1], "val_skipped": len(skipped)}
        return row, row["val_top1"], (logits, targets)

    def final_plot(self, last, labels: list[str], run: Path) -> None:
        from ..metrics import confusion_matrix
        from .viz import plot_confusion

        logits, targets = last
        plot_confusion(confusion_matrix(logits.argmax(1), targets, len(labels)), labels,
                       run / "plots" / "confusion_val.png", title="last epoch: validation confusion")

    # --- evaluate and predict -------------------------------------------------------------------
    def evaluate(self, loaded, data, *, root, views: int, batch_size: int, workers: int, plot: bool) -> dict:
        """Top-1/top-5 of each video, its softmax averaged over ``views`` temporal views (view v samples
        at position (v + 0.5) / views: a different clip for the uniform, random_clip and fps samplers),
        and the clip accuracy with every view counted as a clip, as torchvision's reference reports
        both. Videos count when they decode in every view."""
        per_view, skipped = collect_views(loaded, data, root=root, views=views, batch_size=batch_size,
                                          workers=workers)
        report = views_report(per_view, loaded.classes, skipped)
        if plot and report["num_videos"] and available("matplotlib"):
            from .viz import plot_confusion

            name = Path(str(data)).stem or "eval"
            report["confusion_plot"] = plot_confusion(report["confusion_matrix"], loaded.classes,
                                                      loaded.run / "plots" / f"confusion_{name}.png")
        return report

    def predict_row(self, loaded, clip: Tensor, times: Tensor, facts: dict, *, topk: int,
                    threshold: float = 0.5) -> dict:
        out = loaded.model(clip)
        row = top_row(loaded.classes, out.logits.float().softmax(-1)[0].cpu(), topk)
        if out.attention is not None:
            row["attention"] = [round(float(a), 6) for a in out.attention[0]]
        return row

    def label_scores(self, loaded, logits: Tensor, *, topk: int, threshold: float = 0.5) -> dict:
        return softmax_scores(logits, loaded.classes, topk=topk)

    def window_rows(self, loaded, x: Tensor, times: Tensor, *, topk: int,
                    threshold: float = 0.5) -> tuple[list[dict], Tensor]:
        probs = loaded.model(x).logits.float().softmax(-1).cpu()  # (N, K)
        return [top_row(loaded.classes, p, topk) for p in probs], probs

    def summarize_windows(self, loaded, windows: list[dict], probs: Tensor, times: Tensor, *, topk: int,
                          threshold: float = 0.5) -> dict:
        """The video's label: the mean of the windows' class probabilities; segments: runs of windows."""
        return {**top_row(loaded.classes, probs.mean(0), topk), "segments": merge_windows(windows)}

    def plot_prediction(self, loaded, frames: Tensor, row: dict, path: Path) -> str:
        from ...viz import plot_frame_strip

        weights = torch.tensor(row["attention"]) if "attention" in row else None
        title = f"{Path(row['path']).name}: {row['label']} ({row['score']:.0%})"
        return plot_frame_strip(frames, path, weights=weights, title=title)

    def format_evaluation(self, report: dict) -> list[str]:
        lines = [f"{report['num_videos']} videos ({report['views']} view(s)): top-1 {report['top1']:.1%}  "
                 f"top-{report.get('top5_k', 5)} {report['top5']:.1%}  "
                 f"mean class accuracy {report['mean_class_accuracy']:.1%}"]
        if report["views"] > 1:
            lines.append(f"  video accuracy (softmax averaged over the views) above; clip accuracy ("
                         f"{report['num_clips']} clips): top-1 {report['clip_top1']:.1%}  "
                         f"top-{report.get('top5_k', 5)} {report['clip_top5']:.1%}")
        lines.append(format_per_class(report["per_class"]))
        if report["skipped"]:
            lines.append(f"skipped {len(report['skipped'])} bad video(s):")
            lines += [f"  {item['message']}" for item in report["skipped"]]
        if report.get("confusion_plot"):
            lines.append(f"confusion matrix: {report['confusion_plot']}")
        return lines

    def format_prediction(self, row: dict) -> list[str]:
        top = ", ".join(f"{label} {score:.1%}" for label, score in row["topk"])
        return [f"{row['path']}: {row['label']} ({row['score']:.1%})   top-{len(row['topk'])}: {top}"]

    # --- synthetic data -------------------------------------------------------------------------
    def synthesize(self, out_dir, config, *, progress: bool = False) -> dict:
        from .synth import synthesize_classify

        return synthesize_classify(out_dir, config, progress=progress)

    def describe_synth(self, summary: dict) -> tuple[str, str]:
        from ...data.synth.output import split_list

        return (f"of {len(summary.get('classes', []))} classes",
                f"{split_list(summary, '.csv')} (path,label), videos/<class>/")


__all__ = ["ClassifyTask", "collect_logits", "collect_views", "views_report", "top_row"]
