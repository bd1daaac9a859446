"""Progress bars are drawn only on a terminal: a log file gets none (no carriage-return frames)."""
from __future__ import annotations

import fcntl
import io
import os
import pty
import select
import struct
import sys
import termios

from cnnlstm.progress import on_terminal, progress_bar


def test_no_bar_when_stderr_is_a_file(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    assert not on_terminal()
    assert list(progress_bar(range(5), desc="x")) == list(range(5))
    assert log.getvalue() == ""


def test_a_bar_on_a_terminal_unless_disabled(monkeypatch):
    main_fd, tty_fd = pty.openpty()
    fcntl.ioctl(tty_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # a terminal 80 columns wide
    try:
        terminal = os.fdopen(tty_fd, "w", buffering=1)
        monkeypatch.setattr(sys, "stderr", terminal)
        assert on_terminal()
        assert not progress_bar(range(3), desc="x").disable
        assert progress_bar(range(3), desc="x", enabled=False).disable
        for _ in progress_bar(range(3), desc="shown"):
            pass
        terminal.flush()
        seen = b""
        while select.select([main_fd], [], [], 0.5)[0]:
            seen += os.read(main_fd, 4096)
        assert b"shown" in seen and b"\r" in seen
        terminal.close()
    finally:
        os.close(main_fd)
