"""``cnnlstm models``: the registered models and backbones, what each outputs and whether it streams."""
from __future__ import annotations

import argparse
import json


def model_rows(pattern: str | None = None) -> list[dict]:
    """One row per registered model matching ``pattern``: name, output kind, streamable, description."""
    from ..models import create_model, get_model_builder, list_models
    from ..tasks import task_of_model

    rows = []
    for name in list_models(pattern):
        model = create_model(name, num_classes=8, backbone="test_tiny")  # tiny: only for its properties
        doc = " ".join((get_model_builder(name).__doc__ or "").split()).split(". ")[0].rstrip(".")
        rows.append({"name": name, "output": task_of_model(model).output_kind, "streamable": model.streamable,
                     "description": doc})
    return rows


def add_parser(sub) -> None:
    """Register ``cnnlstm models`` on the CLI's subparsers."""
    p = sub.add_parser("models", help="list the registered models and backbones")
    p.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. '*attention*'")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    """List the registered models (and backbones)."""
    from ..models import list_backbones

    rows = model_rows(args.pattern)
    if args.json:
        print(json.dumps({"models": rows, "backbones": list_backbones()}, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows) if rows else 4
    print(f"{'model':<{width}}  {'output':<9}  {'stream':<6}  description")
    for r in rows:
        print(f"{r['name']:<{width}}  {r['output']:<9}  {'yes' if r['streamable'] else 'no':<6}  {r['description']}")
    print(f"\nbackbones: {', '.join(list_backbones())}")
    return 0


__all__ = ["model_rows", "add_parser"]
