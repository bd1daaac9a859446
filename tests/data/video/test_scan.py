"""cnnlstm scan and the isolated worker pool behind it."""
from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pytest

from cnnlstm.cli import main
from cnnlstm.data.video.encode import write_video
from cnnlstm.data.video.errors import DecodeCrashError, DecodeTimeoutError
from cnnlstm.data.video.pool import IsolatedPool
from cnnlstm.data.video.scan import FIELDS, scan
from cnnlstm.data.video.types import Limits


def _echo(x):
    return os.getpid(), x


def _sleep(seconds):
    time.sleep(seconds)
    return seconds


def _segfault(_):
    os.kill(os.getpid(), signal.SIGSEGV)


def _raise(message):
    raise ValueError(message)


def test_pool_reuses_workers_and_isolates_hangs_crashes_and_errors():
    with IsolatedPool(2, timeout=30) as pool:
        results = dict(pool.map_unordered(_echo, ((i, f"item{i}", (i,)) for i in range(6))))
        assert sorted(v for _, v in results.values()) == list(range(6))
        assert len({pid for pid, _ in results.values()}) <= 2  # long-lived workers, not one per task
    with IsolatedPool(1, timeout=20) as pool:  # warm the worker up before timing a hang
        list(pool.map_unordered(_echo, [(0, "warm", (0,))]))
        pool.timeout = 1.0
        out = dict(pool.map_unordered(_sleep, [("hang", "slow.mp4", (30,))]))
        assert isinstance(out["hang"], DecodeTimeoutError) and out["hang"].path == "slow.mp4"
        pool.timeout = 30
        out = dict(pool.map_unordered(_segfault, [("crash", "evil.mp4", (0,))]))
        assert isinstance(out["crash"], DecodeCrashError) and "SIGSEGV" in str(out["crash"])
        out = dict(pool.map_unordered(_raise, [("err", "x", ("boom",))]))
        assert isinstance(out["err"], ValueError) and "boom" in str(out["err"])
        assert dict(pool.map_unordered(_echo, [("after", "x", (7,))]))["after"][1] == 7  # the pool recovered


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("scan")
    rng = np.random.default_rng(0)
    for cls, n in (("jump", 9), ("run", 13)):
        (root / cls).mkdir()
        write_video(root / cls / "a.mp4", rng.integers(0, 255, (n, 32, 48, 3), dtype=np.uint8), fps=10)
    good = (root / "run" / "a.mp4").read_bytes()
    (root / "run" / "truncated.mp4").write_bytes(good[: len(good) // 3])
    (root / "jump" / "garbage.avi").write_bytes(os.urandom(2000))
    (root / "jump" / "empty.mkv").write_bytes(b"")
    return root


def test_scan_reports_every_video_with_the_documented_fields(dataset, capsys):
    assert main(["scan", str(dataset), "--json", "--workers", "2"]) == 1  # 1: some files are bad
    report = json.loads(capsys.readouterr().out)
    by_name = {os.path.relpath(v["path"], dataset): v for v in report["videos"]}
    assert set(by_name) == {"jump/a.mp4", "run/a.mp4", "run/truncated.mp4", "jump/garbage.avi", "jump/empty.mkv"}
    assert all(set(FIELDS) <= set(v) for v in report["videos"])
    good = by_name["run/a.mp4"]
    assert good["ok"] and good["frames"] == 13 and (good["width"], good["height"]) == (48, 32)
    assert good["label"] == "run" and good["codec"] == "h264" and good["fps"] == pytest.approx(10, rel=0.01)
    assert by_name["jump/a.mp4"]["frames"] == 9
    for bad in ("jump/garbage.avi", "jump/empty.mkv"):
        assert not by_name[bad]["ok"] and by_name[bad]["error"]
    assert by_name["jump/empty.mkv"]["error"].startswith("open")
    summary = report["summary"]
    assert summary["videos"] == 5 and summary["labels"] == {"jump": 3, "run": 2}
    assert summary["ok"] + summary["bad"] == 5 and summary["ok"] >= 2


def test_scan_table_lists_bad_files(dataset, capsys):
    assert main(["scan", str(dataset), "--fast"]) == 1
    out = capsys.readouterr().out
    assert "bad files:" in out and "garbage.avi" in out and "codecs: h264" in out


def test_scan_applies_limits_at_probe_time(dataset):
    report = scan(dataset / "run", limits=Limits(max_pixels=100))
    assert all(not v["ok"] and v["error"].startswith(("limit", "corrupt", "empty")) for v in report.videos)
    assert any(v["error"].startswith("limit") for v in report.videos)
