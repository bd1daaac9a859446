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


if __name__ == "__main__":
    sys.exit(main())
