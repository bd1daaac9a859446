"""The ``cnnlstm`` command: thin wrappers over the Python API.

Each subcommand is a function ``cmd_<name>(args) -> int``; heavy imports happen inside them so
``cnnlstm --help`` stays fast.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__


def cmd_models(args: argparse.Namespace) -> int:
    """List the registered models (and backbones)."""
    from .models import create_model, get_model_builder, list_backbones, list_models

    rows = []
    for name in list_models(args.pattern):
        model = create_model(name, num_classes=8, backbone="test_tiny")  # tiny: only for its properties
        doc = " ".join((get_model_builder(name).__doc__ or "").split()).split(". ")[0].rstrip(".")
        rows.append({
            "name": name,
            "output": "caption" if getattr(model, "task", None) == "caption" else
                      "per-frame" if model.per_frame else "clip",
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
    """Write a synthetic dataset of real video files for a task (see ``cnnlstm synth --help``)."""
    from .data.synth import SynthConfig, synthesize

    cfg = SynthConfig(task=args.task, videos_per_class=args.videos_per_class, test_per_class=args.test_per_class,
                      size=args.size, seed=args.seed)
    summary = synthesize(args.out, cfg, progress=not args.quiet)
    what = {"classify": f"of {len(summary.get('classes', []))} classes", "segment": "with per-frame action segments",
            "caption": f"with captions ({len(summary.get('vocabulary', []))} words)"}[args.task]
    layout = {"classify": "train.csv, test.csv (path,label), videos/<class>/", "segment": "train.csv, test.csv "
              "(video,start,end,label), videos/",
              "caption": "train.csv, test.csv (video,caption), videos/"}[args.task]
    print(f"wrote {summary['train']} train and {summary['test']} test videos {what} to {summary['out']} "
          f"({summary['seconds']:.1f} s): {layout}")
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    """Probe every video of a dataset in isolated workers; list counts, formats and bad files."""
    from .data.video.scan import scan
    from .data.video.types import Limits

    limits = Limits(max_pixels=args.max_pixels, max_duration_s=args.max_duration)
    report = scan(args.data, root=args.root, workers=args.workers, timeout=args.timeout, limits=limits,
                  count_frames=not args.fast)
    print(json.dumps(report.to_json(), indent=2) if args.json else report.format_table())
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train on a dataset SPEC; every config key is also an option (--key value or --key=value)."""
    from .config import resolve_config
    from .train import fit

    cfg = resolve_config(args.config, _config_overrides(args))
    if not cfg.data:
        print("cnnlstm train: --data SPEC is required (in the recipe or on the command line)", file=sys.stderr)
        return 2
    summary = fit(cfg)
    return 0 if not summary.get("stopped") else 143


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a trained run on a dataset SPEC."""
    from .inference import evaluate
    from .metrics import format_per_class

    report = evaluate(args.run, args.data, root=args.root, views=args.views, batch_size=args.batch_size,
                      workers=args.workers, device=args.device, plot=not args.no_plot)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    if report.get("task") == "segment":
        print(f"{report['num_videos']} videos: frame accuracy {report['frame_accuracy']:.1%}  edit "
              f"{report['edit']:.1%}  "
              f"F1@10/25/50 {report['f1@10']:.1%} / {report['f1@25']:.1%} / {report['f1@50']:.1%}  "
              f"mAP@0.5 {report['map@0.5']:.1%}")
        for path in report.get("timeline_plots", []):
            print(f"timeline: {path}")
    elif report.get("task") == "caption":
        print(f"{report['num_videos']} videos (beam {report['beam_size']}): BLEU-1 {report['bleu1']:.3f}  BLEU-4 "
              f"{report['bleu4']:.3f}  "
              f"CIDEr-D {report['cider']:.3f}")
        for row in report["captions"][:10]:
            print(f"  {Path(row['path']).name}: {row['caption']!r}   (reference: {row['references'][0]!r})")
    if report.get("task") in ("segment", "caption"):
        for item in report["skipped"]:
            print(f"skipped: {item['message']}")
        return 0
    print(f"{report['num_videos']} videos ({args.views} view(s)): top-1 {report['top1']:.1%}  "
          f"top-{report.get('top5_k', 5)} "
          f"{report['top5']:.1%}  mean class accuracy {report['mean_class_accuracy']:.1%}")
    print(format_per_class(report["per_class"]))
    if report["skipped"]:
        print(f"skipped {len(report['skipped'])} bad video(s):")
        for item in report["skipped"]:
            print(f"  {item['message']}")
    if report.get("confusion_plot"):
        print(f"confusion matrix: {report['confusion_plot']}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Label videos with a trained run; each is decoded in an isolated worker with a timeout."""
    from .inference import predict

    results = predict(args.run, args.videos, topk=args.topk, device=args.device, plot=args.plot, timeout=args.timeout)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            if "error" in r:
                print(f"{r['path']}: ERROR {r['error']}")
                continue
            if "caption" in r:
                print(f"{r['path']}: {r['caption']}")
            elif "segments" in r:
                print(f"{r['path']}: {len(r['segments'])} segment(s), mostly {r['label']}")
                for seg in r["segments"]:
                    print(f"  {seg['start']:8.2f}s - {seg['end']:8.2f}s  {seg['label']}  ({seg['score']:.1%})")
            else:
                top = ", ".join(f"{label} {score:.1%}" for label, score in r["topk"])
                print(f"{r['path']}: {r['label']} ({r['score']:.1%})   top-{len(r['topk'])}: {top}")
            if r.get("plot"):
                print(f"  plot: {r['plot']}")
    return 0 if all("error" not in r for r in results) else 1


def cmd_compare(args: argparse.Namespace) -> int:
    """Train and measure several models with one recipe; write compare.md/.csv/.json and plots."""
    from .apps.compare import compare
    from .config import resolve_config

    overrides = _config_overrides(args)
    out = overrides.pop("out", None) or "runs/compare"
    base = resolve_config(args.config, {**overrides, "out": out})
    if not base.data or not base.val:
        print("cnnlstm compare: --data SPEC and --val SPEC are required", file=sys.stderr)
        return 2
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    lengths = [int(t) for t in args.lengths.split(",")]
    result = compare(base, models, out, lengths=lengths)
    print((Path(out) / "compare.md").read_text())
    return 0 if result["rows"] else 1


def _config_overrides(args: argparse.Namespace) -> dict[str, str]:
    """The config keys given on the command line (options added by ``_add_config_options``)."""
    return {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}


def _add_config_options(p: argparse.ArgumentParser) -> None:
    """One option per TrainConfig field; values stay strings here and are typed by resolve_config."""
    import dataclasses
    import typing

    from .config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        if hints[f.name] is bool:
            p.add_argument(flag, dest="cfg_" + f.name, nargs="?", const="true", default=None,
                           metavar="BOOL", help=f"(default: {default})")
        else:
            p.add_argument(flag, dest="cfg_" + f.name, default=None, metavar=f.name.upper(),
                           help=f"(default: {default})")


def cmd_demo(args: argparse.Namespace) -> int:
    """Synthesize, train a CNN-LSTM and the order-blind baseline, evaluate, predict."""
    from .apps.demo import DemoConfig, run_demo

    epochs = {} if args.epochs is None else {"epochs": args.epochs, "dense_epochs": args.epochs}
    run_demo(args.out, DemoConfig(seed=args.seed, workers=args.workers, **epochs))
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

    p = sub.add_parser("synth", help="write a synthetic video dataset (classify: classes differ only in frame order; "
                       "segment: actions in sequence; caption: time-dependent captions)")
    p.add_argument("out", help="output folder: OUT/videos/, OUT/train.csv, OUT/test.csv")
    p.add_argument("--task", default="classify", choices=["classify", "segment", "caption"])
    p.add_argument("--videos-per-class", type=int, default=24, help="training videos per class (segment/caption: x6 "
                   "videos)")
    p.add_argument("--test-per-class", type=int, default=8, help="test videos per class (segment/caption: x6 videos)")
    p.add_argument("--size", type=int, default=64, help="frame side in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("train", help="train a model on your videos",
                       description="Train on a dataset. Config: defaults, then --config recipe.yaml, then options.")
    p.add_argument("--config", default=None, help="flat YAML recipe of config keys")
    _add_config_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("compare", help="train several models the same way and measure them side by side",
                       description="Same data, loop, budget and metrics for every model; only the model differs.")
    p.add_argument("--models", default="cnn_lstm,cnn_lstm_attention,r3d_18,temporal_transformer,mean_pool",
                   help="comma-separated registered model names")
    p.add_argument("--lengths", default="16,64,256,1024", help="clip lengths for the latency/memory scaling curves")
    p.add_argument("--config", default=None, help="flat YAML recipe of config keys")
    _add_config_options(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("evaluate", help="evaluate a trained run on a dataset")
    p.add_argument("run", help="run directory written by cnnlstm train")
    p.add_argument("--data", required=True, help="dataset SPEC (folder, CSV/list, UCF split file, Kinetics CSV); "
                   "a segments file for segment runs, a captions file for caption runs")
    p.add_argument("--root", default=None)
    p.add_argument("--views", type=int, default=1, help="temporal views per video, logits averaged")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-plot", action="store_true", help="do not draw the confusion matrix")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="label videos with a trained run")
    p.add_argument("run", help="run directory written by cnnlstm train")
    p.add_argument("videos", nargs="+", help="video files")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--json", action="store_true", help="print JSON: one object per video")
    p.add_argument("--plot", default=None, help="PNG: sampled frames with attention weights (suffix _i per video)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to decode one video")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_predict)

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

    p = sub.add_parser("demo", help="end-to-end demo: classify (cnn_lstm vs mean_pool), segment and caption synthetic "
                       "videos; evaluate, predict, report.html")
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.add_argument("--epochs", type=int, default=None, help="epochs of every run (default: 40 classify, 50 segment, "
                   "40 caption)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="decoding processes")
    p.set_defaults(func=cmd_demo)

    # live video: each module registers its own subcommand (and imports its heavy parts lazily)
    from .deploy import export, serve, stream

    for module in (stream, export, serve):
        module.add_parser(sub)
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
