"""Benchmark windowed prediction on a long 720p video: ``cnnlstm predict RUN VIDEO --window 2 --stride 2
--json`` against a bare decode of the same file (the ``ffmpeg`` binary, and PyAV decoding every frame),
with the peak memory of each (the process and its children: predict decodes in a worker process).

    python benchmarks/long_video.py                            # 10 min 720p H.264, test_tiny and resnet18
    python benchmarks/long_video.py --minutes 2 --backbones test_tiny --rounds 1   # quicker

The video (25 fps, a moving textured pattern, keyframes every 2 s, B-frames) is generated once and
cached in ``--cache`` (default: $TMPDIR/cnnlstm-bench; generating 10 minutes takes a few minutes).
Runs are random-init ``cnn_lstm`` run directories (112 px, 16 frames per window). Each round runs
every command once, in turn, so a busy shared machine slows them alike: the ratios are the result.
Results go to ``benchmarks/results/long_video.md``. Not part of the tests.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.decode import machine, make_video  # noqa: E402

CLASSES = ["a", "b", "c", "d", "e"]
PYAV_DECODE = ("import av, sys\n"
               "with av.open(sys.argv[1]) as c:\n"
               "    s = c.streams.video[0]; s.thread_type = 'AUTO'\n"
               "    n = sum(1 for _ in c.decode(s))\n"
               "print(n)")


def make_run(folder: Path, backbone: str, size: int, frames: int) -> Path:
    """A run directory with random weights (what predict needs: config.yaml, labels.json, weights)."""
    from cnnlstm.config import TrainConfig, dump_yaml
    from cnnlstm.engine.checkpoint import save_weights
    from cnnlstm.run import build_model

    folder.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig(model="cnn_lstm", backbone=backbone, size=size, frames=frames)
    (folder / "config.yaml").write_text(dump_yaml(cfg))
    (folder / "labels.json").write_text(json.dumps(CLASSES))
    save_weights(build_model(cfg, len(CLASSES)), folder / "model.safetensors")
    return folder


def _tree_memory_mb(root: int) -> tuple[float, float]:
    """``(PSS summed, largest RSS)`` in MB over ``root`` and all its descendants, from /proc.

    The summed proportional set size counts pages shared between the processes (torch's libraries,
    mapped by predict and by its decoding worker) once; the largest single RSS is what
    ``/usr/bin/time -v`` reports as "Maximum resident set size"."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [p for p, parent in parents.items() if parent == pid and p not in tree]
        tree.update(children)
        frontier += children
    pss, largest = 0, 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                fields = {line.split(":")[0]: int(line.split()[1]) for line in f if line.split()[-1:] == ["kB"]}
        except (OSError, ValueError, IndexError):
            continue
        pss, largest = pss + fields.get("Pss", 0), max(largest, fields.get("Rss", 0))
    return pss / 1024, largest / 1024


def measure(cmd: list[str], stdout=subprocess.DEVNULL) -> dict:
    """Wall seconds, the peak summed PSS of the command's process tree and its largest single RSS
    (sampled every 0.2 s)."""
    peak = [0.0, 0.0]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, text=True)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            pss, rss = _tree_memory_mb(proc.pid)
            peak[:] = max(peak[0], pss), max(peak[1], rss)
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {err[-2000:]}")
    return {"seconds": seconds, "peak_pss_mb": peak[0], "peak_rss_mb": peak[1]}


def check_rows(path: Path, duration: float, window: float, stride: float) -> dict:
    """The predict output covers the video: one row per window, increasing times, last end = duration."""
    [row] = json.loads(path.read_text())
    windows = row["windows"]
    starts = [w["start"] for w in windows]
    expected = math.ceil((row["duration"] - window) / stride - 1e-9) + 1
    ok = (len(windows) == expected and starts[0] == 0 and all(b > a for a, b in zip(starts, starts[1:], strict=False))
          and abs(windows[-1]["end"] - row["duration"]) < 1e-3 and abs(row["duration"] - duration) < 0.5)
    return {"rows": len(windows), "expected": expected, "covers": ok, "duration": row["duration"],
            "segments": len(row["segments"]), "label": row["label"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10, help="length of the 720p video (default 10)")
    parser.add_argument("--backbones", default="test_tiny,resnet18", help="runs to time, comma separated")
    parser.add_argument("--size", type=int, default=112, help="the runs' input size")
    parser.add_argument("--frames", type=int, default=16, help="the runs' frames per clip (per window)")
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--stride", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=1, help="rounds of every command (median reported)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "cnnlstm-bench")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "long_video.md")
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    seconds = int(args.minutes * 60)
    print(f"video: {seconds} s of 1280x720 H.264 in {args.cache} (generated once)", flush=True)
    video = make_video(args.cache / f"long_{seconds}s_720p.mp4", seconds, 1280, 720, gop_s=2.0)
    work = Path(tempfile.mkdtemp(prefix="cnnlstm-long-"))
    ffmpeg = shutil.which("ffmpeg") or "ffmpeg"
    commands = {"ffmpeg decode": [ffmpeg, "-v", "error", "-i", str(video), "-f", "null", "-"],
                "PyAV decode": [sys.executable, "-c", PYAV_DECODE, str(video)]}
    env_python = [sys.executable, "-m", "cnnlstm.cli", "predict"]
    for backbone in args.backbones.split(","):
        run = make_run(work / backbone, backbone, args.size, args.frames)
        commands[f"predict {backbone}"] = [*env_python, str(run), str(video), "--window", str(args.window),
                                           "--stride", str(args.stride), "--json"]
    os.environ["PYTHONPATH"] = f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    load_before = os.getloadavg()
    results: dict[str, list[dict]] = {name: [] for name in commands}
    checks = {}
    for r in range(args.rounds):
        for name, cmd in commands.items():
            out = work / f"{name.replace(' ', '_')}.json"
            with open(out, "w") as f:
                results[name].append(measure(cmd, stdout=f))
            if name.startswith("predict"):
                checks[name] = check_rows(out, seconds, args.window, args.stride)
            print(f"round {r + 1} {name}: {results[name][-1]}", flush=True)
    write_report(args, results, checks, load_before, os.getloadavg())
    shutil.rmtree(work, ignore_errors=True)


def write_report(args, results: dict, checks: dict, load_before, load_after) -> None:
    med = {name: statistics.median(r["seconds"] for r in rows) for name, rows in results.items()}
    base = med["ffmpeg decode"]
    lines = [
        "# Windowed prediction on a long video (benchmarks/long_video.py)", "",
        f"Machine: {machine()}; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after "
        f"(other jobs ran alongside: absolute times drift, the ratios from the same rounds are the result).", "",
        f"Video: {args.minutes:g} min, 1280x720 H.264 (yuv420p, 25 fps, keyframes every 2 s, B-frames). "
        f"`cnnlstm predict RUN VIDEO --window {args.window:g} --stride {args.stride:g} --json` with random-init "
        f"`cnn_lstm` runs ({args.size} px, {args.frames} frames per window), each command run once per round, "
        f"{args.rounds} round(s), median wall time. Memory, sampled every 0.2 s over the command and its children "
        "(predict decodes in a worker process): the peak of their proportional set sizes summed (shared library "
        "pages counted once) and the largest single resident set (what `/usr/bin/time -v` reports).", "",
        "| command | wall s | vs ffmpeg decode | peak PSS MB (summed) | peak RSS MB (largest process) |",
        "|---|---|---|---|---|",
    ]
    for name, rows in results.items():
        pss, rss = max(r["peak_pss_mb"] for r in rows), max(r["peak_rss_mb"] for r in rows)
        lines.append(f"| {name} | {med[name]:.1f} | {med[name] / base:.2f}x | {pss:.0f} | {rss:.0f} |")
    lines += ["", "Rows (`windows`) of each prediction:", ""]
    for name, check in checks.items():
        lines.append(f"- {name}: {check['rows']} rows (expected ceil((D - W) / S) + 1 = {check['expected']}), "
                     f"covering 0 to {check['duration']:.2f} s in increasing order: {check['covers']}; "
                     f"{check['segments']} merged segment(s), video label {check['label']!r}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
