"""The one atomic write: whole files or none, readable by others, no temp files left behind."""
from __future__ import annotations

import json
import os
import stat

import pytest

from cnnlstm.engine import io


def test_writes_bytes_text_and_json_creating_the_folder(tmp_path):
    assert io.atomic_write_bytes(tmp_path / "a" / "b.bin", b"\x00\x01") == tmp_path / "a" / "b.bin"
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"\x00\x01"
    io.atomic_write_text(tmp_path / "t.txt", "caf\u00e9\n")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "caf\u00e9\n"
    io.atomic_write_json(tmp_path / "j.json", {"a": [1, 2]})
    assert json.loads((tmp_path / "j.json").read_text()) == {"a": [1, 2]}
    assert stat.S_IMODE(os.stat(tmp_path / "j.json").st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "j.json", "t.txt"], "no temp file left"


def test_replaces_a_file_whole(tmp_path):
    path = tmp_path / "f.json"
    io.atomic_write_json(path, {"v": 1})
    io.atomic_write_json(path, {"v": 2})
    assert json.loads(path.read_text()) == {"v": 2}


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "f.txt"
    io.atomic_write_text(path, "old")

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(io.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        io.atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]
