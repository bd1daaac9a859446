"""Frozen backbone: epoch time recomputing features every epoch vs training from the feature cache.

Same model (``cnn_lstm``: frozen CNN + 2-layer LSTM, hidden 512), same data (the synthetic dataset
at the frame size asked for), same AdamW, batch 8, measured in one run:

- naive epoch (the seed's way): decode + CNN every epoch, model in train mode with the backbone's
  ``requires_grad=False`` (so BatchNorm still runs on batch statistics), autograd on, contiguous
  memory format;
- first epoch with the cache: ``extract_features`` (eval mode, ``inference_mode``,
  channels_last) + one epoch from the cached features;
- cached epochs: ``CachedFeatureDataset`` -> LSTM + head only.

    python benchmarks/train_speed.py [--clips 100 --frames 16 --size 224 --backbone resnet50 --epochs 3]

Reference (the seed's own code, 100 clips x 16 frames, ResNet-50 at 224 + 2-layer LSTM):
340 s per naive epoch, 1.15 s per cached epoch (295x).
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnlstm import create_model
from cnnlstm.data.annotations.formats import VideoList
from cnnlstm.data.datasets import VideoDataset, make_loader
from cnnlstm.data.features import CachedFeatureDataset, FeatureCache, extract_features
from cnnlstm.data.sampling import SamplerConfig
from cnnlstm.data.synth import SynthConfig, synthesize
from cnnlstm.data.transforms import DataConfig, eval_transform

REF_NAIVE, REF_CACHED = 340.0, 1.15  # seconds per epoch of 100 clips
REFERENCE = "seed's code, 100 clips x 16 frames, ResNet-50 at 224 + 2-layer LSTM: 340 s naive, 1.15 s cached (295x)"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def train_epoch(model, loader, optimizer) -> float:
    """One epoch of cross-entropy training; returns seconds (data loading included)."""
    start = time.perf_counter()
    for batch in loader:
        logits = model(batch.clips, batch.lengths).logits  # (B, K)
        loss = F.cross_entropy(logits, batch.labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def trainable(model) -> list:
    return [p for p in model.parameters() if p.requires_grad]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224, help="input crop side (the videos are written this size)")
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--epochs", type=int, default=3, help="cached epochs to time after the extracting one")
    parser.add_argument("--naive-epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--extract-batch-size", type=int, default=2,
                        help="clips per extraction batch "
                             "(on CPU, 2 x 16 frames beats 8 x 16: activations stay in cache)")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--work", default=None, help="folder for the videos and the cache (default: a temp folder)")
    parser.add_argument("--out", default="benchmarks/results/train_speed.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work or tempfile.mkdtemp(prefix="train_speed-"))
    try:
        run(args, work)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> None:
    load_before = os.getloadavg()[0]

    # data: synthetic videos at the frame size asked for, the first --clips of the train split
    start = time.perf_counter()
    size = args.size + args.size % 2
    synth = synthesize(work / "videos", SynthConfig(videos_per_class=math.ceil(args.clips / 6), test_per_class=0,
                                                    size=size, min_frames=max(24, args.frames),
                                                    max_frames=max(48, args.frames)))
    full = VideoDataset(synth["train_csv"])
    videos = VideoList(full.videos.items[: args.clips], full.classes, full.videos.source)
    print(f"wrote {synth['train']} videos at {size}px in {time.perf_counter() - start:.1f} s; using {len(videos)}")

    torch.manual_seed(0)
    model = create_model("cnn_lstm", num_classes=len(videos.classes), backbone=args.backbone, hidden_size=512,
                         num_layers=2)
    initial = copy.deepcopy(model.state_dict())
    cfg = DataConfig.from_backbone(model.encoder.data_config, input_size=args.size)
    dataset = VideoDataset(videos, sampler=SamplerConfig(num_frames=args.frames), transform=eval_transform(cfg))

    # naive: the seed's way (train mode, requires_grad=False backbone, autograd on, contiguous)
    model.encoder.requires_grad_(False)
    model.train()
    optimizer = torch.optim.AdamW(trainable(model), lr=1e-4)
    warm = dataset[0]["clip"][None]  # (1, T, C, H, W): one untimed forward, so kernel setup is not counted
    model(warm).logits.sum().backward()
    optimizer.zero_grad(set_to_none=True)
    naive = []
    for epoch in range(args.naive_epochs):
        dataset.set_epoch(epoch)
        naive.append(train_epoch(model, make_loader(dataset, batch_size=args.batch_size, shuffle=True, seed=epoch,
                                                     workers=args.workers), optimizer))
        print(f"naive epoch {epoch}: {naive[-1]:.2f} s")

    # cached: same initial weights, backbone frozen (eval BatchNorm), features extracted once
    model.load_state_dict(initial)
    model.encoder.freeze()
    model.train()
    optimizer = torch.optim.AdamW(trainable(model), lr=1e-4)
    cache = FeatureCache(work / "cache", encoder=model.encoder, dataset=dataset)
    stats = extract_features(cache, batch_size=args.extract_batch_size, workers=args.workers, progress=False)
    features = CachedFeatureDataset(cache)
    print(f"extraction: {stats['seconds']:.2f} s ({stats['frames_per_s']:.1f} frames/s), {len(stats['skipped'])} "
          "skipped")
    cached = []
    for epoch in range(args.epochs + 1):
        features.set_epoch(epoch)
        loader = make_loader(features, batch_size=args.batch_size, shuffle=True, seed=epoch, workers=args.workers)
        cached.append(train_epoch(model, loader, optimizer))
        print(f"cached epoch {epoch}: {cached[-1]:.3f} s")
    start = time.perf_counter()
    for _ in make_loader(features, batch_size=args.batch_size, workers=args.workers):
        pass
    reads = time.perf_counter() - start  # the cache's own share of a cached epoch
    first = stats["seconds"] + cached[0]
    per_cached = statistics.median(cached[1:]) if args.epochs else cached[0]
    per_naive = statistics.median(naive)

    rows = [
        ("naive epoch (seed's way)", per_naive, 1.0),
        ("feature extraction (cnnlstm)", stats["seconds"], per_naive / stats["seconds"]),
        ("first epoch with cache = extraction + 1 cached epoch", first, per_naive / first),
        (f"cached epoch (median of {max(args.epochs, 1)})", per_cached, per_naive / per_cached),
    ]
    lines = [
        "# Frozen backbone: recomputing features every epoch vs the feature cache",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores ({args.threads} torch threads), torch {torch.__version__}, "
        f"Python {platform.python_version()}; 1-min load average {load_before:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end "
        "(other jobs share the machine: absolute times drift, ratios are what matter).",
        "",
        f"Settings: {len(videos)} clips x {args.frames} frames, {args.backbone} at {args.size}x{args.size} (frozen) + "
        f"2-layer LSTM (hidden 512), AdamW, batch {args.batch_size} (extraction: {args.extract_batch_size} clips), "
        f"{args.workers} loader workers; synthetic videos "
        f"written at {size}x{size}. Naive = the seed's way (train mode, requires_grad=False, autograd on, contiguous); "
        "extraction = eval mode, inference_mode, channels_last, float32 cache.",
        "",
        "| what | seconds | naive / this |",
        "|---|---|---|",
        *(f"| {name} | {sec:.3f} | {ratio:.1f}x |" for name, sec, ratio in rows),
        "",
        f"Naive epochs: {', '.join(f'{s:.2f}' for s in naive)} s. Cached epochs: "
        f"{', '.join(f'{s:.3f}' for s in cached)} s (the first follows extraction). Reading one epoch of "
        f"features from the cache alone (no model): {reads * 1000:.1f} ms; the rest of a cached epoch is the LSTM "
        "and head's forward, backward and AdamW step.",
        "",
        f"Per clip: naive {per_naive / len(videos):.3f} s, first epoch {first / len(videos):.3f} s, cached "
        f"{per_cached / len(videos) * 1000:.2f} ms. Reference per clip: {REF_NAIVE / 100:.3f} s naive, "
        f"{REF_CACHED / 100 * 1000:.2f} ms cached, so the seed's naive epoch / this cached epoch, per clip, is "
        f"{(REF_NAIVE / 100) / (per_cached / len(videos)):.0f}x.",
        "",
        f"Reference: {REFERENCE}.",
        "",
        f"Command: `python benchmarks/train_speed.py --clips {args.clips} --frames {args.frames} --size {args.size} "
        f"--backbone {args.backbone} --epochs {args.epochs} --threads {args.threads}`",
        "",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
