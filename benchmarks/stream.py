"""Benchmark causal streaming: per-frame latency of one recurrent step vs re-running a window, and
peak memory while streaming a 1-hour video vs a 1-minute one through ``cnnlstm.deploy.stream.stream``.

    python benchmarks/stream.py                         # all of it, ~5-10 min on 2 shared cores
    python benchmarks/stream.py --frames 20 --no-rss     # latency only, quicker

(a) Latency per new frame, torch threads = 1, cnn_lstm with random weights: ``step`` (the CNN on
    the new frame + one LSTM step with the carried state) vs re-running the model on the last T
    frames (T = 16, 64: the CNN on T frames + the LSTM over T), and vs a window whose CNN features
    are cached (the LSTM over T only). Inputs are already transformed; median and p95 over
    ``--frames`` frames after a warm-up.
(b) Peak RSS growth of a fresh process streaming low-resolution H.264 videos (1 hour and 1 minute)
    with the tiny model: VmRSS of /proc/self/status sampled every 20 ms from a thread.

Videos are generated once and cached in ``--cache``. Results go to benchmarks/results/stream.md.
Not part of the tests.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.decode import machine  # noqa: E402

CLASSES = ["a", "b", "c", "d", "e"]


# --- (a) latency ----------------------------------------------------------------------------------

def latency(backbone: str, size: int, windows: tuple[int, ...], frames: int) -> list[tuple[str, float, float]]:
    """(path, median ms, p95 ms) per new frame for one backbone."""
    import torch

    from cnnlstm.models import create_model

    torch.manual_seed(0)
    model = create_model("cnn_lstm", num_classes=len(CLASSES), backbone=backbone).eval()
    video = torch.randn(max(windows) + frames + 8, 3, size, size)  # (T, C, S, S), already transformed

    def timed(fn, n: int) -> tuple[float, float]:
        for i in range(3):  # warm-up
            fn(i)
        times = []
        for i in range(n):
            start = time.perf_counter()
            fn(i)
            times.append(time.perf_counter() - start)
        return float(np.median(times)) * 1e3, float(np.percentile(times, 95)) * 1e3

    rows = []
    with torch.inference_mode():
        state = [model.init_state(1)]

        def step(i):
            _, state[0] = model.step(video[i][None], state[0])  # (1, C, S, S)

        rows.append(("step (CNN on 1 frame + 1 LSTM step)", *timed(step, frames)))
        feats = model.forward_features(video[None])[0]  # (1, T_all, D)
        for T in windows:
            rows.append((f"re-run window T={T} (CNN on {T} frames + LSTM)",
                         *timed(lambda i, T=T: model(video[None, i:i + T]), frames)))  # (1, T, C, S, S)
            rows.append((f"re-run window T={T}, CNN features cached (LSTM only)",
                         *timed(lambda i, T=T: model(feats[:, i:i + T]), frames)))
    return rows


# --- (b) memory -----------------------------------------------------------------------------------

def make_video(path: Path, seconds: float, side: int, fps: int) -> Path:
    """Low-resolution H.264 (ultrafast, keyframe every 2 s): a moving pattern with scene changes."""
    import av

    if path.exists():
        return path
    tmp = path.with_suffix(".tmp.mp4")
    y, x = np.mgrid[0:side, 0:side]
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = side
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "g": str(2 * fps)}
        image = np.empty((side, side, 3), np.uint8)
        for t in range(int(seconds * fps)):
            scene = (t // (30 * fps)) % 5  # a new "scene" every 30 s
            image[..., 0] = (x * 4 + t * 3 + scene * 40) % 256
            image[..., 1] = (y * 4 + t * 2) % 256
            image[..., 2] = (x + y + scene * 50) % 256
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.rename(path)
    return path


def make_run(folder: Path) -> Path:
    from cnnlstm.config import TrainConfig, dump_yaml
    from cnnlstm.engine.checkpoint import save_weights
    from cnnlstm.run import build_model

    folder.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig(model="cnn_lstm", backbone="test_tiny", size=32, hidden_size=16)
    (folder / "config.yaml").write_text(dump_yaml(cfg))
    (folder / "labels.json").write_text(json.dumps(CLASSES))
    save_weights(build_model(cfg, len(CLASSES)), folder / "model.safetensors")
    return folder


_CHILD = r"""
import json, sys, threading, time
sys.path.insert(0, sys.argv[3])
import torch
torch.set_num_threads(1)
from cnnlstm.run import load_run
from cnnlstm.deploy.stream import stream

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024

peak, stop = [0.0], threading.Event()
def sample():
    while not stop.wait(0.02):
        peak[0] = max(peak[0], rss_mb())

run = load_run(sys.argv[1], device="cpu")
warm = base = None
n, start = 0, time.perf_counter()
threading.Thread(target=sample, daemon=True).start()
for item in stream(run, sys.argv[2], every=int(sys.argv[4])):
    if "event" in item:
        raise SystemExit(json.dumps(item))
    n += 1
    if n == 100:  # after the first frames: allocator pools, swscale and decoder buffers are in place
        base, peak[0] = rss_mb(), rss_mb()
    last = item
seconds = time.perf_counter() - start
stop.set()
print(json.dumps(dict(frames=n, last_frame=last["frame"], last_time=last["time"], seconds=seconds,
                      base_mb=base, peak_mb=max(peak[0], rss_mb()), end_mb=rss_mb())))
"""


def stream_rss(run: Path, video: Path, every: int) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(run), str(video), str(ROOT), str(every)],
                         capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=30, help="timed frames per latency row (after 3 warm-up)")
    parser.add_argument("--windows", default="16,64", help="window lengths T to compare with stepping")
    parser.add_argument("--size", type=int, default=112, help="input side for the latency rows")
    parser.add_argument("--video-side", type=int, default=64, help="side of the memory benchmark's videos")
    parser.add_argument("--video-fps", type=int, default=8)
    parser.add_argument("--every", type=int, default=1, help="process every N-th frame in the memory runs")
    parser.add_argument("--no-rss", dest="rss", action="store_false", help="skip the memory benchmark")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "cnnlstm-bench")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "stream.md")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    windows = tuple(int(t) for t in args.windows.split(","))
    total, load_before = time.perf_counter(), os.getloadavg()[0]
    lat_rows = []
    for backbone in ("resnet18", "test_tiny"):
        start = time.perf_counter()
        for name, median, p95 in latency(backbone, args.size, windows, args.frames):
            lat_rows.append(f"| {backbone} | {name} | {median:.2f} | {p95:.2f} |")
        print(f"[latency] {backbone} done in {time.perf_counter() - start:.0f} s", flush=True)

    mem_rows = []
    if args.rss:
        args.cache.mkdir(parents=True, exist_ok=True)
        run = make_run(args.cache / "stream_run")
        for label, seconds in (("1 minute", 60), ("1 hour", 3600)):
            start = time.perf_counter()
            side, fps = args.video_side, args.video_fps
            video = make_video(args.cache / f"stream_{side}px_{fps}fps_{seconds}s.mp4", seconds, side, fps)
            made = time.perf_counter() - start
            r = stream_rss(run, video, args.every)
            mem_rows.append(
                f"| {label} ({side}x{side}, {fps} fps, {seconds * fps} frames) | {r['frames']} "
                f"| {r['last_time']:.1f} s | {r['seconds']:.1f} s | {r['frames'] / r['seconds']:.0f} "
                f"| {r['base_mb']:.1f} MB | {r['peak_mb']:.1f} MB | "
                f"{r['peak_mb'] - r['base_mb']:+.1f} MB | {r['end_mb']:.1f} MB |"
            )
            print(f"[rss] {label}: video {made:.0f} s, streamed {r['frames']} frames in {r['seconds']:.0f} s, "
                  f"peak {r['peak_mb']:.1f} MB (after 100 frames {r['base_mb']:.1f} MB)", flush=True)

    lines = [
        "# Streaming benchmark",
        "",
        f"Machine: {machine()}, so absolute times drift (ratios matter). "
        f"Python {platform.python_version()}, torch {torch.__version__}, PyAV {__import__('av').__version__}, "
        "torch threads = 1.",
        f"Command: `python benchmarks/stream.py {' '.join(argv if argv is not None else sys.argv[1:])}` "
        f"({time.perf_counter() - total:.0f} s in all; 1-minute load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores)",
        "",
        f"## (a) Latency per new frame: cnn_lstm, random weights, {args.size}x{args.size} input, batch 1",
        "",
        f"Median and p95 over {args.frames} frames after 3 warm-up frames; inputs already transformed (no decoding).",
        "",
        "| backbone | path | median ms | p95 ms |",
        "|---|---|---|---|",
        *lat_rows,
        "",
        "`step` does constant work per frame whatever the stream's length and answers for everything seen since the "
        "last reset; a sliding window costs O(T) per frame and forgets what is older than T.",
    ]
    if mem_rows:
        lines += [
            "",
            "## (b) Peak RSS while streaming with `cnnlstm.deploy.stream.stream` (tiny model, 32 px input)",
            "",
            f"Low-resolution H.264 (libx264 ultrafast, keyframe every 2 s); every {args.every} frame(s) processed. "
            "Each run in a fresh process; VmRSS sampled every 20 ms from a thread. Growth = peak minus the RSS after "
            "the first 100 frames (imports, model, decoder and allocator pools in place).",
            "",
            "| video | frames processed | last frame time | wall time | frames/s | RSS after 100 frames | peak RSS "
            "| growth | RSS at end |",
            "|---|---|---|---|---|---|---|---|---|",
            *mem_rows,
        ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
