"""The ``cnnlstm`` command: thin wrappers over the Python API.

Each command module registers its own subcommands with ``add_parser(subparsers)`` and a
``cmd_<name>(args) -> int`` function; the parser is built from :data:`COMMANDS`, in the order
``cnnlstm --help`` lists them. Errors take one path, :func:`cnnlstm.errors.report`: a mistake
the user can fix is one short ``cnnlstm <command>: error: ...`` (exit 2), a bug shows its
traceback (exit 3); ``--debug`` shows every traceback.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import sys
import warnings

from . import __version__
from .errors import EXIT_CODES_HELP, EXIT_INTERRUPTED, debug_from_env, report

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


class Parser(argparse.ArgumentParser):
    """Usage mistakes (a missing argument, an unknown option) as one error line and where to look,
    not the full usage text (``cnnlstm train``'s runs to 25 lines); exit 2 like every mistake."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\nsee `{self.prog} --help`\n")

    def parse_args(self, args=None, namespace=None):
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:  # an unknown option: suggest the command's closest ones
            command = self._subparsers._group_actions[0].choices.get(getattr(parsed, "command", None), self) \
                if self._subparsers else self
            known = [s for action in command._actions for s in action.option_strings if s.startswith("--")]
            close = [m for a in extra if a.startswith("--") for m in difflib.get_close_matches(a.split("=")[0], known)]
            hint = f" (did you mean {', '.join(dict.fromkeys(close))}?)" if close else ""
            command.error(f"unrecognized arguments: {' '.join(extra)}{hint}")
        return parsed


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="cnnlstm",
        description="Video understanding with CNN-LSTM models: classify, segment and caption real videos.",
        epilog=EXIT_CODES_HELP,
    )
    parser.add_argument("--version", action="version", version=f"cnnlstm {__version__}")
    parser.add_argument("--debug", action="store_true", default=False,
                        help="show the Python traceback of every error (also: CNNLSTM_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMANDS:
        importlib.import_module(name).add_parser(sub)
    for command in sub.choices.values():  # `cnnlstm train ... --debug` works too
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show the Python traceback of every error (also: CNNLSTM_DEBUG=1)")
        command.epilog = command.epilog or EXIT_CODES_HELP
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings on the command line: one ``warning: ...`` line, not the source line that raised them."""
    print(f"warning: {message}", file=file or sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return int(args.func(args) or 0)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except BrokenPipeError:  # e.g. `cnnlstm scan DATA --json | head`
            sys.stderr.close()
            return 0
        except Exception as exc:  # noqa: BLE001 - the one error path of the CLI (cnnlstm.errors)
            return report(exc, f"cnnlstm {args.command}", debug=args.debug or debug_from_env())


if __name__ == "__main__":
    sys.exit(main())
