"""Streaming at scale: the LSTM step, many streams in one process, start-up memory, bf16 drift.

    python benchmarks/stream_scaling.py                              # ~5-10 min on 2 shared cores
    python benchmarks/stream_scaling.py --baseline /path/to/old/tree  # start-up RSS before/after

(a) The LSTM part of a streaming step (hidden 512, 2 layers, input 512, batch 1, 1 thread):
    nn.LSTM on a T=1 sequence (what ``step`` ran before) against ``cnnlstm``'s ``lstm_step``,
    and the matrix-vector products alone (the arithmetic floor: the weights are read once).
(b) N streams in one process: ``stream(run, [video] * N)`` for N = 1, 2, 4, 8 (files: every frame),
    frames/s over all streams; and the ``cnnlstm stream`` command's wall time for 4 sources
    against 1 (issue 14's acceptance: < 2.5x).
(c) Start-up memory of ``cnnlstm stream`` with a small model, in a fresh process: peak RSS while
    streaming (VmHWM before exit) and ``ru_maxrss`` (what ``/usr/bin/time`` shows, including the
    interpreter's exit), for this tree and, with ``--baseline``, another checkout.
(d) bf16 against fp32 in ``stream(precision=...)``: per-frame probability drift and speed.

Writes benchmarks/results/stream_scaling.md. Not part of the tests.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.decode import machine  # noqa: E402
from benchmarks.stream import make_video  # noqa: E402

CLASSES = ["a", "b", "c", "d", "e"]


def timed(fn, n: int, warm: int = 10) -> float:
    """Median seconds of ``fn()`` over ``n`` calls after ``warm`` untimed ones."""
    for _ in range(warm):
        fn()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def lstm_rows(n: int) -> list[str]:
    import torch

    from cnnlstm.models.temporal import lstm_step

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(512, 512, num_layers=2, batch_first=True).eval()
    x = torch.randn(1, 1, 512)  # (B, T, D)
    state = (torch.zeros(2, 1, 512), torch.zeros(2, 1, 512))  # (L, B, H) each
    weights = [torch.cat([w_ih, w_hh], 1) for w_ih, w_hh, _, _ in lstm.all_weights]  # (4H, D + H) per layer
    v = torch.randn(1, 1024)
    flops = 2 * sum(w.numel() for w in weights)
    with torch.inference_mode():
        old = timed(lambda: lstm(x, state), max(20, n // 10))
        new = timed(lambda: lstm_step(lstm, x, state, True), n)
        floor = timed(lambda: [v @ w.t() for w in weights], n)
        out_old, _ = lstm(x, state)
        out_new, _ = lstm_step(lstm, x, state, True)
        diff = float((out_old - out_new).abs().max())
    return [f"| nn.LSTM on a T=1 sequence (oneDNN RNN primitive per call) | {old * 1e3:.3f} | {old / floor:.1f}x |",
            f"| cnnlstm `lstm_step` (lstm_cell per layer) | {new * 1e3:.3f} | {new / floor:.1f}x |",
            f"| the two matrix-vector products alone ({flops / 1e6:.1f} MFLOP, {flops * 2 / 1e6:.0f} MB of fp32 "
            f"weights read) | {floor * 1e3:.3f} | 1.0x |",
            "", f"Largest difference between the two outputs: {diff:.1e}."]


def make_run(folder: Path, backbone: str, size: int) -> Path:
    from cnnlstm.config import TrainConfig, dump_yaml
    from cnnlstm.engine.checkpoint import save_weights
    from cnnlstm.run import build_model

    if (folder / "model.safetensors").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    hidden = 64 if backbone == "test_tiny" else 512
    cfg = TrainConfig(model="cnn_lstm", backbone=backbone, size=size, hidden_size=hidden)
    (folder / "config.yaml").write_text(dump_yaml(cfg))
    (folder / "labels.json").write_text(json.dumps(CLASSES))
    save_weights(build_model(cfg, len(CLASSES)), folder / "model.safetensors")
    return folder


def scaling_rows(run: Path, video: Path, counts: list[int]) -> tuple[list[str], dict[int, float]]:
    from cnnlstm.deploy.stream import stream
    from cnnlstm.run import load_run

    loaded = load_run(run, device="cpu")
    rows, rate = [], {}
    for n in counts:
        start = time.perf_counter()
        events = [e for e in stream(loaded, [video] * n) if "event" not in e]
        seconds = time.perf_counter() - start
        rate[n] = len(events) / seconds
        rows.append(f"| {n} | {len(events)} | {seconds:.2f} | {rate[n]:.0f} | {rate[n] / n:.0f} | "
                    f"{rate[n] / rate[counts[0]]:.2f}x |")
    return rows, rate


def cli_wall(run: Path, videos: list[Path], tree: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cnnlstm.cli", "stream", str(run), *map(str, videos), "--json",
                    "--device", "cpu"], check=True, stdout=subprocess.DEVNULL, env=env, cwd=tree)
    return time.perf_counter() - start


_CHILD = r"""
import io, contextlib, sys
from cnnlstm.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(sys.argv[1:])
status = open("/proc/self/status").read()
hwm = int(status.split("VmHWM:")[1].split()[0]) / 1024
files = int(status.split("RssFile:")[1].split()[0]) / 1024
mods = [m for m in ("torchvision", "torch._dynamo", "sympy", "matplotlib") if m in sys.modules]
print("RESULT", hwm, f"{files:.0f}", ",".join(mods) or "-", code, file=sys.stderr)
"""


_LAUNCH = r"""
import os, sys
pid = os.spawnv(os.P_NOWAIT, sys.executable, [sys.executable, *sys.argv[1:]])
_, status, usage = os.wait4(pid, 0)
print("MAXRSS", usage.ru_maxrss, file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def startup_rss(run: Path, video: Path, tree: Path) -> tuple[float, float, str, str]:
    """A fresh ``cnnlstm stream``: (peak RSS while streaming MB, ru_maxrss MB, file-backed RSS MB at the end,
    heavy modules loaded).

    The child starts from a small launcher: Linux carries a process's ``ru_maxrss`` across fork and
    exec, so a child started straight from this (torch-sized) process would report this one's RSS.
    """
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", _LAUNCH, "-c", _CHILD, "stream", str(run), str(video), "--json",
                          "--device", "cpu"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
                         cwd=tree)
    line = next((x for x in out.stderr.splitlines() if x.startswith("RESULT")), None)
    maxrss = next((x for x in out.stderr.splitlines() if x.startswith("MAXRSS")), None)
    if out.returncode != 0 or line is None or maxrss is None:
        raise RuntimeError(f"stream child failed: {out.stderr[-2000:]}")
    _, hwm, files, mods, _ = line.split()
    return float(hwm), int(maxrss.split()[1]) / 1024, files, mods


def torch_rss() -> tuple[float, float]:
    """(VmHWM MB, ru_maxrss MB) of a fresh ``import torch``."""
    out = subprocess.run([sys.executable, "-c", _LAUNCH, "-c", "import torch; print(open('/proc/self/status').read()"
                          ".split('VmHWM:')[1].split()[0])"], capture_output=True, text=True, check=True)
    return int(out.stdout) / 1024, int(out.stderr.split("MAXRSS")[1].split()[0]) / 1024


def drift_rows(run: Path, video: Path) -> list[str]:
    import torch

    from cnnlstm.deploy.stream import stream
    from cnnlstm.engine.optim import cpu_has_native_bf16
    from cnnlstm.run import load_run

    loaded = load_run(run, device="cpu")
    out = {}
    for precision in ("fp32", "bf16"):
        start = time.perf_counter()
        events = [e for e in stream(loaded, video, precision=precision) if "event" not in e]
        out[precision] = (events, time.perf_counter() - start)
    (a, ta), (b, tb) = out["fp32"], out["bf16"]
    p = torch.tensor([[dict(e["topk"]).get(c, 0.0) for c in CLASSES] for e in a])
    q = torch.tensor([[dict(e["topk"]).get(c, 0.0) for c in CLASSES] for e in b])
    agree = sum(x["label"] == y["label"] for x, y in zip(a, b, strict=True)) / len(a)
    return [f"| {len(a)} | {ta:.2f} | {tb:.2f} | {ta / tb:.2f}x | {float((p - q).abs().max()):.4f} | "
            f"{float((p - q).abs().mean()):.5f} | {agree:.1%} |",
            "", f"Native bf16 on this CPU: {cpu_has_native_bf16()}. Top-3 probabilities per frame (classes outside "
            "a frame's top 3 count as 0 in both)."]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout, for start-up RSS before/after")
    parser.add_argument("--counts", default="1,2,4,8")
    parser.add_argument("--seconds", type=float, default=10, help="length of each stream's video")
    parser.add_argument("--steps", type=int, default=300, help="timed LSTM steps")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "cnnlstm-bench")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "stream_scaling.md")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    total, load_before = time.perf_counter(), os.getloadavg()[0]
    args.cache.mkdir(parents=True, exist_ok=True)
    video = make_video(args.cache / f"scaling_128px_25fps_{args.seconds:g}s.mp4", args.seconds, 128, 25)
    copies = [video] + [args.cache / f"scaling_copy{i}.mp4" for i in range(1, 4)]
    for c in copies[1:]:
        if not c.exists():
            c.write_bytes(video.read_bytes())
    tiny = make_run(args.cache / "scaling_tiny", "test_tiny", 32)
    r18 = make_run(args.cache / "scaling_r18_112", "resnet18", 112)
    r18_64 = make_run(args.cache / "scaling_r18_64", "resnet18", 64)
    counts = [int(c) for c in args.counts.split(",")]

    lstm = lstm_rows(args.steps)
    print("[lstm]", *lstm, sep="\n", flush=True)
    scale = {}
    for name, run in (("test_tiny, 32 px", tiny), ("resnet18, 112 px", r18)):
        scale[name] = scaling_rows(run, video, counts)[0]
        print(f"[scaling] {name}", *scale[name], sep="\n", flush=True)
    walls = {n: cli_wall(tiny, copies[:n], ROOT) for n in (1, 4)}
    walls_r18 = {n: cli_wall(r18, copies[:n], ROOT) for n in (1, 4)}
    print(f"[cli] tiny {walls}, resnet18 {walls_r18}", flush=True)
    rss = [("`import torch` alone", *torch_rss(), "-", "-")]
    trees = [("this tree", ROOT)] + ([("baseline", args.baseline)] if args.baseline else [])
    for label, tree in trees:
        for name, run in (("test_tiny 32 px", tiny), ("resnet18 64 px", r18_64)):
            hwm, maxrss, files, mods = startup_rss(run, video, tree)
            rss.append((f"{label}: `cnnlstm stream` {name}", hwm, maxrss, files, mods))
            print(f"[rss] {rss[-1]}", flush=True)
    drift = drift_rows(r18, video)
    print("[drift]", *drift, sep="\n", flush=True)
    lines = [
        "# Streaming at scale: LSTM step, N streams in one process, start-up memory, bf16",
        "",
        f"Machine: {machine()}; torch {torch.__version__}, Python {platform.python_version()}, 1 torch thread. "
        f"1-min load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (shared machine: "
        "absolute times drift, ratios are measured side by side).",
        f"Command: `python benchmarks/stream_scaling.py {' '.join(argv if argv is not None else sys.argv[1:])}` "
        f"({time.perf_counter() - total:.0f} s in all)",
        "",
        "## (a) The LSTM part of a streaming step: hidden 512, 2 layers, input 512, batch 1, 1 thread",
        "",
        "| path | median ms | x the matrix-vector products |",
        "|---|---|---|",
        *lstm,
        "",
        f"## (b) N streams in one process: `stream(run, [video] * N)`, {args.seconds:g} s of 128x128 H.264 at 25 fps "
        "each, every frame",
        "",
        *[x for name, rows in scale.items() for x in (f"### cnn_lstm {name}", "",
                                                       "| N | frames | seconds | frames/s (all) | frames/s per stream "
                                                       "| total vs N=1 |", "|---|---|---|---|---|---|", *rows, "")],
        "`cnnlstm stream` wall time, process start-up included (the acceptance check: 4 sources < 2.5x one):",
        "",
        "| model | 1 source | 4 sources | ratio |",
        "|---|---|---|---|",
        f"| test_tiny 32 px | {walls[1]:.1f} s | {walls[4]:.1f} s | {walls[4] / walls[1]:.2f}x |",
        f"| resnet18 112 px | {walls_r18[1]:.1f} s | {walls_r18[4]:.1f} s | {walls_r18[4] / walls_r18[1]:.2f}x |",
        "",
        "## (c) Start-up memory of `cnnlstm stream` (fresh process, one source)",
        "",
        "| what | peak RSS while running (VmHWM) | ru_maxrss (`/usr/bin/time`'s number: includes the interpreter's "
        "exit, where torch's teardown touches more pages) | file-backed part at the end (shared libraries, shared "
        "between processes) | heavy modules loaded |",
        "|---|---|---|---|---|",
        *(f"| {w} | {h:.0f} MB | {'-' if m is None else f'{m:.0f} MB'} | {f if f == '-' else f + ' MB'} | {mods} |"
          for w, h, m, f, mods in rss),
        "",
        "## (d) bf16 against fp32: `stream(precision=...)`, cnn_lstm resnet18 112 px (random init), one source",
        "",
        "| frames | fp32 s | bf16 s | speed-up | max abs prob diff | mean abs prob diff | same top-1 |",
        "|---|---|---|---|---|---|---|",
        *drift,
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
