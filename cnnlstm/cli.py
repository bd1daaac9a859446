"""The ``cnnlstm`` command: thin wrappers over the Python API.

Each command module registers its own subcommands with ``add_parser(subparsers)`` and a
``cmd_<name>(args) -> int`` function; the parser is built from :data:`COMMANDS`, in the order
``cnnlstm --help`` lists them.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

# the modules that register subcommands, in help order
COMMANDS = (
    "cnnlstm.apps.models",  # models
    "cnnlstm.data.synth",  # synth
    "cnnlstm.train",  # train
    "cnnlstm.apps.compare",  # compare
    "cnnlstm.inference",  # evaluate, predict
    "cnnlstm.apps.extract",  # extract
    "cnnlstm.data.video.scan",  # scan
    "cnnlstm.apps.demo",  # demo
    "cnnlstm.deploy.stream",  # stream
    "cnnlstm.deploy.export",  # export
    "cnnlstm.deploy.serve",  # serve
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnlstm",
        description="Video understanding with CNN-LSTM models: classify, segment and caption real videos.",
    )
    parser.add_argument("--version", action="version", version=f"cnnlstm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).add_parser(sub)
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
