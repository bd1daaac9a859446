"""``cnnlstm extract``: one safetensors file per good video with the right frame count (every frame,
--fps, --window), the index CSV, bad files reported and skipped, a second run that does no work,
features equal to the run's encoder on the same frames, and 2 gloo ranks under torchrun.

Videos are written by the tests. Letters: N frames (or windows), D feature size.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import video_factory as vf
from safetensors import safe_open
from safetensors.torch import load_file

from cnnlstm.apps.extract import FramePlan, extract, make_extractor
from cnnlstm.cli import main
from cnnlstm.config import TrainConfig, dump_yaml
from cnnlstm.data.transforms import eval_transform
from cnnlstm.data.video.decode import VideoReader
from cnnlstm.engine.checkpoint import save_weights
from cnnlstm.run import build_model, load_run

D = 4 * 32  # test_tiny's features: 32 channels pooled over a 2x2 grid (its default pooling)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Two good videos (one in a subfolder, another frame rate) and a bad one with a video extension."""
    root = tmp_path_factory.mktemp("videos")
    (root / "sub").mkdir()
    vf.write(root / "a.mp4", vf.make_frames(50, 40, 48), fps=25)  # 2 s
    vf.write(root / "sub" / "b.mkv", vf.make_frames(30, 36, 44, seed=1), fps=10)  # 3 s
    (root / "broken.mp4").write_bytes(b"\x00\x01 not a video" * 64)
    (root / "notes.txt").write_text("not a video, not listed")
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(model="cnn_lstm", backbone="test_tiny", size=32, hidden_size=16, frames=4)
    (folder / "config.yaml").write_text(dump_yaml(cfg))
    (folder / "labels.json").write_text(json.dumps(["x", "y"]))
    torch.manual_seed(0)
    save_weights(build_model(cfg, 2), folder / "model.safetensors")
    return folder


def read_index(out: Path) -> dict[str, dict]:
    with open(out / "index.csv", newline="") as f:
        return {Path(row["path"]).name: row for row in csv.DictReader(f)}


def test_every_frame_then_a_second_run_does_no_work(folder, run, tmp_path, capsys):
    out = tmp_path / "feats"
    assert main(["extract", str(folder), "--out", str(out), "--run", str(run), "--json"]) == 1  # 1: a bad video
    summary = json.loads(capsys.readouterr().out)
    assert (summary["extracted"], summary["skipped"], summary["bad"]) == (2, 0, 1)
    assert summary["bad_videos"][0]["path"].endswith("broken.mp4") and "format" in summary["bad_videos"][0]["error"]
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.safetensors"))
    assert files == ["a.mp4.safetensors", "sub/b.mkv.safetensors"]
    a = load_file(out / "a.mp4.safetensors")
    assert a["features"].shape == (50, D) and a["frame_indices"].tolist() == list(range(50))
    assert torch.allclose(a["times"], torch.arange(50, dtype=torch.float64) / 25.0)
    assert load_file(out / "sub" / "b.mkv.safetensors")["features"].shape == (30, D)
    index = read_index(out)
    assert set(index) == {"a.mp4", "b.mkv", "broken.mp4"}
    assert (index["a.mp4"]["status"], index["a.mp4"]["frames"], index["a.mp4"]["dim"]) == ("ok", "50", str(D))
    assert index["b.mkv"]["features"] == "sub/b.mkv.safetensors" and float(index["b.mkv"]["fps"]) == 10
    assert index["broken.mp4"]["status"] == "error" and index["broken.mp4"]["features"] == ""

    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")}
    assert main(["extract", str(folder), "--out", str(out), "--run", str(run)]) == 1
    printed = capsys.readouterr().out
    assert "extracted 0, skipped 2 (done before), bad 1" in printed
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")} == mtimes, "nothing rewritten"
    assert read_index(out)["a.mp4"]["frames"] == "50", "the index still lists the skipped videos"

    other_key = make_extractor(run=run, plan=FramePlan(), device=torch.device("cpu"), dtype=torch.float16)
    assert other_key.done(str(folder / "a.mp4"), out / "a.mp4.safetensors") is None, "another key: extract again"
    os.utime(folder / "a.mp4")  # a touched video is extracted again
    again = extract([folder / "a.mp4"], out, run=run)
    assert (again["extracted"], again["skipped"]) == (1, 0) and out.joinpath("a.mp4.safetensors").stat().st_mtime_ns \
        != mtimes[out / "a.mp4.safetensors"]


def test_features_equal_the_run_encoder_on_the_same_frames(folder, run, tmp_path):
    extract([folder / "a.mp4"], tmp_path, run=run, fps=5)
    with safe_open(tmp_path / "a.mp4.safetensors", framework="pt") as f:
        got, indices, meta = f.get_tensor("features"), f.get_tensor("frame_indices"), f.metadata()
    assert indices.tolist() == list(range(0, 50, 5)) and got.shape == (10, D)  # 25 -> 5 fps: every 5th frame
    assert json.loads(meta["key"])["frames"] == {"fps": 5.0} and meta["video"] == str(folder / "a.mp4")
    loaded = load_run(run, device="cpu")
    with VideoReader(folder / "a.mp4") as reader:
        clip = eval_transform(loaded.data_cfg)(reader.get_frames(indices))[None]  # (1, N, C, S, S)
    with torch.inference_mode():
        expected, _ = loaded.model.encoder(clip)
    torch.testing.assert_close(got, expected[0], atol=1e-5, rtol=1e-4)  # channels_last: float rounding


def test_windows_and_a_named_backbone(folder, tmp_path):
    out = tmp_path / "w"
    result = extract([folder], out, backbone="test_tiny", size=32, window=1.0, stride=0.4, frames=3)
    assert (result["extracted"], result["bad"]) == (2, 1)
    a = load_file(out / "a.mp4.safetensors")
    assert a["features"].shape == (4, D) and a["frame_indices"].shape == (4, 3)  # ceil((2 - 1) / 0.4) + 1 windows
    assert torch.allclose(a["window_start"], torch.tensor([0.0, 0.4, 0.8, 1.0], dtype=torch.float64))  # last: ends
    assert torch.allclose(a["window_end"], torch.tensor([1.0, 1.4, 1.8, 2.0], dtype=torch.float64))  # at the end
    assert extract([folder / "a.mp4"], out, backbone="test_tiny", size=32, window=1.0, stride=0.4,
                   frames=3)["skipped"] == 1, "weights='none' is a seeded init: the same key, so a second run resumes"
    with pytest.raises(ValueError, match="fps .* or window"):
        extract([folder], out, backbone="test_tiny", fps=5, window=1.0)
    with pytest.raises(ValueError, match="exactly one feature source"):
        extract([folder], out)


@pytest.mark.slow
def test_torchrun_ranks_write_each_video_once(folder, run, tmp_path):
    out = tmp_path / "ddp"  # --run-dir: torchrun's parser would take --run for an abbreviation of its --run-path
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
                           "--nproc_per_node", "2", "-m", "cnnlstm.cli", "extract", str(folder), "--out", str(out),
                           "--run-dir", str(run), "--fps", "5", "--device", "cpu"],
                          capture_output=True, text=True, timeout=280)
    assert proc.returncode == 1, proc.stderr[-3000:]  # 1: the bad video
    said = [line.split(" ", 2) for line in proc.stdout.splitlines() if line.startswith("[rank ")]  # rank, N], path
    by_video = sorted((Path(path.split(":")[0]).name, rank.strip("]")) for _, rank, path in said)
    assert by_video == [("a.mp4", "0"), ("b.mkv", "0"), ("broken.mp4", "1")], proc.stdout  # every 2nd video, once
    assert "extracted 2, skipped 0 (done before), bad 1" in proc.stdout, "rank 0 sums both ranks"
    index = read_index(out)
    assert set(index) == {"a.mp4", "b.mkv", "broken.mp4"} and index["a.mp4"]["frames"] == "10"
    assert sorted(p.name for p in out.rglob("*.safetensors")) == ["a.mp4.safetensors", "b.mkv.safetensors"]
