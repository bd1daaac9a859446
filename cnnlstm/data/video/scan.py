"""``cnnlstm scan``: probe every video of a dataset, in isolated workers, and report.

Each video is probed (header limits first) and, by default, decoded to the end to count the
frames that really decode; each runs in a pool worker with a timeout, so a file that crashes or
hangs FFmpeg is reported as bad instead of ending the scan. A file named alone is a video or an
annotation file by its content (:func:`~cnnlstm.data.annotations.formats.load_spec`), never decoded
as text first; whatever it holds, the scan ends with a report or one error line, never a traceback.
Exit code 1 when any video is bad.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field

from ...errors import EXIT_SOME_FAILED
from ...progress import progress_bar
from ..annotations.formats import load_spec
from .decode import VideoReader, probe
from .errors import VideoError
from .pool import IsolatedPool
from .types import Limits

FIELDS = ("path", "ok", "error", "frames", "width", "height", "fps", "duration", "codec", "label")


def scan_video(path: str, limits: Limits | None, count_frames: bool) -> dict:
    """Probe one video (and decode it all when ``count_frames``); runs inside a pool worker."""
    info = probe(path, limits=limits)
    frames, corrupt = info.num_frames, info.corrupt_frames
    if count_frames:
        frames = 0
        with VideoReader(path, limits=limits, threads=1) as reader:
            for _, chunk in reader.iter_chunks(64, size=(16, 16)):  # tiny RGB: the count is what matters
                frames += chunk.shape[0]
            corrupt += reader.corrupt_frames
    return {
        "frames": frames, "width": info.width, "height": info.height, "fps": round(info.fps, 3),
        "duration": round(frames / info.fps if info.fps else info.duration, 3), "codec": info.codec,
        "container": info.container, "rotation": info.rotation, "corrupt_frames": corrupt,
    }


@dataclass
class ScanReport:
    videos: list[dict] = field(default_factory=list)

    @property
    def bad(self) -> list[dict]:
        return [v for v in self.videos if not v["ok"]]

    def summary(self) -> dict:
        good = [v for v in self.videos if v["ok"]]
        durations = sorted(v["duration"] for v in good)
        return {
            "videos": len(self.videos),
            "ok": len(good),
            "bad": len(self.videos) - len(good),
            "errors": dict(Counter(v["error"].split(":")[0] for v in self.bad)),
            "total_duration_s": round(sum(durations), 3),
            "duration_s": {"min": durations[0], "median": durations[len(durations) // 2],
                           "max": durations[-1]} if good else None,
            "frames": sum(v["frames"] for v in good),
            "codecs": dict(Counter(v["codec"] for v in good)),
            "containers": dict(Counter(v["container"] for v in good)),
            "resolutions": dict(Counter(f"{v['width']}x{v['height']}" for v in good).most_common(10)),
            "labels": dict(Counter(v["label"] for v in self.videos if v["label"] is not None)),
            "corrupt_frames": sum(v["corrupt_frames"] for v in good),
        }

    def to_json(self) -> dict:
        return {"videos": self.videos, "summary": self.summary()}

    def format_table(self) -> str:
        s = self.summary()
        lines = [f"{s['videos']} videos: {s['ok']} ok, {s['bad']} bad"]
        if s["ok"]:
            d = s["duration_s"]
            lines.append(f"duration: {s['total_duration_s']:.1f} s total, {d['min']:.1f} / {d['median']:.1f} / "
                         f"{d['max']:.1f} s min / median / max; {s['frames']} frames")
            for key in ("codecs", "containers", "resolutions", "labels"):
                if s[key]:
                    counts = sorted(s[key].items(), key=lambda kv: -kv[1])
                    lines.append(f"{key}: " + ", ".join(f"{k} {n}" for k, n in counts))
            if s["corrupt_frames"]:
                lines.append(f"concealed corruption: {s['corrupt_frames']} frames (decoded, but damaged)")
        if self.bad:
            lines.append("bad files:")
            lines += [f"  {v['path']}: {v['error']}" for v in self.bad]
        return "\n".join(lines)


def add_parser(sub) -> None:
    """Register ``cnnlstm scan`` on the CLI's subparsers."""
    p = sub.add_parser("scan", help="probe every video of a dataset; report formats, durations and bad files")
    p.add_argument("data", help="folder, CSV/list, UCF split file or Kinetics CSV")
    p.add_argument("--root", default=None, help="folder that relative video paths start from")
    p.add_argument("--json", action="store_true", help="print one JSON object: videos and summary")
    p.add_argument("--workers", type=int, default=2, help="isolated probing processes")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per video before it counts as hung")
    p.add_argument("--fast", action="store_true", help="count frames from the packet index instead of decoding")
    p.add_argument("--max-pixels", type=int, default=4096 * 2304, help="reject larger frames (width*height)")
    p.add_argument("--max-duration", type=float, default=4 * 3600, help="reject longer videos (seconds)")
    p.set_defaults(func=cmd_scan)


def cmd_scan(args) -> int:
    """Probe every video of a dataset in isolated workers; list counts, formats and bad files (exit 1 if any)."""
    if args.workers < 1 or not args.timeout > 0:
        raise ValueError(f"--workers must be >= 1 and --timeout > 0 seconds; got --workers {args.workers} --timeout "
                         f"{args.timeout}")
    limits = Limits(max_pixels=args.max_pixels, max_duration_s=args.max_duration)
    report = scan(args.data, root=args.root, workers=args.workers, timeout=args.timeout, limits=limits,
                  count_frames=not args.fast, progress=not args.json)
    print(json.dumps(report.to_json(), indent=2) if args.json else report.format_table())
    return EXIT_SOME_FAILED if report.bad else 0


def scan(spec: str | os.PathLike, *, root: str | os.PathLike | None = None, workers: int = 2,
         timeout: float = 120.0, limits: Limits | None = Limits(), count_frames: bool = True,
         progress: bool = False) -> ScanReport:
    """Scan a dataset SPEC (any format ``load_spec`` reads, or a plain folder of videos); ``progress``
    shows a bar on stderr when it is a terminal."""
    videos = load_spec(spec, root=root, check_exists=False)
    rows = {i: {"path": item.path, "label": item.label} for i, item in enumerate(videos.items)}
    tasks = ((i, item.path, (item.path, limits, count_frames)) for i, item in enumerate(videos.items))
    with IsolatedPool(max(1, min(workers, len(rows) or 1)), timeout=timeout) as pool:
        results = pool.map_unordered(scan_video, tasks)
        for i, result in progress_bar(results, enabled=progress, total=len(rows), desc="scanning", unit="video"):
            row = rows[i]
            if isinstance(result, VideoError):
                row.update(ok=False, error=f"{result.reason}: {result.message}")
            elif isinstance(result, BaseException):
                row.update(ok=False, error=f"error: {type(result).__name__}: {result}")
            else:
                row.update(ok=True, error=None, **result)
            for key in FIELDS:
                row.setdefault(key, None)
            row.setdefault("container", None)
            row.setdefault("corrupt_frames", 0)
    return ScanReport([rows[i] for i in sorted(rows)])
