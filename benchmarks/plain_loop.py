"""A plain per-frame CNN-LSTM loop outside the package: the reference the issue measured against.

Decodes each video once with PyAV (48 frames sampled uniformly, resized to 64 px), trains a
torchvision ResNet-18 from scratch -> ``nn.LSTM`` -> linear per frame with Adam 1e-3, no
augmentation, fp32, and scores the test split with the package's own metrics (F1@50 etc.).
``--model ours`` swaps in the package's ``seq2seq_cnn_lstm`` to tell the model from the loop.
``--task classify`` is the same loop for clip labels (``path,label`` CSVs such as pairs8's): 16
frames, the seed's ``CNNLSTM`` (2-layer LSTM, 512 units, dropout 0.5 or ``--dropout``, the final hidden state) on a
from-scratch ResNet-18; the test score is reported at every epoch and at the epoch ``val.csv``
picks, as the package's runs are. Each run appends a line (arguments, per-epoch loss and test
scores) to ``benchmarks/results/plain_loop.jsonl``.

    python benchmarks/learning_data.py /tmp/ld --families seg6
    python benchmarks/plain_loop.py --data-dir /tmp/ld/seg6 --bidirectional      # ~25 min on 2 CPU cores
    python benchmarks/learning_data.py /tmp/ld --families pairs8 --test-per-class 24 --val-per-class 6
    python benchmarks/plain_loop.py --data-dir /tmp/ld/pairs8 --task classify --frames 16

Measured (seg6, bidirectional, 15 epochs): loss 1.87 -> 1.72, best F1@50 0.11, last 0.03: this
dataset is hard for the plain loop too (the package's defaults: 1.88 -> 1.80 in 8 epochs, plain
loop at epoch 8: 1.81).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MEAN, STD = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])


def norm(x: torch.Tensor) -> torch.Tensor:
    """uint8 clips (B, T, 3, S, S) -> float normalised with ImageNet's mean and std."""
    return ((x.float() / 255) - MEAN[:, None, None]) / STD[:, None, None]


def train_epoch(model: nn.Module, opt, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    """One epoch of Adam over (x, y) in a random order; logits (B, K) with y (B,) or (B, T, K) with y (B, T).
    Returns the mean batch loss."""
    model.train()
    perm, losses = torch.randperm(len(x)), []
    for i in range(0, len(perm), batch_size):
        b = perm[i:i + batch_size]
        logits = model(norm(x[b]))
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[b].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return float(np.mean(losses))


@torch.no_grad()
def outputs(model: nn.Module, x: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """The model's logits for every clip of x, in eval mode, ``batch_size`` clips at a time."""
    model.eval()
    return torch.cat([model(norm(x[i:i + batch_size])) for i in range(0, len(x), batch_size)])


def decode(path: Path, frames: int, size: int) -> tuple[torch.Tensor, np.ndarray, float]:
    """(T, 3, size, size) uint8 of ``frames`` uniformly spaced frames, their indices and the fps."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        all_frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    n = len(all_frames)
    index = np.floor((np.arange(frames) + 0.5) * n / frames).astype(int).clip(0, n - 1)
    clip = torch.from_numpy(np.stack([all_frames[i] for i in index])).permute(0, 3, 1, 2)  # (T, 3, H, W)
    clip = F.interpolate(clip.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return clip.round().clamp(0, 255).to(torch.uint8), index, fps


def cached(cache: Path, source: Path, build):
    """``build()``'s result, saved at ``cache`` (decoding is most of a short run) and built again when
    ``source`` is newer (the dataset was written again). Written to a temporary name and renamed, so
    runs started side by side never read a half-written file."""
    if cache.exists() and cache.stat().st_mtime >= source.stat().st_mtime:
        return torch.load(cache)
    out = build()
    tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
    torch.save(out, tmp)
    os.replace(tmp, cache)
    return out


def load_split(root: Path, split: str, frames: int, size: int, classes: list[str] | None):
    """Decoded clips (N, T, 3, S, S) uint8, per-frame targets (N, T) and the classes; cached beside
    the CSV as ``.plain_{split}_{frames}x{size}.pt`` (:func:`cached`)."""
    return cached(root / f".plain_{split}_{frames}x{size}.pt", root / f"{split}.csv",
                  lambda: _decode_segments(root, split, frames, size, classes))


def _decode_segments(root: Path, split: str, frames: int, size: int, classes: list[str] | None):
    from cnnlstm.data.annotations.segments import load_segments
    from cnnlstm.tasks.segment.segments import frame_targets

    spec = load_segments(root / f"{split}.csv", root=root, classes=classes, background="background")
    classes = list(spec.classes)
    index = {c: i for i, c in enumerate(classes)}
    clips, targets = [], []
    for item in spec.videos.items:
        clip, frame_index, fps = decode(Path(item.path), frames, size)
        clips.append(clip)
        targets.append(frame_targets(spec.segments.get(item.path, []), torch.from_numpy(frame_index), fps, index))
    return torch.stack(clips), torch.stack(targets), classes  # (N, T, 3, S, S) uint8, (N, T), K


def load_labels(root: Path, split: str, frames: int, size: int, classes: list[str] | None):
    """Clip labels: decoded clips (N, T, 3, S, S) uint8, targets (N,) and the classes (sorted names);
    cached as ``.plain_cls_{split}_{frames}x{size}.pt`` (:func:`cached`)."""
    return cached(root / f".plain_cls_{split}_{frames}x{size}.pt", root / f"{split}.csv",
                  lambda: _decode_labels(root, split, frames, size, classes))


def _decode_labels(root: Path, split: str, frames: int, size: int, classes: list[str] | None):
    import csv

    with (root / f"{split}.csv").open(newline="") as f:
        rows = [(r["path"], r["label"]) for r in csv.DictReader(f)]
    classes = classes or sorted({label for _, label in rows})
    clips = torch.stack([decode(root / path, frames, size)[0] for path, _ in rows])  # (N, T, 3, S, S)
    return clips, torch.tensor([classes.index(label) for _, label in rows]), classes  # (N,) targets


class PlainClassifier(nn.Module):
    """The seed's CNNLSTM on a from-scratch ResNet-18: 2-layer LSTM (512, ``dropout`` between the
    layers; the seed's 0.5), the last layer's final hidden state, ``dropout``, linear."""

    def __init__(self, num_classes: int, dropout: float = 0.5):
        super().__init__()
        import torchvision

        self.cnn = torchvision.models.resnet18(weights=None)
        self.cnn.fc = nn.Identity()
        self.lstm = nn.LSTM(512, 512, num_layers=2, dropout=dropout, batch_first=True)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(512, num_classes))

    def forward(self, x):  # (B, T, 3, S, S) float normalised
        B, T = x.shape[:2]
        feats = self.cnn(x.flatten(0, 1)).view(B, T, -1)  # (B, T, 512)
        return self.head(self.lstm(feats)[1][0][-1])  # (B, K)


class PlainModel(nn.Module):
    def __init__(self, num_classes: int, hidden: int, bidirectional: bool):
        super().__init__()
        import torchvision

        self.cnn = torchvision.models.resnet18(weights=None)
        self.cnn.fc = nn.Identity()
        self.lstm = nn.LSTM(512, hidden, batch_first=True, bidirectional=bidirectional)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), num_classes)

    def forward(self, x):  # (B, T, 3, S, S) float normalised
        B, T = x.shape[:2]
        feats = self.cnn(x.flatten(0, 1)).view(B, T, -1)  # (B, T, 512)
        return self.head(self.lstm(feats)[0])  # (B, T, K)


def build(kind: str, num_classes: int, bidirectional: bool):
    if kind == "plain":
        return PlainModel(num_classes, 256, bidirectional)
    from cnnlstm.models import create_model

    model = create_model("seq2seq_cnn_lstm", num_classes=num_classes, backbone="resnet18", weights=None,
                        bidirectional=bidirectional)
    return LogitsOf(model)


class LogitsOf(nn.Module):
    """The package model with the plain model's surface: clips -> logits (B, T, K)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).logits


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--model", choices=("plain", "ours"), default="plain")
    p.add_argument("--task", choices=("segment", "classify"), default="segment")
    p.add_argument("--dropout", type=float, default=0.5, help="--task classify: the seed's dropout (0.5)")
    p.add_argument("--bidirectional", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "plain_loop.jsonl",
                   help="append a JSON line with the result here")
    args = p.parse_args()
    if args.task == "classify":
        return classify(args)
    from cnnlstm.tasks.segment.metrics import segmentation_report

    torch.manual_seed(args.seed)
    tick = time.perf_counter()
    xtr, ytr, classes = load_split(args.data_dir, "train", args.frames, args.size, None)
    xte, yte, _ = load_split(args.data_dir, "test", args.frames, args.size, classes)
    print(f"decoded {len(xtr)} + {len(xte)} videos in {time.perf_counter() - tick:.0f} s; classes {classes}; "
          f"train label shares {torch.bincount(ytr.flatten(), minlength=len(classes)).tolist()}", flush=True)
    model = build(args.model, len(classes), args.bidirectional)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    rows = []
    for epoch in range(args.epochs):
        tick = time.perf_counter()
        loss = train_epoch(model, opt, xtr, ytr, args.batch_size)
        probs = outputs(model, xte).softmax(-1)  # (N, T, K)
        report = segmentation_report(list(probs.argmax(-1)), list(yte), list(probs), classes)
        row = {"epoch": epoch + 1, "train_loss": round(loss, 3), "f1@50": round(report["f1@50"], 3),
               "edit": round(report["edit"], 3), "frame_accuracy": round(report["frame_accuracy"], 3),
               "epoch_s": round(time.perf_counter() - tick, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    with args.out.open("a") as f:
        f.write(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "epochs": rows}) + "\n")


def classify(args) -> None:
    """The plain loop for clip labels; test top-1 at every epoch and at the epoch val.csv picks."""
    torch.manual_seed(args.seed)
    if args.model != "plain" or args.bidirectional:
        raise SystemExit("--task classify runs the plain model only (unidirectional, as the seed's CNNLSTM)")
    tick = time.perf_counter()
    xtr, ytr, classes = load_labels(args.data_dir, "train", args.frames, args.size, None)
    splits = {name: load_labels(args.data_dir, name, args.frames, args.size, classes)[:2]
              for name in ("val", "test") if (args.data_dir / f"{name}.csv").exists()}
    print(f"decoded {len(xtr)} training videos and {', '.join(f'{len(x)} {n}' for n, (x, _) in splits.items())} "
          f"in {time.perf_counter() - tick:.0f} s; classes {classes}", flush=True)
    model = PlainClassifier(len(classes), args.dropout)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    rows = []
    for epoch in range(args.epochs):
        tick = time.perf_counter()
        row = {"epoch": epoch + 1, "train_loss": round(train_epoch(model, opt, xtr, ytr, args.batch_size), 3)}
        for name, (x, y) in splits.items():
            row[f"{name}_top1"] = round(float((outputs(model, x).argmax(-1) == y).float().mean()), 4)
        row["epoch_s"] = round(time.perf_counter() - tick, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {}
    if "test" in splits:
        summary["best_test_top1"] = max(r["test_top1"] for r in rows)
        summary["last_test_top1"] = rows[-1]["test_top1"]
        if "val" in splits:  # the first epoch with the best val top-1, as the package keeps its best model
            summary["test_top1_at_best_val"] = max(rows, key=lambda r: (r["val_top1"], -r["epoch"]))["test_top1"]
    print(json.dumps(summary), flush=True)
    with args.out.open("a") as f:
        f.write(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "epochs": rows, **summary}) + "\n")


if __name__ == "__main__":
    main()
