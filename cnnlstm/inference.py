"""evaluate(), predict() and Predictor: everything they need is in the run directory.

A run directory holds ``config.yaml`` (how clips are sampled and transformed, which task),
``labels.json`` (class names, or the vocabulary of a captioning run, also in ``vocab.json``) and
``model.safetensors``. Each task reports its own metrics: top-1/top-5 and a confusion matrix
(classify), frame accuracy / Edit / F1@k / segment mAP and timelines (segment), BLEU / CIDEr-D
(caption). ``predict`` decodes each untrusted video in an isolated worker process with
a timeout (a file that crashes or hangs FFmpeg costs that file, not the process) and only the
sampled frames, so a long video costs the memory of one clip.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Sequence

import torch

from .data.datasets import VideoDataset, make_loader
from .data.sampling import SamplerConfig, sample_indices
from .data.transforms import average_views, eval_transform
from .data.video.decode import VideoReader
from .data.video.errors import VideoError
from .data.video.pool import IsolatedPool
from .data.video.types import Limits
from .metrics import classification_report
from .run import LoadedRun, load_run
from .tasks import CaptionTargets, SegmentTargets, collect_frames, generate_captions
from .train import collect_logits


def evaluate(run_dir: str | os.PathLike, data: str | os.PathLike, *, root: str | os.PathLike | None = None,
             views: int = 1, batch_size: int = 8, workers: int = 0, device: str = "auto", plot: bool = True) -> dict:
    """The run's task metrics on a dataset (a SPEC for classification, a segments or captions file).

    classify: top-1/top-5, mean class accuracy, confusion matrix and per-class table; ``views`` > 1
    averages the logits of that many temporal views (uniform sampling at positions
    (v + 0.5) / views within each segment). segment: ``frame_accuracy``, ``edit``, ``f1@10/25/50``,
    ``map@0.3/0.5/0.7`` (0..1) and timeline plots. caption: ``bleu1``..``bleu4`` (0..1), ``cider``
    and the generated captions. Bad videos are skipped and listed.
    """
    if views < 1:
        raise ValueError(f"views must be >= 1; got {views}")
    loaded = load_run(run_dir, device=device)
    if loaded.task != "classify":
        if views != 1:
            raise ValueError(f"views > 1 averages clip logits; it applies to classification runs, not {loaded.task}")
        dense = _evaluate_segment if loaded.task == "segment" else _evaluate_caption
        return dense(loaded, data, root=root, batch_size=batch_size, workers=workers, plot=plot)
    views_out = []  # per view: {dataset index: (logits (K,), target)}
    skipped: list[dict] = []
    for v in range(views):
        dataset = VideoDataset(data, root=root, classes=loaded.classes, sampler=loaded.sampler((v + 0.5) / views),
                               transform=eval_transform(loaded.data_cfg), on_error="skip")
        loader = make_loader(dataset, batch_size=batch_size, workers=workers)
        logits, targets, indices, bad = collect_logits(loaded.model, loader, loaded.device)
        views_out.append({i: (row, t) for i, row, t in zip(indices, logits, targets.tolist(), strict=True)})
        skipped += [b for b in bad if b["path"] not in {s["path"] for s in skipped}]
    common = sorted(set.intersection(*(set(v) for v in views_out)))  # videos that decoded in every view
    if common:
        logits = torch.stack([torch.stack([v[i][0] for v in views_out]) for i in common])
    else:
        logits = torch.empty(0, views, len(loaded.classes))
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


def _evaluate_segment(loaded: LoadedRun, data, *, root, batch_size: int, workers: int, plot: bool) -> dict:
    from .data.annotations.segments import load_segments
    from .metrics_segment import segmentation_report

    spec = load_segments(data, root=root, classes=loaded.classes, background=loaded.cfg.background)
    dataset = VideoDataset(spec.videos, sampler=loaded.sampler(), transform=eval_transform(loaded.data_cfg),
                           on_error="skip",
                           targets=SegmentTargets(spec.segments, loaded.classes))
    rows, skipped = collect_frames(loaded.model, make_loader(dataset, batch_size=batch_size, workers=workers),
                                   loaded.device)
    rows.sort(key=lambda r: r["index"])
    report = segmentation_report([r["pred"] for r in rows], [r["target"] for r in rows], [r["probs"] for r in rows],
                                 loaded.classes)
    report.update(task="segment", skipped=skipped,
                  videos=[{"path": r["path"], "frame_accuracy": float((r["pred"] == r["target"]).float().mean())}
                                                           for r in rows])
    if plot and rows:
        from ._optional import available

        if available("matplotlib"):
            from .viz import plot_timeline

            name = Path(str(data)).stem or "eval"
            report["timeline_plots"] = [
                plot_timeline({"ground truth": r["target"], "prediction": r["pred"]}, loaded.classes,
                              loaded.run / "plots" / f"timeline_{name}_{i}.png", title=Path(r["path"]).name)
                for i, r in enumerate(rows[:4])]
    return report


def _evaluate_caption(loaded: LoadedRun, data, *, root, batch_size: int, workers: int, plot: bool) -> dict:
    from .data.annotations.captions import load_captions
    from .metrics_caption import caption_report

    spec = load_captions(data, root=root)
    dataset = VideoDataset(spec.videos, sampler=loaded.sampler(), transform=eval_transform(loaded.data_cfg),
                           on_error="skip",
                           targets=CaptionTargets(spec.captions, loaded.vocab, random=False))
    cfg = loaded.cfg
    rows, skipped = generate_captions(loaded.model, make_loader(dataset, batch_size=batch_size, workers=workers),
                                      loaded.device,
                                      loaded.vocab, beam_size=cfg.beam_size, length_penalty=cfg.length_penalty,
                                      max_len=cfg.max_caption_len)
    rows.sort(key=lambda r: r["index"])
    report = caption_report([r["caption"] for r in rows], [spec.captions[r["path"]] for r in rows])
    report.update(task="caption", skipped=skipped, beam_size=cfg.beam_size,
                  captions=[{"path": r["path"], "caption": r["caption"],
                             "references": spec.captions[r["path"]]} for r in rows])
    return report


def read_clip(path: str, sampler: SamplerConfig, limits: Limits | None) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Decode one video's sampled frames: uint8 (T, C, H, W), indices (T,), and facts about it."""
    with VideoReader(path, limits=limits) as reader:
        info = reader.info
        indices = sample_indices(sampler, info.num_frames, fps=info.fps, train=False)
        frames = reader.get_frames(indices)
        facts = {"frames": info.num_frames, "fps": info.fps, "duration": info.duration,
                 "corrupt_frames": reader.corrupt_frames}
    return frames, indices, facts


class Predictor:
    """A loaded run that labels (or captions) videos; decoding runs in an isolated worker process.

    ``Predictor(run).predict(paths)`` returns one dict per video (see :func:`predict`). The run is
    loaded once; the worker process starts on first use and is reused. Thread-safe: calls are
    serialised by a lock. Use as a context manager or call :meth:`close`.
    """

    def __init__(self, run_dir: str | os.PathLike, *, device: str = "auto", timeout: float = 120.0,
                 limits: Limits | None = Limits(), topk: int = 5):
        self.loaded = load_run(run_dir, device=device)
        self.transform = eval_transform(self.loaded.data_cfg)
        self.timeout, self.limits, self.topk = timeout, limits, topk
        self._pool: IsolatedPool | None = None
        self._lock = threading.Lock()

    def info(self) -> dict:
        """What a client needs to know: model, task, labels and input settings."""
        c, model = self.loaded.cfg, self.loaded.model
        return {"model": c.model, "backbone": c.backbone, "task": c.task,
                "labels": [] if c.task == "caption" else self.loaded.classes, "frames": c.frames, "size": c.size,
                "sampler": c.sampler, "per_frame": bool(getattr(model, "per_frame", False)),
                "streamable": bool(getattr(model, "streamable", False))}

    def __enter__(self) -> "Predictor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    def predict(self, videos: Sequence[str | os.PathLike], *, plot: str | os.PathLike | None = None) -> list[dict]:
        paths = [os.fspath(v) for v in videos]
        results: list[dict] = [{} for _ in paths]
        with self._lock:
            if self._pool is None:
                self._pool = IsolatedPool(1, timeout=self.timeout)
            tasks = ((i, p, (os.path.abspath(p), self.loaded.sampler(), self.limits)) for i, p in enumerate(paths))
            for i, decoded in self._pool.map_unordered(read_clip, tasks):
                if isinstance(decoded, BaseException):
                    reason = decoded.reason if isinstance(decoded, VideoError) else type(decoded).__name__
                    results[i] = {"path": paths[i], "error": f"{reason}: {decoded}", "reason": reason}
                    continue
                frames, indices, facts = decoded
                row = self._row(paths[i], frames, indices, facts)
                if plot is not None:
                    row["plot"] = self._plot(frames, row, plot, i if len(paths) > 1 else None)
                results[i] = row
        return results

    def _row(self, path: str, frames: torch.Tensor, indices: torch.Tensor, facts: dict) -> dict:
        loaded = self.loaded
        fps = facts["fps"] or 1.0
        row = {"path": path, "frame_indices": indices.tolist(),
               "frame_times": [round(float(i) / fps, 4) for i in indices], **facts}
        clip = self.transform(frames)[None].to(loaded.device)  # (1, T, C, S, S)
        with torch.inference_mode():
            if loaded.task == "caption":
                return {**row, **self._caption(clip)}
            out = loaded.model(clip)
        if loaded.task == "segment":
            return {**row,
                    **self._segments(out.logits.float()[0].softmax(-1).cpu(), torch.tensor(row["frame_times"]),
                                     facts["duration"])}
        probs = out.logits.float().softmax(-1)[0].cpu()  # (K,)
        top = probs.topk(min(self.topk, len(loaded.classes)))
        row.update(label=loaded.classes[int(top.indices[0])], score=float(top.values[0]),
                   topk=[[loaded.classes[int(c)], float(p)] for p, c in zip(top.values, top.indices, strict=True)])
        if out.attention is not None:
            row["attention"] = [round(float(a), 6) for a in out.attention[0]]
        return row

    def _segments(self, probs: torch.Tensor, times: torch.Tensor, duration: float | None) -> dict:
        """Per-frame probabilities (T, K) -> frame labels, segments in seconds, the dominant action."""
        from .data.annotations.segments import labels_to_segments

        classes, cfg = self.loaded.classes, self.loaded.cfg
        pred = probs.argmax(-1)  # (T,)
        segments = labels_to_segments(pred, probs, times, smooth=cfg.smooth, min_length=cfg.min_segment, background=0)
        if duration:  # the last sampled frame's span can reach past the end
            segments = [{**s, "end": min(s["end"], duration)} for s in segments]
        counts = torch.bincount(pred, minlength=len(classes))
        main = int(counts[1:].argmax()) + 1 if len(classes) > 1 and counts[1:].sum() > 0 else 0
        return {"label": classes[main],
                "score": float(probs[pred == main, main].mean()) if (pred == main).any() else 0.0,
                "frame_labels": [classes[int(c)] for c in pred],
                "frame_scores": [round(float(p), 6) for p in probs.max(-1).values],
                "segments": [{**s, "label": classes[int(s["label"])]} for s in segments]}

    def _caption(self, clip: torch.Tensor) -> dict:
        """The caption, its words (one per generated token, so they line up with the attention rows;
        a final ``<eos>`` row is the weights that ended the caption) and the attention per word."""
        from .generate import generate

        cfg, vocab = self.loaded.cfg, self.loaded.vocab
        out = generate(self.loaded.model, clip, beam_size=cfg.beam_size, length_penalty=cfg.length_penalty,
                       max_len=cfg.max_caption_len, bos=vocab.bos, eos=vocab.eos)[0]
        caption = vocab.decode(out["tokens"])
        attention = out["attention"]  # (words [+ 1 for <eos>], T)
        return {"label": caption, "caption": caption, "score": float(out["score"]),
                "words": [vocab.tokens[t] for t in out["tokens"]],
                "word_attention": [[round(float(a), 6) for a in row] for row in attention.float().cpu()]
                if attention is not None else []}

    def _plot(self, frames: torch.Tensor, row: dict, plot: str | os.PathLike, index: int | None) -> str:
        path = Path(plot)
        if index is not None:
            path = path.with_name(f"{path.stem}_{index}{path.suffix or '.png'}")
        if self.loaded.task == "caption":
            from .viz_caption import plot_caption_attention

            ended = len(row["word_attention"]) > len(row["words"])
            return plot_caption_attention(frames, row["words"] + ["<eos>"] if ended else row["words"],
                                          torch.tensor(row["word_attention"]), path, title=row["caption"])
        if self.loaded.task == "segment":
            from .viz import plot_frame_strip

            classes = self.loaded.classes
            labels = torch.tensor([classes.index(c) for c in row["frame_labels"]])
            scores = torch.nn.functional.one_hot(labels, len(classes)).float()
            scores = scores * torch.tensor(row["frame_scores"])[:, None]
            return plot_frame_strip(frames, path, scores=scores, classes=classes, title=f"{Path(row['path']).name}: "
                                    f"{row['label']}")
        return _plot_strip(frames, row, path, None)


def predict(run_dir: str | os.PathLike, videos: Sequence[str | os.PathLike], *, topk: int = 5, device: str = "auto",
            plot: str | os.PathLike | None = None, timeout: float = 120.0,
            limits: Limits | None = Limits()) -> list[dict]:
    """Label each video; a bad video gets ``{"path", "error", "reason"}`` instead of a prediction.

    Every result has path, label, score, frame_indices, frame_times (seconds) and the video's
    frames/fps/duration. Classification adds ``topk`` [(label, score)] and ``attention`` (one
    weight per sampled frame) for attention models; segmentation adds ``frame_labels``,
    ``frame_scores`` and ``segments`` [{label, start, end, score}] in seconds (label = the
    action with most frames); captioning adds ``caption``, ``words`` and ``word_attention``
    (one row of weights over the sampled frames per generated word).
    """
    with Predictor(run_dir, device=device, timeout=timeout, limits=limits, topk=topk) as predictor:
        return predictor.predict(videos, plot=plot)


def _plot_strip(frames: torch.Tensor, row: dict, plot: str | os.PathLike, index: int | None) -> str:
    from .viz import plot_frame_strip

    path = Path(plot)
    if index is not None:
        path = path.with_name(f"{path.stem}_{index}{path.suffix or '.png'}")
    weights = torch.tensor(row["attention"]) if "attention" in row else None
    title = f"{Path(row['path']).name}: {row['label']} ({row['score']:.0%})"
    return plot_frame_strip(frames, path, weights=weights, title=title)
