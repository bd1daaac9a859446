"""How should LSTMs handle variable-length clips? Padded + gather vs pack_padded_sequence.

Times one training step (forward + backward) of the temporal model alone, as in feature-cache
training where the CNN is skipped, for T = 16, 64, 256, with lengths spread uniformly in [T/2, T].

    python benchmarks/lstm_lengths.py [--repeats 5] [--out benchmarks/results/lstm_lengths.md]

Rows:
- unidirectional: padded (cnnlstm: exact for outputs, final state gathered at lengths-1) vs packed
- bidirectional: cnnlstm's per-direction stack (backward runs on clips reversed within their
  length: exact) vs nn.LSTM on packed sequences (exact) vs nn.LSTM padded (WRONG backward
  direction; shown only as the lower bound)
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from cnnlstm.models.temporal import LSTMEncoder


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def packed_step(lstm: nn.LSTM, x, lengths):
    out, _ = lstm(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    out.sum().backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--features", type=int, default=512)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/lstm_lengths.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    B, D, H = args.batch, args.features, args.hidden
    rows = []
    for T in (16, 64, 256):
        x = torch.randn(B, T, D, requires_grad=True)
        lengths = torch.randint(T // 2, T + 1, (B,))
        lengths[0] = T
        uni = LSTMEncoder(D, H, num_layers=2)
        bi = LSTMEncoder(D, H, num_layers=2, bidirectional=True)
        ref_bi = nn.LSTM(D, H, num_layers=2, batch_first=True, bidirectional=True)
        steps = {  # each runs now, inside this iteration (timed() calls it right away)
            "uni padded (cnnlstm)": lambda: uni(x, lengths).sequence.sum().backward(),  # noqa: B023 - called at once
            "uni packed": lambda: packed_step(uni.lstm, x, lengths),  # noqa: B023 - called at once
            "bi reversed-within-length (cnnlstm)": lambda: bi(x, lengths).sequence.sum().backward(),  # noqa: B023 - called at once
            "bi packed nn.LSTM": lambda: packed_step(ref_bi, x, lengths),  # noqa: B023 - called at once
            "bi padded nn.LSTM (wrong, lower bound)": lambda: ref_bi(x)[0].sum().backward(),  # noqa: B023 - called at once
        }
        t = {name: timed(fn, args.repeats) for name, fn in steps.items()}
        rows.append((T, t))
        print(T, {k: f"{v * 1000:.1f} ms" for k, v in t.items()})

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines = [
        "# LSTM over variable-length clips: padded vs packed",
        "",
        f"Machine: {cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} thread(s). "
        f"One training step (forward + backward) of a 2-layer LSTM, B={B}, D={D}, H={H}, "
        "lengths uniform in [T/2, T]; best of "
        f"{args.repeats}. Ratios are what matter: absolute times drift on shared machines.",
        "",
        "| T | uni padded (cnnlstm) | uni packed | packed / padded | bi cnnlstm | bi packed nn.LSTM | packed / cnnlstm "
        "| bi padded nn.LSTM (wrong) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for T, t in rows:
        up, uk = t["uni padded (cnnlstm)"], t["uni packed"]
        bc, bk = t["bi reversed-within-length (cnnlstm)"], t["bi packed nn.LSTM"]
        bw = t["bi padded nn.LSTM (wrong, lower bound)"]
        lines.append(
            f"| {T} | {up * 1e3:.1f} ms | {uk * 1e3:.1f} ms | {uk / up:.2f}x | {bc * 1e3:.1f} ms | {bk * 1e3:.1f} ms "
            f"| {bk / bc:.2f}x | {bw * 1e3:.1f} ms |"
        )
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
