"""Benchmark decoding: 16-frame uniform sampling (seek-or-forward vs always-seek vs always-forward),
full decodes (ours, PyAV alone, ``ffmpeg -benchmark``) and peak memory of streaming reads.

    python benchmarks/decode.py                      # 60 s 720p, GOPs of 8 s and 1 s, 10 min stream
    python benchmarks/decode.py --duration 20 --stream-minutes 2   # quicker

Videos are generated once and cached in ``--cache`` (default: $TMPDIR/cnnlstm-bench). Results go
to ``benchmarks/results/decode.md``. Not part of the tests.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cnnlstm.data.video import _pyav  # noqa: E402
from cnnlstm.data.video import probe as probe_module  # noqa: E402
from cnnlstm.data.video.decode import VideoReader, probe  # noqa: E402

FPS = 25
POLICIES = {"seek-or-forward": _pyav.SEEK_COST_FRAMES, "always-seek": -(10**9), "always-forward": 10**9}


def make_video(path: Path, seconds: float, width: int, height: int, gop_s: float, preset: str = "veryfast") -> Path:
    """H.264 mp4 with B-frames and a fixed keyframe spacing: a moving textured pattern."""
    import av

    if path.exists():
        return path
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 64, (height, width * 2, 3), dtype=np.uint8)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x // 4) % 192, (y // 3) % 192, ((x + y) // 6) % 192], -1).astype(np.uint8)
    tmp = path.with_suffix(".part.mp4")
    gop = str(max(1, round(gop_s * FPS)))
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": preset, "crf": "23", "g": gop, "keyint_min": gop, "sc_threshold": "0", "bf": "3"}
        for t in range(int(seconds * FPS)):
            shift = (t * 3) % width
            image = base + texture[:, shift : shift + width]  # (H, W, 3)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.rename(path)
    return path


def sample_clip(path: Path, policy: str, threads: int) -> float:
    """Seconds to open a reader (index cached) and get 16 uniformly spaced frames."""
    _pyav.SEEK_COST_FRAMES = POLICIES[policy]
    start = time.perf_counter()
    with VideoReader(path, threads=threads) as reader:
        indices = np.linspace(0, reader.info.num_frames - 1, 16).round().astype(int).tolist()
        reader.get_frames(indices)
    return time.perf_counter() - start


def full_decode(path: Path, threads: int) -> float:
    """Seconds to decode every frame to RGB uint8 tensors with VideoReader.iter_chunks."""
    start = time.perf_counter()
    with VideoReader(path, threads=threads) as reader:
        for _ in reader.iter_chunks(32):
            pass
    return time.perf_counter() - start


def pyav_decode_only(path: Path) -> float:
    """Seconds for PyAV to decode every frame (no RGB conversion): the decoder's own speed."""
    import av

    start = time.perf_counter()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for _ in container.decode(stream):
            pass
    return time.perf_counter() - start


def ffmpeg_decode(path: Path) -> float | None:
    """Real seconds reported by ``ffmpeg -benchmark`` for a full decode, or None without ffmpeg."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        return None
    out = subprocess.run(
        [exe, "-hide_banner", "-nostats", "-benchmark", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
    )
    match = re.search(r"rtime=([\d.]+)s", out.stderr)
    return float(match.group(1)) if match else None


def stream_rss(path: Path, chunk: int = 32) -> dict:
    """Resident memory of a fresh process streaming the whole video through iter_chunks.

    ``base_mb``: RSS after imports, before the reader opens; ``peak_mb``: the highest RSS sampled
    after each chunk; ``maxrss_mb``: the kernel's high-water mark (imports included).
    """
    code = (
        "import json, os, resource, sys, time; sys.path.insert(0, sys.argv[2]);"
        "from cnnlstm.data.video.decode import VideoReader\n"
        "def rss(): return int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20\n"
        "base = peak = rss(); t = time.perf_counter(); n = 0\n"
        "with VideoReader(sys.argv[1]) as r:\n"
        f"    for _, c in r.iter_chunks({chunk}): n += len(c); peak = max(peak, rss())\n"
        "print(json.dumps(dict(frames=n, seconds=time.perf_counter() - t, base_mb=base, peak_mb=peak,"
        " maxrss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path), str(ROOT)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def seek_cost_sweep(path: Path, threads: int, strides=(13, 20, 30, 40), costs=(0, 6, 12, 25, 50)) -> list[str]:
    """Markdown rows: seconds for 16 frames ``stride`` apart, per SEEK_COST_FRAMES (best of 2)."""
    rows, num = [], probe(path).num_frames
    for stride in (s for s in strides if 15 * s < num):
        first = min(100, num - 1 - 15 * stride)
        cells = []
        for cost in costs:
            _pyav.SEEK_COST_FRAMES = cost
            best = float("inf")
            for _ in range(2):
                start = time.perf_counter()
                with VideoReader(path, threads=threads) as reader:
                    reader.get_frames([first + stride * i for i in range(16)])
                best = min(best, time.perf_counter() - start)
            cells.append(f"{best:.3f}")
        rows.append(f"| {stride} | {' | '.join(cells)} |")
    _pyav.SEEK_COST_FRAMES = POLICIES["seek-or-forward"]
    header = f"| stride (frames) | {' | '.join(f'cost={c}' for c in costs)} |"
    return [header, "|---" * (len(costs) + 1) + "|", *rows]


def machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = re.search(r"Model name:\s*(.+)", lscpu).group(1).strip()
    except (OSError, AttributeError):
        model = platform.processor() or "unknown CPU"
    return f"{model}, {os.cpu_count()} logical cores visible (shared with other jobs)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60, help="seconds of 720p video (default 60)")
    parser.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT of the sampling videos")
    parser.add_argument("--gops", default="8,1", help="keyframe spacings in seconds, comma separated")
    parser.add_argument("--stream-minutes", type=float, default=10, help="long streaming read, low resolution")
    parser.add_argument("--threads", type=int, default=0, help="FFmpeg threads (0 = auto)")
    parser.add_argument("--repeat", type=int, default=3, help="clips per sampling policy (median reported)")
    parser.add_argument("--no-sweep", dest="sweep", action="store_false", help="skip the SEEK_COST_FRAMES sweep")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "cnnlstm-bench")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "decode.md")
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    width, height = (int(v) for v in args.size.split("x"))

    rows, notes = [], []
    for gop_s in (float(g) for g in args.gops.split(",")):
        tag = f"{width}x{height}, {args.duration:g} s, keyframe every {gop_s:g} s"
        start = time.perf_counter()
        path = make_video(args.cache / f"h264_{width}x{height}_{args.duration:g}s_gop{gop_s:g}.mp4", args.duration,
                          width, height, gop_s)
        print(f"[{tag}] video ready in {time.perf_counter() - start:.1f} s: {path}", flush=True)
        probe_module._CACHE.clear()
        start = time.perf_counter()
        info = probe(path)
        rows.append((tag, "probe + packet index (cold)", f"{time.perf_counter() - start:.3f} s", "", ""))
        n = info.num_frames
        for policy in POLICIES:
            runs = sorted(sample_clip(path, policy, args.threads) for _ in range(args.repeat))
            median = runs[len(runs) // 2]
            rows.append((tag, f"16 uniform frames, {policy}", f"{median:.3f} s/clip", f"{16 / median:.1f}", ""))
            print(f"  {policy:16s} {median:.3f} s/clip", flush=True)
        _pyav.SEEK_COST_FRAMES = POLICIES["seek-or-forward"]
        seconds = full_decode(path, args.threads)
        rows.append((tag, "full decode to RGB tensors (iter_chunks)", f"{seconds:.2f} s", f"{n / seconds:.1f}", ""))
        seconds = pyav_decode_only(path)
        rows.append((tag, "full decode, PyAV alone (no RGB conversion)", f"{seconds:.2f} s", f"{n / seconds:.1f}", ""))
        seconds = ffmpeg_decode(path)
        if seconds is None:
            notes.append("`ffmpeg` binary not found: the ffmpeg -benchmark rows are skipped.")
        else:
            rows.append((tag, "full decode, `ffmpeg -benchmark -f null`", f"{seconds:.2f} s", f"{n / seconds:.1f}", ""))
        print(f"  full decodes done ({n} frames)", flush=True)

    sweep = []
    if args.sweep:
        sweep = seek_cost_sweep(args.cache / f"h264_{width}x{height}_{args.duration:g}s_gop1.mp4", args.threads)
        print("  seek-cost sweep done", flush=True)

    streams = [(f"{width}x{height}, {args.duration:g} s",
                args.cache / f"h264_{width}x{height}_{args.duration:g}s_gop1.mp4")]
    for minutes in (1, args.stream_minutes):
        path = make_video(args.cache / f"h264_320x180_{minutes:g}min.mp4", minutes * 60, 320, 180, 2,
                          preset="ultrafast")
        streams.append((f"320x180, {minutes:g} min", path))
    for label, path in streams:
        if not path.exists():
            continue
        r = stream_rss(path)
        growth = r["peak_mb"] - r["base_mb"]
        rows.append(
            (label, "streaming read, iter_chunks(32)", f"{r['seconds']:.1f} s", f"{r['frames'] / r['seconds']:.0f}",
             f"{r['peak_mb']:.0f} MB = {r['base_mb']:.0f} MB after imports + {growth:.0f} MB")
        )
        print(f"  stream {label}: peak {r['peak_mb']:.0f} MB", flush=True)

    lines = [
        "# Decoding benchmark",
        "",
        f"Machine: {machine()}. Python {platform.python_version()}, "
        f"PyAV {__import__('av').__version__}, FFmpeg threads={args.threads or 'auto'}.",
        f"Command: `python benchmarks/decode.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        "",
        "| video | measurement | time | frames/s | peak RSS |",
        "|---|---|---|---|---|",
        *[f"| {' | '.join(row)} |" for row in rows],
        "",
        f"Seek-or-forward seeks when the keyframe before the next wanted frame is more than "
        f"SEEK_COST_FRAMES={POLICIES['seek-or-forward']} frames past the decoder's position. "
        "Sampling rows open a new reader per clip (the packet index is cached per process), "
        "frames/s there counts the 16 returned frames.",
        "Streaming rows: RSS sampled after every chunk in a fresh process; the growth over the "
        "post-import RSS is what decoding holds (one chunk plus FFmpeg's buffers), whatever the length.",
        *notes,
    ]
    if sweep:
        lines += [
            "",
            "## Seek threshold sweep",
            "",
            "Seconds (best of 2, new reader each) for 16 frames `stride` apart from frame 100 on the "
            "1 s keyframe video, for several `SEEK_COST_FRAMES` (0 = seek whenever a keyframe lies "
            "between the position and the target):",
            "",
            *sweep,
        ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
