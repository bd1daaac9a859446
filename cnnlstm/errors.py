"""Which errors are the user's to fix, and how the command line reports them: the one place.

An *expected* error is a mistake in what the user gave (a path, a value, a file, a name, a run
directory) or in their machine (a missing optional package, weights that cannot be downloaded, a
full disk). The CLI prints it as ``cnnlstm <command>: error: <message>`` on stderr and exits 2; the
message names the file or key, what was received, what was expected and what to do. Anything else
is a bug in cnnlstm: its traceback is shown, with a request to report it, and the exit code is 3.
``--debug`` (or ``CNNLSTM_DEBUG=1``) shows the traceback of expected errors too.

Expected (:func:`is_expected`):

* :class:`UserError`, and the typed errors that already say what is wrong:
  :class:`~cnnlstm.data.video.errors.VideoError` (bad videos, playlists),
  :class:`~cnnlstm._optional.MissingDependencyError` (says what to ``pip install``);
* ``OSError`` with an errno, or raised by cnnlstm: missing paths (``FileNotFoundError``, and so
  :class:`~cnnlstm.models.weights.WeightsNotFoundError` and ``WeightsDownloadError``), an existing
  run (``FileExistsError``), permissions, a full disk;
* ``ValueError`` and ``TypeError`` raised by a ``raise`` statement in cnnlstm's own code: the config,
  option and file checks, each with its message. The same types raised inside a library (numpy,
  torch) are not expected: there they mean cnnlstm passed something wrong.
"""
from __future__ import annotations

import linecache
import os
import sys
import traceback
from pathlib import Path

# exit codes of the ``cnnlstm`` command (shown by ``cnnlstm --help``)
EXIT_OK = 0
EXIT_SOME_FAILED = 1  # ran, but some inputs failed (a bad video in predict, scan or stream)
EXIT_USAGE = 2  # nothing ran: a mistake in the command, its options or its files (argparse uses 2 too)
EXIT_BUG = 3  # an unexpected error: a bug in cnnlstm
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_STOPPED = 143  # train stopped by SIGTERM after saving a resumable checkpoint

EXIT_CODES_HELP = (
    "exit codes: 0 done; 1 ran, but some inputs failed (bad videos are listed); 2 nothing ran: a mistake in the "
    "command, its options or its files (the message says which and what to do); 3 an unexpected error (a bug: "
    "please report it with the command and the traceback); 130 interrupted; 143 train stopped by SIGTERM, resumable "
    "with --resume. --debug (or CNNLSTM_DEBUG=1) shows the traceback of every error."
)
ISSUES_URL = "https://github.com/cnnlstm/cnnlstm/issues"  # placeholder until the project's tracker is public
DEBUG_ENV = "CNNLSTM_DEBUG"
_PACKAGE = str(Path(__file__).resolve().parent) + os.sep


class UserError(Exception):
    """A mistake the user can fix; the message says what was received, what was expected and what to do."""


def debug_from_env() -> bool:
    """True when ``CNNLSTM_DEBUG`` is set to 1/true/yes/on."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _innermost(exc: BaseException):
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb


def raised_by_cnnlstm(exc: BaseException) -> bool:
    """True when ``exc`` comes from a ``raise`` statement in cnnlstm's own code (a deliberate check
    with its message), not from a library or from calling a function with the wrong arguments."""
    tb = _innermost(exc)
    if tb is None:
        return False
    filename = tb.tb_frame.f_code.co_filename
    return filename.startswith(_PACKAGE) and linecache.getline(filename, tb.tb_lineno).lstrip().startswith("raise")


def expected_types() -> tuple[type[BaseException], ...]:
    from ._optional import MissingDependencyError
    from .data.video.errors import VideoError

    return UserError, VideoError, MissingDependencyError


def is_expected(exc: BaseException) -> bool:
    """True for an error the user can fix (see the module docstring), False for a bug."""
    if isinstance(exc, expected_types()):
        return True
    if isinstance(exc, OSError):
        return exc.errno is not None or raised_by_cnnlstm(exc)
    return isinstance(exc, (ValueError, TypeError)) and raised_by_cnnlstm(exc)


def message(exc: BaseException) -> str:
    """The text to show for an expected error: the exception's message, an OS error as ``path: reason``."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}"
    text = str(exc)
    if isinstance(exc, KeyError) and text.startswith(("'", '"')):
        text = text[1:-1]
    return text or type(exc).__name__


def report(exc: BaseException, prog: str, *, debug: bool = False, file=None) -> int:
    """Print ``exc`` for the command line and return the exit code: an expected error as one short
    ``<prog>: error: <message>`` (its traceback only with ``debug``) and :data:`EXIT_USAGE`; anything
    else with its traceback and a request to report it, :data:`EXIT_BUG`."""
    file = file or sys.stderr
    if is_expected(exc):
        if debug:
            traceback.print_exception(exc, file=file)
        print(f"{prog}: error: {message(exc)}", file=file, flush=True)
        return EXIT_USAGE
    traceback.print_exception(exc, file=file)
    print(f"{prog}: unexpected error ({type(exc).__name__}): this is a bug in cnnlstm; please report it with the "
          f"command and this traceback at {ISSUES_URL}", file=file, flush=True)
    return EXIT_BUG


__all__ = ["UserError", "is_expected", "raised_by_cnnlstm", "message", "report", "debug_from_env", "EXIT_OK",
           "EXIT_SOME_FAILED", "EXIT_USAGE", "EXIT_BUG", "EXIT_INTERRUPTED", "EXIT_STOPPED", "EXIT_CODES_HELP",
           "ISSUES_URL"]
