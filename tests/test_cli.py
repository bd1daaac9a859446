"""The command line, end to end, in-process and as the installed console script."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from cnnlstm.cli import main
from cnnlstm.config import load_saved_config


def test_help_and_models(capsys):
    assert main([]) == 0
    assert "models" in capsys.readouterr().out
    assert main(["models", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    names = {m["name"] for m in listing["models"]}
    assert {"cnn_lstm", "bi_cnn_lstm", "cnn_lstm_attention", "self_attention_lstm", "deep_cnn_lstm",
            "seq2seq_cnn_lstm", "spatial_attention_cnn_lstm", "mean_pool"} <= names
    assert "resnet50" in listing["backbones"]


def test_console_script_is_installed():
    exe = shutil.which("cnnlstm") or str(__import__("pathlib").Path(sys.executable).with_name("cnnlstm"))
    out = subprocess.run([exe, "models"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "seq2seq_cnn_lstm" in out.stdout and "per-frame" in out.stdout


def test_synth_then_demo_end_to_end(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "syn"), "--videos-per-class", "2", "--test-per-class", "1", "--size", "32",
                 "--quiet"]) == 0
    assert (tmp_path / "syn" / "train.csv").is_file() and (tmp_path / "syn" / "videos").is_dir()
    assert main(["demo", "--out", str(tmp_path / "demo"), "--epochs", "1", "--videos-per-class", "3"]) == 0
    report = json.loads((tmp_path / "demo" / "demo.json").read_text())
    assert [r["model"] for r in report["results"]] == ["cnn_lstm", "mean_pool"]
    assert all(0.0 <= r["test_top1"] <= 1.0 for r in report["results"])
    assert (tmp_path / "demo" / "runs" / "cnn_lstm" / "model.safetensors").is_file()
    for data, run in (("data", "cnn_lstm"), ("data_segment", "segment"), ("data_caption", "caption")):
        saved = load_saved_config(tmp_path / "demo" / "runs" / run / "config.yaml")  # the epoch is picked on val
        assert saved.val == str(tmp_path / "demo" / data / "val.csv") and Path(saved.val).is_file(), run
    out = capsys.readouterr().out
    assert "chance: 16.7%" in out and "report.html" in out
    assert (tmp_path / "demo" / "report.html").stat().st_size > 10_000  # plots embedded
