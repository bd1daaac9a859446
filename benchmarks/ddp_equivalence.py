"""What equals what: 2 processes under torchrun (gloo, CPU) against 1 process, same seed and global batch.

Trains the same run twice, ``cnnlstm train`` in one process and under ``torchrun --nproc_per_node 2``,
for a few settings, and reports how far apart the final parameters are as a share of how far they
moved from their initial values: ``|two - one| / |one - initial|`` over all trained parameters
(and the largest per tensor). Float summation order alone gives a few percent (Adam's first step
is ``lr * sign(g)``, so a gradient that is float noise flips sign); anything that differs between
the runs by design (per-process BatchNorm statistics, dropout masks from the process's RNG) gives
tens of percent.

    python benchmarks/ddp_equivalence.py [--out benchmarks/results/ddp_equivalence.md] [--work DIR] [--reuse]

``--reuse`` measures the runs already in ``--work`` instead of training them again (no times then).
``--sync-bn`` needs GPUs (PyTorch's SyncBatchNorm), so it is not among these CPU settings.

Settings: ``test_tiny`` backbone (BatchNorm), ``cnn_lstm`` with 2 LSTM layers, 32 px, 6 frames,
12 training videos, global batch 4, 2 epochs (6 steps), fp32, 1 thread per process.
Letters: none (no tensors are shaped here).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

SETTINGS = {  # name: (extra train flags, what it shows)
    "full, dropout 0.5": (["--schedule", "full", "--dropout", "0.5"], "BatchNorm trains: per-process statistics"),
    "full, dropout 0": (["--schedule", "full", "--dropout", "0"], "BatchNorm trains: per-process statistics"),
    "frozen, dropout 0.5": (["--schedule", "frozen", "--dropout", "0.5"], "nothing: BatchNorm eval, dropout per row"),
    "frozen, dropout 0": (["--schedule", "frozen", "--dropout", "0"], "nothing: BatchNorm in eval mode, no dropout"),
}


def train_args(data: Path, out: Path, extra: list[str]) -> list[str]:
    return ["-m", "cnnlstm.cli", "train", "--data", str(data / "train.csv"), "--out", str(out), "--model", "cnn_lstm",
            "--backbone", "test_tiny", "--size", "32", "--frames", "6", "--hidden-size", "16", "--num-layers", "2",
            "--batch-size", "4", "--epochs", "2", "--workers", "0", "--lr", "0.01", "--threads", "1",
            "--precision", "fp32", "--cache", "off", "--progress", "false", *extra]


def run(cmd: list[str], out: Path, reuse: bool) -> float | None:
    if reuse and (out / "last.safetensors").is_file():
        return None
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def distance(one_dir: Path, two_dir: Path) -> tuple[float, float, str]:
    """(overall share, largest per-tensor share, that tensor's name) over the trained parameters."""
    from safetensors.torch import load_file

    from cnnlstm.config import load_saved_config
    from cnnlstm.run import build_model

    one, two = load_file(one_dir / "last.safetensors"), load_file(two_dir / "last.safetensors")
    cfg = load_saved_config(one_dir / "config.yaml")
    torch.manual_seed(cfg.seed)  # fit() seeds, then builds the model: the same initial weights
    model = build_model(dataclasses.replace(cfg, weights="none"), 6)
    initial = {k: v.detach() for k, v in model.state_dict().items()}
    trained = [name for name, _ in model.named_parameters() if not torch.equal(one[name], initial[name])]
    moved = torch.cat([(one[k] - initial[k]).flatten() for k in trained]).norm().item()
    apart = torch.cat([(one[k] - two[k]).flatten() for k in trained]).norm().item()
    worst = max(trained, key=lambda k: ((one[k] - two[k]).norm() / (one[k] - initial[k]).norm()).item())
    share = ((one[worst] - two[worst]).norm() / (one[worst] - initial[worst]).norm()).item()
    return apart / moved, share, worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results/ddp_equivalence.md")
    parser.add_argument("--work", default=None, help="folder for the data and runs (default: a temp folder)")
    parser.add_argument("--reuse", action="store_true", help="measure the finished runs in --work, do not retrain")
    parser.add_argument("--settings", default=";".join(SETTINGS), help="names of SETTINGS, separated by ';'")
    args = parser.parse_args()
    from cnnlstm.data.synth import SynthConfig, synthesize

    work = Path(args.work or tempfile.mkdtemp(prefix="ddp-equivalence-"))
    data = work / "data"
    if not (data / "train.csv").is_file():
        synthesize(data, SynthConfig(videos_per_class=2, test_per_class=1, size=32, min_frames=8, max_frames=12))
    rows = []
    for name in args.settings.split(";"):
        extra, meaning = SETTINGS[name]
        slug = name.replace(", ", "-").replace(" ", "")
        one, two = work / f"{slug}-1", work / f"{slug}-2"
        t1 = run([sys.executable, *train_args(data, one, extra)], one, args.reuse)
        t2 = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node",
                  "2", *train_args(data, two, extra)], two, args.reuse)
        overall, worst, tensor = distance(one, two)
        times = " / ".join("reused" if t is None else f"{t:.0f} s" for t in (t1, t2))
        rows.append(f"| {name} | {meaning} | {overall:.2g} | {worst:.2g} (`{tensor}`) | {times} |")
        print(rows[-1], flush=True)
    text = "\n".join([
        "# 2 processes (torchrun, gloo, CPU) against 1 process: how far apart the weights end",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"Python {platform.python_version()}. Written by `benchmarks/ddp_equivalence.py`: `cnn_lstm`, `test_tiny` "
        "backbone (BatchNorm), 2 LSTM layers, 12 videos, global batch 4, 2 epochs (6 steps), fp32, same seed.",
        "Share = |2 processes - 1 process| / |1 process - initial| over all trained parameters (1 = 100%: as far "
        "apart as trained). Dropout masks are drawn per global-batch row (`cnnlstm/models/dropout.py`).",
        "",
        "| setting | what differs by design | share, all parameters | largest tensor share | time 1 / 2 processes |",
        "|---|---|---|---|---|",
        *rows, ""])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
