"""Feature cache against the work it replaces, on the same clips, in one run.

    python benchmarks/cache_speed.py                  # 144 clips, resnet18 at 112 px, 16 frames (~5-10 min)
    python benchmarks/cache_speed.py --clips 48       # quicker

Four epochs of a frozen backbone + 2-layer LSTM (hidden 512), batch 8, the precision training
picks (``pick_precision("auto")``: bf16 autocast on CPUs with native bf16, else fp32),
channels_last, ``--workers`` decoding workers:

- plain epoch: what ``cnnlstm train --cache off`` does while the backbone is frozen: decode, the
  CNN (frozen: eval BatchNorm, no gradients), the LSTM and head forward, backward, AdamW;
- extraction epoch: ``extract_features`` on the same clips (decode, the same CNN work, the writes);
- cached epoch (median of ``--epochs``): ``CachedFeatureDataset`` through the loader the training
  loop builds for it, then the LSTM and head forward, backward, AdamW;
- bare temporal work: the same batches as the cached epoch, already in memory: only the LSTM and
  head forward, backward, AdamW (what a cached epoch cannot avoid).

Targets (issue 14): extraction <= plain; cached <= 1.15 x bare. Writes benchmarks/results/cache_speed.md.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.decode import machine  # noqa: E402
from cnnlstm import create_model  # noqa: E402
from cnnlstm.data.annotations.formats import VideoList  # noqa: E402
from cnnlstm.data.datasets import VideoDataset, make_loader  # noqa: E402
from cnnlstm.data.features import CachedFeatureDataset, FeatureCache, extract_features  # noqa: E402
from cnnlstm.data.sampling import SamplerConfig  # noqa: E402
from cnnlstm.data.synth import SynthConfig, synthesize  # noqa: E402
from cnnlstm.data.transforms import DataConfig, eval_transform  # noqa: E402
from cnnlstm.engine.optim import pick_precision  # noqa: E402


def step(model, optimizer, clips, lengths, labels, amp) -> None:
    with amp():
        logits = model(clips, lengths).logits  # (B, K)
        loss = F.cross_entropy(logits.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def epoch(model, optimizer, batches, amp) -> float:
    start = time.perf_counter()
    for batch in batches:
        step(model, optimizer, batch.clips, batch.lengths, batch.labels, amp)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=144)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=5, help="cached and bare epochs (median reported)")
    parser.add_argument("--workers", type=int, default=2, help="decoding workers (cnnlstm train's default)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--work", default=None, help="folder for videos and cache (default: a temp folder)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cache_speed.md")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.work or tempfile.mkdtemp(prefix="cache_speed-"))
    try:
        run(args, work, argv if argv is not None else sys.argv[1:])
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def run(args, work: Path, argv) -> None:
    load_before, total = os.getloadavg()[0], time.perf_counter()
    size = args.size + args.size % 2
    synth = synthesize(work / "videos", SynthConfig(videos_per_class=math.ceil(args.clips / 6), test_per_class=0,
                                                    size=size, min_frames=max(24, args.frames),
                                                    max_frames=max(48, args.frames)))
    full = VideoDataset(synth["train_csv"])
    videos = VideoList(full.videos.items[: args.clips], full.classes, full.videos.source)
    torch.manual_seed(0)
    model = create_model("cnn_lstm", num_classes=len(videos.classes), backbone=args.backbone, hidden_size=512,
                         num_layers=2)
    model.encoder.freeze()
    model.encoder.to(memory_format=torch.channels_last)
    model.train()
    precision = pick_precision(args.precision, torch.device("cpu"))
    dtype = {"bf16": torch.bfloat16}.get(precision)
    amp = (lambda: torch.autocast("cpu", dtype=dtype)) if dtype else nullcontext
    cfg = DataConfig.from_backbone(model.encoder.data_config, input_size=args.size)
    dataset = VideoDataset(videos, sampler=SamplerConfig(num_frames=args.frames), transform=eval_transform(cfg))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    warm = next(iter(make_loader(dataset, batch_size=2)))
    step(model, optimizer, warm.clips, warm.lengths, warm.labels, amp)  # kernels set up outside the timings

    plain = epoch(model, optimizer, make_loader(dataset, batch_size=args.batch_size, shuffle=True,
                                                 workers=args.workers), amp)
    print(f"plain epoch: {plain:.2f} s", flush=True)
    cache = FeatureCache(work / "cache", encoder=model.encoder, dataset=dataset, amp=dtype)
    stats = extract_features(cache, batch_size=args.batch_size, workers=args.workers, progress=False)
    print(f"extraction epoch: {stats['seconds']:.2f} s ({stats['frames_per_s']:.0f} frames/s)", flush=True)
    features = CachedFeatureDataset(cache)
    cached, bare = [], []
    for e in range(args.epochs + 1):
        features.set_epoch(e)
        loader = make_loader(features, batch_size=args.batch_size, shuffle=True, seed=e,
                             workers=args.workers)
        batches = list(loader)  # what the cached epoch will see, for the bare run
        cached.append(epoch(model, optimizer, make_loader(features, batch_size=args.batch_size, shuffle=True, seed=e,
                                                          workers=args.workers), amp))
        bare.append(epoch(model, optimizer, batches, amp))
        print(f"epoch {e}: cached {cached[-1]:.3f} s, bare {bare[-1]:.3f} s", flush=True)
    per_cached, per_bare = statistics.median(cached[1:]), statistics.median(bare[1:])
    best = min(cached[1:]) / min(bare[1:])  # best of N each: the least disturbed by other jobs
    rows = [("plain epoch (decode + frozen CNN + LSTM training)", plain, ""),
            ("extraction epoch (decode + frozen CNN + cache writes)", stats["seconds"],
             f"{stats['seconds'] / plain:.2f}x plain (target <= 1)"),
            (f"cached epoch (median of {args.epochs})", per_cached,
             f"{per_cached / per_bare:.2f}x bare, best of each {best:.2f}x (target <= 1.15)"),
            (f"bare temporal work, same batches in memory (median of {args.epochs})", per_bare, "")]
    lines = [
        "# Feature cache: extraction and cached epochs against the work they replace",
        "",
        f"Machine: {machine()}; torch {torch.__version__} ({torch.get_num_threads()} threads), Python "
        f"{platform.python_version()}; 1-min load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} "
        "at the end (other jobs share the machine: absolute times drift, the ratios are measured side by side).",
        f"Command: `python benchmarks/cache_speed.py {' '.join(argv)}` ({time.perf_counter() - total:.0f} s in all)",
        "",
        f"Settings: {len(videos)} clips x {args.frames} frames, {args.backbone} at {args.size} px (frozen, eval "
        f"BatchNorm, channels_last) + 2-layer LSTM (hidden 512), AdamW, batch {args.batch_size}, {args.workers} "
        f"decoding workers, precision {precision} (what training picks here).",
        "",
        "| what | seconds | ratio |",
        "|---|---|---|",
        *(f"| {name} | {sec:.3f} | {ratio} |" for name, sec, ratio in rows),
        "",
        f"Cached epochs: {', '.join(f'{s:.3f}' for s in cached)} s; bare: {', '.join(f'{s:.3f}' for s in bare)} s "
        "(the first of each is not in the median: the first cached epoch reads the files).",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
