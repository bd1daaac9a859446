"""check_config: a training config's mistakes are found before any data, model or download, and each
error names the key, its option, what was received and what was expected."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from cnnlstm.config import TrainConfig, resolve_defaults
from cnnlstm.preflight import check_config, check_values
from cnnlstm.train import fit


def cfg_for(tmp_path, **values) -> TrainConfig:
    (tmp_path / "data").mkdir(exist_ok=True)
    return resolve_defaults(TrainConfig(data=str(tmp_path / "data"), out=str(tmp_path / "out"), backbone="test_tiny",
                                        **values))


@pytest.mark.parametrize("key, value, words", [
    ("lr", -1.0, ["--lr", "> 0", "-1.0"]),
    ("lr", float("nan"), ["--lr", "finite", "nan"]),
    ("weight_decay", -0.1, ["--weight-decay", ">= 0"]),
    ("warmup_epochs", float("inf"), ["--warmup-epochs", "finite", "inf"]),
    ("dropout", 1.0, ["--dropout", "[0, 1)", "1.0"]),
    ("hidden_size", 0, ["--hidden-size", ">= 1", "0"]),
    ("num_layers", -2, ["--num-layers", "-2"]),
    ("stride", 0, ["--stride", ">= 1"]),
    ("workers", -1, ["--workers", ">= 0"]),
    ("log_every", 0, ["--log-every", ">= 1"]),
    ("fps", 0.0, ["--fps", "> 0"]),
    ("phase_epochs", [2, 0, 1], ["--phase-epochs", "[2, 0, 1]"]),
])
def test_values_out_of_range_name_the_key_and_what_is_expected(tmp_path, key, value, words):
    with pytest.raises(ValueError) as caught:
        check_values(dataclasses.replace(cfg_for(tmp_path), **{key: value}))
    assert all(w in str(caught.value) for w in words), str(caught.value)


def test_the_fps_sampler_needs_fps(tmp_path):
    with pytest.raises(ValueError, match="--sampler fps .* set --fps"):
        check_values(cfg_for(tmp_path, sampler="fps"))
    check_values(cfg_for(tmp_path, sampler="fps", fps=5.0))


@pytest.mark.parametrize("change, error, words", [
    ({"model": "cnn_lsmt"}, ValueError, ["'cnn_lsmt'", "'cnn_lstm'"]),
    ({"backbone": "resnet19"}, ValueError, ["'resnet19'", "'resnet18'"]),
    ({"weights": "no/such/file.pth"}, FileNotFoundError, ["--weights no/such/file.pth", "imagenet", "kinetics"]),
    ({"device": "gpu"}, ValueError, ["--device 'gpu'", "cuda"]),
    ({"data": ""}, ValueError, ["--data SPEC is required"]),
    ({"data": "no/such/folder"}, FileNotFoundError, ["--data no/such/folder does not exist"]),
    ({"val": "no/such/val.csv"}, FileNotFoundError, ["--val no/such/val.csv does not exist"]),
    ({"root": "no/such/root"}, FileNotFoundError, ["--root no/such/root is not a folder"]),
])
def test_names_and_paths_are_checked(tmp_path, change, error, words):
    with pytest.raises(error) as caught:
        check_config(dataclasses.replace(cfg_for(tmp_path), **change))
    assert all(w in str(caught.value) for w in words), str(caught.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_says_use_cpu(tmp_path):
    with pytest.raises(ValueError, match="CUDA is not available.*--device cpu"):
        check_config(cfg_for(tmp_path, device="cuda"))


def test_a_good_config_passes_unchanged(tmp_path):
    cfg = cfg_for(tmp_path, sampler="fps", fps=10.0, weights="none")
    assert check_config(cfg) is cfg


def test_fit_fails_on_a_typo_before_reading_the_data(tmp_path):
    """The data folder is empty (reading it would fail with "no videos found"): the model typo is found first."""
    with pytest.raises(ValueError, match="Unknown model 'cnn_lsmt'"):
        fit(cfg_for(tmp_path, model="cnn_lsmt"), log=lambda *_: None)
    with pytest.raises(ValueError, match="no videos found"):
        fit(cfg_for(tmp_path), log=lambda *_: None)
    assert not (tmp_path / "out").exists(), "nothing is written before the data is read"
