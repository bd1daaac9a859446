"""The run helpers: config keys a model does not take are named in a warning; the fps sampler gets its rate."""
from __future__ import annotations

import json
import warnings

import pytest
from run_factory import TINY_RUN, labelled_folder, make_run

from cnnlstm.cli import main
from cnnlstm.config import TrainConfig, resolve_defaults
from cnnlstm.run import build_model, load_run, sampler_config


def built(**values):
    cfg = resolve_defaults(TrainConfig(backbone="test_tiny", **values))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_model(cfg, 3)
    return [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


@pytest.mark.parametrize("model, values, key", [
    ("mean_pool", {"bidirectional": True}, "bidirectional"),
    ("mean_pool", {"hidden_size": 64}, "hidden_size"),
    ("r3d_18", {"hidden_size": 64}, "hidden_size"),
    ("r3d_18", {"pool": "grid"}, "pool"),
    ("cnn_lstm_attention", {"dropout": 0.4}, "dropout"),
])
def test_a_key_the_model_does_not_take_is_named_once(model, values, key):
    [message] = built(model=model, **values)
    assert f"{model} does not take {key}" in message and "ignored" in message
    assert "The config keys" in message and "takes:" in message


def test_defaults_and_recipe_values_do_not_warn():
    assert built(model="r3d_18") == []  # pool "avg" is the default; the recipe's keys apply where they fit
    assert built(model="cnn_lstm_attention") == []  # the attention recipe sets dropout, which it does not take
    assert built(model="temporal_transformer", hidden_size=32) == []  # hidden_size is its d_model
    assert built(model="cnn_lstm", bidirectional=True, hidden_size=16, num_layers=1, dropout=0.1) == []


def test_loading_a_run_does_not_warn_again(tmp_path):
    run = make_run(tmp_path / "run", model="mean_pool", bidirectional=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_run(run, device="cpu")
    assert not [w for w in caught if "does not take" in str(w.message)]


def test_the_cli_prints_the_warning_as_one_line(tmp_path, capsys):
    data = labelled_folder(tmp_path / "data")
    args = ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--model", "mean_pool", "--bidirectional",
            "--epochs", "1", "--batch-size", "4", "--cache", "off"]
    args += [x for key, value in TINY_RUN.items() for x in (f"--{key.replace('_', '-')}", str(value))]
    assert main(args) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "does not take bidirectional" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: mean_pool does not take bidirectional"), err
    assert "warning: mean_pool does not take hidden_size (--hidden-size 8)" in err  # TINY_RUN sets it


def test_the_fps_sampler_samples_at_the_configured_rate(tmp_path, capsys):
    cfg = TrainConfig(sampler="fps", fps=5.0, frames=16)
    sampler = sampler_config(cfg)
    assert sampler.target_fps == 5.0 and sampler.max_frames == 16  # at most --frames frames: memory of one clip
    data = labelled_folder(tmp_path / "data")  # 8 frames at 10 fps per video
    args = ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--sampler", "fps", "--fps", "5",
            "--epochs", "1", "--batch-size", "4", "--cache", "off"]
    args += [x for key, value in TINY_RUN.items() for x in (f"--{key.replace('_', '-')}", str(value))]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "run"), str(data / "left" / "0.mp4"), "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["frame_indices"] == [0, 2, 4, 6]  # 10 fps -> 5 fps: every 2nd frame
    assert row["frame_times"] == [0.0, 0.2, 0.4, 0.6]
