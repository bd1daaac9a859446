"""Multi-label clip classification: every action a clip shows (Charades, AVA-style footage).

Targets are multi-hot (B, K) floats, logits (B, K) from the same clip classifiers as
``classify``; the loss is a binary cross-entropy per class on the logits (a sigmoid per class, so
classes do not compete), with an optional weight on positives for rare classes (``--pos-weight``:
``auto`` = negatives / positives per class from the training labels, capped at
:data:`POS_WEIGHT_CAP`, or one number for every class). Validation mAP picks the best epoch.
Evaluation reports mAP (Charades-style), AP per class, F1@0.5 micro and macro and exact match,
and can average the logits of several temporal views. A prediction lists every class whose
probability is at least the threshold (``--threshold``, default 0.5), with its score.

Letters: B batch, N videos, V views, K classes.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..._optional import available
from ...data.annotations.formats import check_group_leakage
from ...data.transforms import average_views
from ...engine import distributed
from ...engine.health import MultiHotCounts
from ...engine.loop import run_model
from ..base import TaskData, collect_views, is_clip_classifier, logits_in_every_view, merge_windows
from .labels import MultiLabelTargets, load_multilabel
from .metrics import check_threshold, format_per_class, multilabel_report

POS_WEIGHT_CAP = 10.0  # --pos-weight auto: at most this weight on a class's positives
REPORTED = ("map", "f1@0.5_micro", "f1@0.5_macro", "exact_match")  # the validation row


@dataclass
class MultiLabelState:
    pos_weight: Tensor | None  # (K,) the loss's weight on positives (None: 1)


def pos_weights(option: str | None, targets: Tensor, *, cap: float = POS_WEIGHT_CAP) -> Tensor | None:
    """The ``--pos-weight`` of a run from its training targets (N, K): None for ``none``; ``auto``:
    negatives / positives per class, at most ``cap`` (a class without positives gets ``cap``); a
    number: that weight for every class."""
    if option is None or str(option).strip().lower() in ("", "none"):
        return None
    text = str(option).strip().lower()
    if text == "auto":
        positives, total = targets.double().sum(0), targets.shape[0]  # (K,)
        weight = (total - positives) / positives.clamp_min(1e-12)
        return torch.where(positives > 0, weight.clamp(max=cap), torch.full_like(weight, cap)).float()
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"pos_weight must be none, auto (negatives/positives per class, capped at {cap:g}) or a "
                         f"positive number; got {option!r}")
    return torch.full((targets.shape[1],), value)


def collect_multilabel(model, loader, device, autocast=nullcontext) -> tuple[Tensor, Tensor, list[int], list[dict]]:
    """Run ``model`` over a loader: logits (N, K), targets (N, K), dataset indices and skipped videos."""
    def rows_of(batch, out) -> list[tuple]:
        logits = out.logits.float().cpu()  # (B, K)
        return [(logits[b], batch.labels[b].float(), meta["index"]) for b, meta in enumerate(batch.meta)]

    rows, skipped = run_model(model, loader, device, rows_of, autocast=autocast)
    if not rows:
        return torch.empty(0, 0), torch.empty(0, 0), [], skipped
    return torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows]), [r[2] for r in rows], skipped


def bce_loss(logits: Tensor, targets: Tensor, pos_weight: Tensor | None) -> Tensor:
    """Mean binary cross-entropy per (clip, class): logits (B, K), multi-hot targets (B, K)."""
    if logits.shape != targets.shape:
        raise ValueError(f"logits and multi-hot targets must both be (B, K); got {tuple(logits.shape)} and "
                         f"{tuple(targets.shape)}")
    weight = pos_weight.to(logits.device) if pos_weight is not None else None
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float(), pos_weight=weight)


class MultiLabelTask:
    name = "multilabel"
    default_model = "cnn_lstm"
    default_frames = 16
    scratch_min_crop_scale = 1.0  # as classify (not measured on multi-label data of its own)
    feature_diff = False  # as classify
    temporal_jitter = True  # as classify
    score_name = "val_map"
    output_kind = "clip"  # the clip classifiers' logits, read with a sigmoid per class
    model_does = "labels each clip with every action it shows"
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
        raise ValueError(f"this model {other.model_does}; task {self.name} needs a clip classifier such as "
                         f"--model {self.default_model} (its logits (B, K) get a sigmoid per class)")

    # --- training -------------------------------------------------------------------------------
    def load(self, cfg, say) -> TaskData:
        train = load_multilabel(cfg.data, root=cfg.root)
        val = load_multilabel(cfg.val, root=cfg.root, classes=train.classes) if cfg.val else None
        for message in train.videos.warnings + (val.videos.warnings if val else []):
            say(f"warning: {message}")
        if val is not None:
            for message in check_group_leakage(train.videos, val.videos):
                say(f"warning: {message}")
        targets = MultiLabelTargets(train.labels, train.classes)
        train_targets = torch.stack([targets.targets[p] for p in train.labels])  # (N, K)
        weight = pos_weights(cfg.pos_weight, train_targets)
        say(f"{len(train.classes)} classes, {train_targets.sum(1).mean():.2f} labels per training video"
            + (f", positives weighted {weight.min():.2f}-{weight.max():.2f}" if weight is not None else ""))
        return TaskData(train.videos, val.videos if val else None, list(train.classes), targets,
                        MultiLabelTargets(val.labels, train.classes) if val else None,
                        state=MultiLabelState(weight))

    def save(self, run: Path, data: TaskData) -> None:
        """Nothing beyond labels.json."""

    def load_state(self, run: Path) -> None:
        return None

    def label_counts(self, data: TaskData) -> MultiHotCounts:
        return MultiHotCounts(pos_weight=data.state.pos_weight if data is not None else None)

    def loss(self, model, batch, device, cfg, progress: float, data: TaskData) -> Tensor:
        out = model(batch.clips.to(device, non_blocking=True), batch.lengths.to(device))
        return bce_loss(out.logits, batch.labels.to(device), data.state.pos_weight if data is not None else None)

    def picks_on_training(self, cfg) -> bool:
        return False

    def validate(self, model, loader, device, autocast, data: TaskData, cfg, info):
        logits, targets, _, skipped = collect_multilabel(model, loader, device, autocast)
        parts = [p for p in distributed.gather_objects(info, (logits, targets)) if len(p[1])]
        if not parts:
            return {}, float("-inf"), None
        logits, targets = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        report = multilabel_report(logits, targets, data.labels)
        row = {"val_loss": bce_loss(logits, targets, data.state.pos_weight).item(),
               **{f"val_{k}": report[k] for k in REPORTED}, "val_skipped": len(skipped)}
        return row, row["val_map"], report["per_class"]

    def final_plot(self, last, labels: list[str], run: Path) -> None:
        from .viz import plot_ap

        if any(row["ap"] is not None for row in last):
            plot_ap(last, run / "plots" / "ap_val.png", title="last epoch: validation AP per class")

    # --- evaluate and predict -------------------------------------------------------------------
    def evaluate(self, loaded, data, *, root, views: int, batch_size: int, workers: int, plot: bool) -> dict:
        """``views`` > 1 averages the logits of that many temporal views over the videos that decode
        in every view (as ``classify`` does)."""
        spec = load_multilabel(data, root=root, classes=loaded.classes)
        def rows_of(batch, out) -> list[tuple]:
            logits = out.logits.float().cpu()  # (B, K)
            return [(m["index"], (logits[b], batch.labels[b].float())) for b, m in enumerate(batch.meta)]

        per_view, skipped = collect_views(loaded, spec.videos, views=views, rows_of=rows_of, batch_size=batch_size,
                                          workers=workers, targets=MultiLabelTargets(spec.labels, loaded.classes))
        k = len(loaded.classes)
        common, logits = logits_in_every_view(per_view, k)  # (N, V, K)
        logits = average_views(logits) if views > 1 else logits[:, 0]  # (N, K)
        target = torch.stack([per_view[0][i][1] for i in common]) if common else torch.empty(0, k)  # (N, K)
        report = multilabel_report(logits, target, loaded.classes, skipped=skipped)
        report.update(task=self.name, views=views)
        if plot and report["map"] and available("matplotlib"):
            from .viz import plot_ap

            name = Path(str(data)).stem or "eval"
            report["ap_plot"] = plot_ap(report["per_class"], loaded.run / "plots" / f"ap_{name}.png")
        return report

    def predict_row(self, loaded, clip: Tensor, times: Tensor, facts: dict, *, topk: int,
                    threshold: float = 0.5) -> dict:
        out = loaded.model(clip)
        row = self.label_scores(loaded, out.logits[0], topk=topk, threshold=threshold)
        if out.attention is not None:
            row["attention"] = [round(float(a), 6) for a in out.attention[0]]
        return row

    def label_scores(self, loaded, logits: Tensor, *, topk: int, threshold: float = 0.5) -> dict:
        """A sigmoid per class: ``labels`` every class at or above ``threshold`` (best first), ``label``
        and ``score`` the best class (even below the threshold), ``topk`` the k best."""
        classes, threshold = loaded.classes, check_threshold(threshold)
        probs = logits.detach().float().sigmoid().cpu()  # (K,)
        order = torch.argsort(probs, descending=True, stable=True).tolist()
        ranked = [[classes[c], round(float(probs[c]), 6)] for c in order]
        return {"label": ranked[0][0], "score": ranked[0][1], "labels": [r for r in ranked if r[1] >= threshold],
                "threshold": threshold, "topk": ranked[:max(1, topk)]}

    def window_rows(self, loaded, x: Tensor, times: Tensor, *, topk: int,
                    threshold: float = 0.5) -> tuple[list[dict], Tensor]:
        """Every label of each window at or above ``threshold``, as :meth:`label_scores`."""
        logits = loaded.model(x).logits.float().cpu()  # (N, K)
        return [self.label_scores(loaded, w, topk=topk, threshold=threshold) for w in logits], logits.sigmoid()

    def summarize_windows(self, loaded, windows: list[dict], probs: Tensor, times: Tensor, *, topk: int,
                          threshold: float = 0.5) -> dict:
        """The video's labels: the mean of the windows' class probabilities; segments: runs of windows
        with the same best label."""
        return {**self.label_scores(loaded, probs.mean(0).logit(eps=1e-6), topk=topk, threshold=threshold),
                "segments": merge_windows(windows)}

    def plot_prediction(self, loaded, frames: Tensor, row: dict, path: Path) -> str:
        from ...viz import plot_frame_strip

        weights = torch.tensor(row["attention"]) if "attention" in row else None
        shown = ", ".join(f"{label} {score:.0%}" for label, score in row["labels"]) or \
            f"no label at or above {row['threshold']:.0%}"
        return plot_frame_strip(frames, path, weights=weights, title=f"{Path(row['path']).name}: {shown}")

    def format_evaluation(self, report: dict) -> list[str]:
        lines = [f"{report['num_videos']} videos ({report['views']} view(s), {report['label_cardinality']:.2f} labels "
                 f"per video): mAP {report['map']:.1%}  F1@0.5 micro {report['f1@0.5_micro']:.1%}  macro "
                 f"{report['f1@0.5_macro']:.1%}  exact match {report['exact_match']:.1%}",
                 format_per_class(report["per_class"])]
        if report["classes_without_positives"]:
            lines.append(f"no positive video (left out of the mAP): {', '.join(report['classes_without_positives'])}")
        if report["skipped"]:
            lines.append(f"skipped {len(report['skipped'])} bad video(s):")
            lines += [f"  {item['message']}" for item in report["skipped"]]
        if report.get("ap_plot"):
            lines.append(f"AP per class: {report['ap_plot']}")
        return lines

    def format_prediction(self, row: dict) -> list[str]:
        shown = ", ".join(f"{label} {score:.1%}" for label, score in row["labels"])
        return [f"{row['path']}: {shown or 'no label'} (at or above {row['threshold']:.0%}; best {row['label']} "
                f"{row['score']:.1%})"]

    # --- synthetic data -------------------------------------------------------------------------
    def synthesize(self, out_dir, config, *, progress: bool = False) -> dict:
        from .synth import synthesize_multilabel

        return synthesize_multilabel(out_dir, config, progress=progress)

    def describe_synth(self, summary: dict) -> tuple[str, str]:
        from ...data.synth.output import split_list

        return (f"of {len(summary.get('classes', []))} simultaneous motions",
                f"{split_list(summary, '.csv')} (path,labels; labels separated by ';'), classes.txt, videos/")


__all__ = ["MultiLabelTask", "MultiLabelState", "POS_WEIGHT_CAP", "bce_loss", "collect_multilabel", "pos_weights"]
