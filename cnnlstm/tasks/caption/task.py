"""Captioning: a sentence per clip, from an encoder-decoder with attention over the frames.

Targets are token ids (B, L) ``<bos> ... <eos>`` padded with ``IGNORE_INDEX``; the decoder reads
them shifted by one (teacher forcing, or scheduled sampling below 1.0) and predicts the next
token. Validation generates captions greedily and scores them with CIDEr-D, which picks the best
epoch; evaluate and predict use beam search (``--beam-size``).

Letters: B batch, T frames, L caption tokens, V vocabulary size.
"""
from __future__ import annotations

from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ...config import TSN_MIN_CROP_SCALE
from ...data.annotations.formats import check_group_leakage
from ...data.collate import IGNORE_INDEX
from ...data.datasets import VideoDataset, make_loader
from ...data.transforms import eval_transform
from ...engine import distributed
from ...engine.health import LabelCounts
from ...engine.io import atomic_write_json
from ...engine.loop import run_model
from ..base import TaskData, merge_windows, softmax_scores, teacher_forcing_ratio
from .generate import generate
from .metrics import caption_report
from .text import CaptionTargets, Vocabulary


@dataclass
class CaptionState:
    vocab: Vocabulary
    references: dict[str, list[str]] | None  # validation video path -> its captions


def caption_loss(logits: Tensor, targets: Tensor, *, label_smoothing: float = 0.0) -> Tensor:
    """Mean cross-entropy over the real tokens: logits (B, L, V), targets (B, L) with ``IGNORE_INDEX`` on padding."""
    if logits.shape[:2] != targets.shape:
        raise ValueError(f"logits (B, L, V) and targets (B, L) disagree: {tuple(logits.shape)} vs "
                         f"{tuple(targets.shape)}")
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX,
                           label_smoothing=label_smoothing)


def generate_captions(model, loader, device, vocab: Vocabulary, *, beam_size: int = 1, length_penalty: float = 1.0,
                      max_len: int = 20, autocast=nullcontext) -> tuple[list[dict], list[dict]]:
    """Captions for every video of a loader: dicts (index, path, caption, tokens, score, attention
    (L, T), frame_indices, fps) and the skipped videos. Greedy when ``beam_size`` is 1."""
    def forward(model, clips, lengths):
        return generate(model, clips, lengths, beam_size=beam_size, length_penalty=length_penalty, max_len=max_len,
                        bos=vocab.bos, eos=vocab.eos)

    def rows_of(batch, out) -> list[dict]:
        rows = []
        for b, meta in enumerate(batch.meta):
            n = int(batch.lengths[b])
            attention = out[b]["attention"]
            rows.append({"index": meta["index"], "path": meta["path"], "caption": vocab.decode(out[b]["tokens"]),
                         "tokens": list(out[b]["tokens"]), "score": float(out[b]["score"]),
                         "attention": attention[:, :n].float().cpu() if attention is not None else None,
                         "frame_indices": meta["frame_indices"], "fps": meta.get("fps")})
        return rows

    return run_model(model, loader, device, rows_of, autocast=autocast, forward=forward)


class CaptionTask:
    name = "caption"
    default_model = "caption_lstm"
    default_frames = 16
    scratch_min_crop_scale = TSN_MIN_CROP_SCALE  # demo captions: BLEU-4 0.48, 0.46 with the crop, 0.47 without
    feature_diff = False  # the captioner's encoder does not take it
    temporal_jitter = True  # a caption describes the clip, as a clip label does
    score_name = "val_cider"
    output_kind = "caption"
    model_does = "captions videos"
    labels_are_classes = False
    export_refusal = ("a captioning run: its word-by-word decoder and beam search run in Python and are not "
                      "exported")

    # --- models ---------------------------------------------------------------------------------
    def fits(self, model) -> bool:
        return callable(getattr(model, "decode_step", None))  # the API generate() drives

    def check_model(self, model) -> None:
        if not self.fits(model):
            raise ValueError(f"--task {self.name} needs a captioning model: --model {self.default_model}")

    # --- training -------------------------------------------------------------------------------
    def load(self, cfg, say) -> TaskData:
        from ...data.annotations.captions import load_captions

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
                        state=CaptionState(vocab, val.captions if val else None))

    def save(self, run: Path, data: TaskData) -> None:
        data.state.vocab.save(run / "vocab.json")

    def load_state(self, run: Path) -> Vocabulary:
        if not (run / "vocab.json").is_file():
            raise FileNotFoundError(f"{run} is a captioning run without vocab.json")
        return Vocabulary.load(run / "vocab.json")

    def label_counts(self, data: TaskData) -> LabelCounts:
        return LabelCounts()

    def loss(self, model, batch, device, cfg, progress: float, data: TaskData) -> Tensor:
        tokens = batch.labels.to(device)  # (B, L) <bos> w1 .. wn <eos>, padded with IGNORE_INDEX
        out = model(batch.clips.to(device, non_blocking=True), batch.lengths.to(device),
                    captions=tokens[:, :-1].clamp(min=0), teacher_forcing=teacher_forcing_ratio(cfg, progress))
        return caption_loss(out.logits, tokens[:, 1:])  # logits (B, L-1, V)

    def picks_on_training(self, cfg) -> bool:
        return False

    def validate(self, model, loader, device, autocast, data: TaskData, cfg, info):
        vocab, references = data.state.vocab, data.state.references
        rows, skipped = generate_captions(model, loader, device, vocab, beam_size=1, max_len=cfg.max_caption_len,
                                          autocast=autocast)
        rows = [r for part in distributed.gather_objects(info, rows) for r in part]
        if not rows:
            return {}, float("-inf"), None
        report = caption_report([r["caption"] for r in rows], [references[r["path"]] for r in rows])
        row = {f"val_{k}": report[k] for k in ("bleu1", "bleu4", "cider")}
        row["val_skipped"] = len(skipped)
        last = [{"path": r["path"], "caption": r["caption"], "references": references[r["path"]]} for r in rows[:8]]
        return row, row["val_cider"], last

    def final_plot(self, last, labels: list[str], run: Path) -> None:
        atomic_write_json(run / "plots" / "captions_val.json", last)

    # --- evaluate and predict -------------------------------------------------------------------
    def evaluate(self, loaded, data, *, root, views: int, batch_size: int, workers: int, plot: bool) -> dict:
        from ...data.annotations.captions import load_captions

        if views != 1:
            raise ValueError(f"views > 1 averages clip logits; it applies to classification runs, not {self.name}")
        spec = load_captions(data, root=root)
        dataset = VideoDataset(spec.videos, sampler=loaded.sampler(), transform=eval_transform(loaded.data_cfg),
                               on_error="skip", targets=CaptionTargets(spec.captions, loaded.state, random=False))
        cfg = loaded.cfg
        rows, skipped = generate_captions(loaded.model, make_loader(dataset, batch_size=batch_size, workers=workers),
                                          loaded.device, loaded.state, beam_size=cfg.beam_size,
                                          length_penalty=cfg.length_penalty, max_len=cfg.max_caption_len)
        rows.sort(key=lambda r: r["index"])
        report = caption_report([r["caption"] for r in rows], [spec.captions[r["path"]] for r in rows])
        report.update(task=self.name, skipped=skipped, beam_size=cfg.beam_size,
                      captions=[{"path": r["path"], "caption": r["caption"], "references": spec.captions[r["path"]]}
                                for r in rows])
        return report

    def predict_row(self, loaded, clip: Tensor, times: Tensor, facts: dict, *, topk: int,
                    threshold: float = 0.5) -> dict:
        """The caption, its words (one per generated token, so they line up with the attention rows;
        a final ``<eos>`` row is the weights that ended the caption) and the attention per word."""
        cfg, vocab = loaded.cfg, loaded.state
        out = generate(loaded.model, clip, beam_size=cfg.beam_size, length_penalty=cfg.length_penalty,
                       max_len=cfg.max_caption_len, bos=vocab.bos, eos=vocab.eos)[0]
        caption = vocab.decode(out["tokens"])
        attention = out["attention"]  # (words [+ 1 for <eos>], T)
        word_attention = [[round(float(a), 6) for a in row] for row in attention.float().cpu()] \
            if attention is not None else []
        return {"label": caption, "caption": caption, "score": float(out["score"]),
                "words": [vocab.tokens[t] for t in out["tokens"]], "word_attention": word_attention}

    def label_scores(self, loaded, logits: Tensor, *, topk: int, threshold: float = 0.5) -> dict:
        return softmax_scores(logits, loaded.classes, topk=topk)

    def window_rows(self, loaded, x: Tensor, times: Tensor, *, topk: int,
                    threshold: float = 0.5) -> tuple[list[dict], None]:
        """A caption per window (beam search as in predict); ``score`` is the caption's beam score."""
        cfg, vocab = loaded.cfg, loaded.state
        outs = generate(loaded.model, x, beam_size=cfg.beam_size, length_penalty=cfg.length_penalty,
                        max_len=cfg.max_caption_len, bos=vocab.bos, eos=vocab.eos)
        rows = []
        for out in outs:
            caption = vocab.decode(out["tokens"])
            rows.append({"label": caption, "caption": caption, "score": float(out["score"])})
        return rows, None

    def summarize_windows(self, loaded, windows: list[dict], probs: None, times: Tensor, *, topk: int,
                          threshold: float = 0.5) -> dict:
        """The video's caption: the one most windows got (the earliest on a tie), with the mean of their
        scores; segments: runs of windows with the same caption."""
        counts = Counter(w["caption"] for w in windows)
        caption = max(counts, key=lambda c: counts[c])  # the first of the most common, in window order
        scores = [w["score"] for w in windows if w["caption"] == caption]
        return {"label": caption, "caption": caption, "score": sum(scores) / len(scores),
                "segments": merge_windows(windows)}

    def plot_prediction(self, loaded, frames: Tensor, row: dict, path: Path) -> str:
        from .viz import plot_caption_attention

        ended = len(row["word_attention"]) > len(row["words"])
        return plot_caption_attention(frames, row["words"] + ["<eos>"] if ended else row["words"],
                                      torch.tensor(row["word_attention"]), path, title=row["caption"])

    def format_evaluation(self, report: dict) -> list[str]:
        lines = [f"{report['num_videos']} videos (beam {report['beam_size']}): BLEU-1 {report['bleu1']:.3f}  "
                 f"BLEU-4 {report['bleu4']:.3f}  CIDEr-D {report['cider']:.3f}"]
        lines += [f"  {Path(row['path']).name}: {row['caption']!r}   (reference: {row['references'][0]!r})"
                  for row in report["captions"][:10]]
        return lines + [f"skipped: {item['message']}" for item in report["skipped"]]

    def format_prediction(self, row: dict) -> list[str]:
        return [f"{row['path']}: {row['caption']}"]

    # --- synthetic data -------------------------------------------------------------------------
    def synthesize(self, out_dir, config, *, progress: bool = False) -> dict:
        from .synth import synthesize_caption

        return synthesize_caption(out_dir, config, progress=progress)

    def describe_synth(self, summary: dict) -> tuple[str, str]:
        from ...data.synth.output import split_list

        words = len(summary.get("vocabulary", []))
        return f"with captions ({words} words)", f"{split_list(summary, '.csv')} (video,caption), videos/"


__all__ = ["CaptionTask", "CaptionState", "caption_loss", "generate_captions"]
