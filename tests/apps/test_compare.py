"""cnnlstm compare: FLOP counting against hand counts, and the command end to end on tiny data."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from cnnlstm import create_model
from cnnlstm.apps.compare import COLUMNS, count_flops
from cnnlstm.cli import main
from cnnlstm.data.synth import SynthConfig, synthesize


def test_flops_of_the_tiny_cnn_and_a_linear_head_match_a_hand_count():
    model = create_model("mean_pool", num_classes=3, backbone="test_tiny")
    # test_tiny: three 3x3 stride-2 convolutions, 32x32 input: 3->8 (16x16), 8->16 (8x8), 16->32 (4x4)
    macs_per_frame = 16 * 16 * 8 * 3 * 9 + 8 * 8 * 16 * 8 * 9 + 4 * 4 * 32 * 16 * 9
    frames, head = 2, (4 * 32) * 3  # test_tiny pools a 2x2 grid by default: 4 cells x 32 channels
    assert count_flops(model, torch.rand(1, frames, 3, 32, 32)) == 2 * (frames * macs_per_frame + head)


def test_lstm_flops_are_counted():
    model = create_model("cnn_lstm", num_classes=3, backbone="test_tiny", pool="avg", hidden_size=16)  # 2 layers
    T = 5
    gates = 4 * 16
    lstm = 2 * T * (gates * 32 + gates * 16) + 2 * T * (gates * 16 + gates * 16)
    assert count_flops(model, torch.rand(1, T, 32)) == lstm + 2 * 16 * 3  # from features: LSTM + head


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    synthesize(out, SynthConfig(videos_per_class=2, test_per_class=1, size=32, min_frames=8, max_frames=12))
    return out


def test_compare_end_to_end_writes_table_json_csv_and_plots(data, tmp_path, capsys):
    out = tmp_path / "cmp"
    models = ["cnn_lstm", "temporal_transformer", "r3d_18", "mean_pool"]
    code = main(["compare", "--data", str(data / "train.csv"), "--val", str(data / "test.csv"), "--out", str(out),
                 "--models", ",".join(models), "--lengths", "4,8", "--epochs", "1", "--backbone", "test_tiny",
                 "--size", "32", "--frames", "6", "--hidden-size", "16", "--batch-size", "4", "--workers", "0",
                 "--schedule", "full", "--progress", "false"])
    assert code == 0
    result = json.loads((out / "compare.json").read_text())
    rows = {r["model"]: r for r in result["rows"]}
    assert list(rows) == models
    for row in rows.values():
        assert set(COLUMNS) <= set(row)
        assert row["params"] > 0 and row["gflops_per_clip"] > 0 and row["latency_ms_per_clip"] > 0
        assert 0 <= row["top1"] <= 1 and row["peak_mem_mb"] >= 0
    assert rows["r3d_18"]["params"] > 100 * rows["cnn_lstm"]["params"]
    assert rows["cnn_lstm"]["stream_mode"] == "step"
    assert rows["temporal_transformer"]["stream_mode"].startswith("window")
    assert set(result["scaling"]["cnn_lstm"]) == {"4", "8"}  # JSON keys
    with open(out / "compare.csv") as f:
        assert [r["model"] for r in csv.DictReader(f)] == models
    table = (out / "compare.md").read_text()
    assert all(f"| {m} |" in table for m in models) and "T=8" in table
    for name in ("top1", "params", "gflops_per_clip", "train_s_per_epoch", "latency_ms_per_clip", "peak_mem_mb",
                 "stream_ms_per_frame", "scaling_latency_ms", "scaling_peak_mem_mb"):
        assert (out / "plots" / f"{name}.png").is_file(), name
    assert "| r3d_18 |" in capsys.readouterr().out
    # each model trained with its own family's recipe, written beside its row
    assert rows["temporal_transformer"]["recipe"].startswith("transformer: lr ")
    assert rows["r3d_18"]["recipe_values"]["name"] == "cnn3d" and rows["cnn_lstm"]["recipe_values"]["name"] == "lstm"
    assert rows["cnn_lstm"]["recipe_values"]["hidden_size"] == 16  # the user's value wins over the recipe
    assert "transformer: lr" in table


def test_lr_sweep_trains_three_rates_and_keeps_the_best(data, tmp_path):
    from cnnlstm.apps.compare import LR_SWEEP

    out = tmp_path / "sweep"
    code = main(["compare", "--data", str(data / "train.csv"), "--val", str(data / "test.csv"), "--out", str(out),
                 "--models", "mean_pool", "--lengths", "4", "--epochs", "1", "--backbone", "test_tiny", "--size", "32",
                 "--frames", "4", "--batch-size", "4", "--workers", "0", "--lr", "0.003", "--lr-sweep",
                 "--progress", "false"])
    assert code == 0
    [row] = json.loads((out / "compare.json").read_text())["rows"]
    tried = row["lr_sweep"]
    assert [t["lr"] for t in tried] == [float(f"{0.003 * f:.3g}") for f in LR_SWEEP]
    assert row["top1"] == max(t["top1"] for t in tried)
    assert row["recipe_values"]["lr"] in [t["lr"] for t in tried]
    assert len(list((out / "runs" / "mean_pool").glob("lr_*"))) == 3
