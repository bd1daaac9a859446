"""The ``cnnlstm`` command: thin wrappers over the Python API.

Each subcommand is a function ``cmd_<name>(args) -> int``; heavy imports happen inside them so
``cnnlstm --help`` stays fast.
"""
from __future__ import annotations

import argparse
import json
import sys

from . import __version__


def cmd_models(args: argparse.Namespace) -> int:
    """List the registered models (and backbones)."""
    from .models import create_model, list_backbones, list_models
    from .models._registry import MODELS

    rows = []
    for name in list_models(args.pattern):
        model = create_model(name, num_classes=2, backbone="test_tiny")  # tiny: only for its properties
        doc = " ".join((MODELS.get(name).__doc__ or "").split()).split(". ")[0].rstrip(".")
        rows.append({
            "name": name,
            "output": "per-frame" if model.per_frame else "clip",
            "streamable": model.streamable,
            "description": doc,
        })
    if args.json:
        print(json.dumps({"models": rows, "backbones": list_backbones()}, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows) if rows else 4
    print(f"{'model':<{width}}  {'output':<9}  {'stream':<6}  description")
    for r in rows:
        print(f"{r['name']:<{width}}  {r['output']:<9}  {'yes' if r['streamable'] else 'no':<6}  {r['description']}")
    print(f"\nbackbones: {', '.join(list_backbones())}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    """Write a synthetic dataset of real video files whose classes differ only in frame order."""
    from .data.synth import SynthConfig, synthesize

    if args.task != "classify":
        print(f"cnnlstm synth: task {args.task!r} is not available yet; choose 'classify'", file=sys.stderr)
        return 2
    cfg = SynthConfig(task=args.task, videos_per_class=args.videos_per_class, test_per_class=args.test_per_class,
                      size=args.size, seed=args.seed)
    summary = synthesize(args.out, cfg, progress=not args.quiet)
    print(f"wrote {summary['train']} train and {summary['test']} test videos of {len(summary['classes'])} classes "
          f"to {summary['out']} ({summary['seconds']:.1f} s): train.csv, test.csv, videos/<class>/")
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    """Probe every video of a dataset in isolated workers; list counts, formats and bad files."""
    from .data.decode import Limits
    from .data.scan import scan

    limits = Limits(max_pixels=args.max_pixels, max_duration_s=args.max_duration)
    report = scan(args.data, root=args.root, workers=args.workers, timeout=args.timeout, limits=limits,
                  count_frames=not args.fast)
    print(json.dumps(report.to_json(), indent=2) if args.json else report.format_table())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Synthesize, train a CNN-LSTM and the order-blind baseline, evaluate, predict."""
    from .demo import DemoConfig, run_demo

    run_demo(args.out, DemoConfig(epochs=args.epochs, seed=args.seed))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnlstm",
        description="Video understanding with CNN-LSTM models: classify, segment and caption real videos.",
    )
    parser.add_argument("--version", action="version", version=f"cnnlstm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("models", help="list the registered models and backbones")
    p.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. '*attention*'")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("synth", help="write a synthetic video dataset (classes differ only in frame order)")
    p.add_argument("out", help="output folder: OUT/videos/<class>/, OUT/train.csv, OUT/test.csv")
    p.add_argument("--task", default="classify", choices=["classify", "segment", "caption"])
    p.add_argument("--videos-per-class", type=int, default=24, help="training videos per class")
    p.add_argument("--test-per-class", type=int, default=8, help="test videos per class")
    p.add_argument("--size", type=int, default=64, help="frame side in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_synth)

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

    p = sub.add_parser("demo", help="end-to-end demo on the synthetic dataset (CPU, about a minute)")
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `cnnlstm scan DATA --json | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
