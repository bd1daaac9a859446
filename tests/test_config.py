"""Config resolution: defaults < the model family's recipe < --config YAML < flags."""
from __future__ import annotations

import dataclasses

import pytest

from cnnlstm.config import (
    GENERIC_RECIPE,
    RECIPE_KEYS,
    TSN_MIN_CROP_SCALE,
    TrainConfig,
    read_recipe,
    resolve_config,
    resolve_defaults,
)
from cnnlstm.models import list_models, model_recipe
from cnnlstm.tasks import get_task, list_tasks


@pytest.mark.parametrize("task", list_tasks())
def test_the_default_model_follows_the_task(task):
    cfg = resolve_defaults(TrainConfig(task=task))
    assert cfg.model == get_task(task).default_model
    assert resolve_defaults(TrainConfig(task=task, model="mean_pool")).model == "mean_pool"


def test_the_clip_length_follows_the_task_unless_given():
    """Per-frame labels get twice the clip classifier's frames (16 over an untrimmed video put a few
    real frames between labels: measured in docs/training.md); --frames always wins."""
    assert resolve_defaults(TrainConfig()).frames == 16
    assert resolve_defaults(TrainConfig(task="segment")).frames == 32
    assert resolve_defaults(TrainConfig(task="segment", frames=16)).frames == 16
    assert resolve_defaults(TrainConfig(task="caption", frames=8)).frames == 8
    with pytest.raises(ValueError, match="frames must be >= 1; got 0"):
        TrainConfig(frames=0)


def test_an_even_smoothing_window_is_refused_before_training():
    """Validation filters the per-frame labels with it: an even window would fail only after the first epoch."""
    with pytest.raises(ValueError, match="smooth must be an odd number"):
        TrainConfig(task="segment", smooth=4)
    assert TrainConfig(smooth=1).smooth == 1


def test_auto_schedule_trains_everything_from_random_init_and_unfreezes_gradually_from_pretrained():
    assert resolve_defaults(TrainConfig()).schedule == "full"
    assert resolve_defaults(TrainConfig(weights="imagenet")).schedule == "gradual"
    assert resolve_defaults(TrainConfig(weights="imagenet", schedule="frozen")).schedule == "frozen"


def test_the_train_crop_follows_the_weights_and_the_task_unless_given():
    assert resolve_defaults(TrainConfig()).min_crop_scale == 1.0  # clip labels from scratch: translation only
    assert resolve_defaults(TrainConfig(task="segment")).min_crop_scale < 1
    assert resolve_defaults(TrainConfig(weights="imagenet")).min_crop_scale == TSN_MIN_CROP_SCALE < 1
    for task in list_tasks():
        assert 0 < get_task(task).scratch_min_crop_scale <= 1
    assert resolve_defaults(TrainConfig(min_crop_scale=0.5)).min_crop_scale == 0.5
    with pytest.raises(ValueError, match="min_crop_scale"):
        TrainConfig(min_crop_scale=0)


@pytest.mark.parametrize("model", list_models())
def test_every_model_has_a_readable_recipe_that_fills_every_unset_key(model):
    recipe = read_recipe(model_recipe(model))
    assert set(GENERIC_RECIPE) <= set(recipe) <= set(RECIPE_KEYS)
    cfg = resolve_defaults(TrainConfig(model=model))
    for key in GENERIC_RECIPE:
        assert getattr(cfg, key) == recipe[key]


def test_user_values_win_over_the_recipe_from_python_yaml_and_flags(tmp_path):
    recipe = read_recipe(model_recipe("temporal_transformer"))
    assert resolve_defaults(TrainConfig(model="temporal_transformer", lr=0.123)).lr == 0.123
    yaml_file = tmp_path / "mine.yaml"
    yaml_file.write_text("lr: 0.5\nweight_decay: 0\n")
    cfg = resolve_defaults(resolve_config(yaml_file, {"model": "temporal_transformer", "weight_decay": "0.25"}))
    assert (cfg.lr, cfg.weight_decay) == (0.5, 0.25)
    assert cfg.warmup_epochs == recipe["warmup_epochs"]  # untouched keys still come from the recipe


def test_resolving_twice_changes_nothing():
    once = resolve_defaults(TrainConfig(model="r3d_18"))
    assert resolve_defaults(once) == once
    assert all(getattr(once, k) is not None for k in GENERIC_RECIPE)


def test_a_recipe_may_set_only_recipe_keys(tmp_path, monkeypatch):
    import cnnlstm.config as config

    monkeypatch.setattr(config, "RECIPES_DIR", tmp_path)
    (tmp_path / "lstm.yaml").write_text("lr: 0.01\nepochs: 3\n")
    with pytest.raises(ValueError, match="epochs"):
        read_recipe("lstm")
    (tmp_path / "lstm.yaml").write_text("lr: 0.01\n")
    assert read_recipe("lstm")["lr"] == 0.01
    assert read_recipe("no_such_recipe") == GENERIC_RECIPE


def test_feature_changes_follow_the_task_and_are_recorded_only_for_the_models_that_take_them():
    """Per-frame labels read [f_t, f_t - f_(t-1)] by default (docs/training.md); a run saved before the key
    existed (None) trained without it, and resuming it with the key False is no change of model."""
    from cnnlstm.config import diff_configs

    assert resolve_defaults(TrainConfig(task="segment")).feature_diff is True
    assert resolve_defaults(TrainConfig()).feature_diff is False  # cnn_lstm takes it: recorded
    assert resolve_defaults(TrainConfig(model="mean_pool")).feature_diff is None  # no LSTM: not recorded
    assert resolve_defaults(TrainConfig(task="segment", feature_diff=False)).feature_diff is False
    old = TrainConfig(task="segment", model="seq2seq_cnn_lstm")
    assert diff_configs(old, dataclasses.replace(old, feature_diff=False)) == {}
    assert diff_configs(old, dataclasses.replace(old, feature_diff=True)) == {"feature_diff": (None, True)}


def test_uniform_samples_are_evenly_spaced_for_per_frame_labels_and_jittered_for_the_other_tasks():
    """Per-frame labels train on evenly spaced samples (their feature changes compare neighbours; F1@50 higher on
    three segment sets, docs/training.md); a random_clip window keeps its random start; a flag wins."""
    assert resolve_defaults(TrainConfig(task="segment")).temporal_jitter is False
    assert resolve_defaults(TrainConfig(task="segment", sampler="random_clip")).temporal_jitter is True
    assert resolve_defaults(TrainConfig(task="segment", temporal_jitter=True)).temporal_jitter is True
    for task in ("classify", "multilabel", "caption"):
        assert resolve_defaults(TrainConfig(task=task)).temporal_jitter is True
    assert resolve_defaults(TrainConfig(temporal_jitter=False)).temporal_jitter is False


def test_the_saved_config_is_resolved(tmp_path):
    cfg = resolve_defaults(TrainConfig(task="segment"))
    assert dataclasses.asdict(cfg)["model"] == "seq2seq_cnn_lstm"
    assert cfg.lr is not None and cfg.schedule in ("full", "gradual", "frozen")


def test_every_option_help_is_the_comment_of_its_field():
    """`cnnlstm train --help` takes each key's meaning from TrainConfig's comments: none is lost."""
    import inspect
    import re

    from cnnlstm.config import field_help

    docs = field_help()
    assert set(docs) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert docs["frames"] == ("clips", "frames sampled per clip (T); None: the task's (16; 32 for --task segment)")
    assert docs["lr"][0] == "optimisation" and docs["lr"][1].startswith("peak learning rate")
    assert docs["backbone_lr_scale"][1].startswith("backbone lr = lr * this")  # the comment on the line above
    assert docs["teacher_forcing_end"][1].startswith("scheduled sampling")
    assert docs["fps"][1].startswith("sampler fps: frames per second")
    source = inspect.getsource(TrainConfig).splitlines()
    for name, (_, meaning) in docs.items():
        at = next(i for i, line in enumerate(source) if re.match(rf"    {name}\s*:", line))
        if "#" in source[at]:
            assert meaning == source[at].split("#", 1)[1].strip(), name  # the trailing comment
        elif meaning:
            assert source[at - 1].strip() == f"# {meaning}", name  # the comment line above it


def test_train_help_shows_meanings_in_sections(capsys):
    from cnnlstm.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "config: optimisation:" in text and "config: clips:" in text
    assert "--frames FRAMES frames sampled per clip (T); None: the task's (16; 32 for --task segment)" in text
    assert "--flip [BOOL] horizontal flip augmentation (changes direction labels!) (default: False)" in text
    assert "--backbone BACKBONE (default: resnet18); one of efficientnet_b0, resnet18" in text
    assert "--offline" in text and "exit codes:" in text


def test_bad_values_name_the_key_its_option_and_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"config key epochs \(--epochs\) expects an integer; got 'abc'"):
        resolve_config(None, {"epochs": "abc"})
    with pytest.raises(ValueError, match=r"phase_lrs \(--phase-lrs\) expects a comma-separated list of numbers"):
        resolve_config(None, {"phase_lrs": "1e-3,x"})
    recipe = tmp_path / "r.yaml"
    recipe.write_text("frames: sixteen\n")
    with pytest.raises(ValueError, match=r"r.yaml: config key frames \(--frames\) expects an integer"):
        resolve_config(recipe)
    recipe.write_text("frames: [16\n")
    with pytest.raises(ValueError, match=r"r.yaml line 2: not valid YAML"):
        resolve_config(recipe)
    with pytest.raises(FileNotFoundError, match="config file .*nope.yaml does not exist"):
        resolve_config(tmp_path / "nope.yaml")
    assert resolve_config(None, {"bidirectional": "false", "fps": "7.5"}).fps == 7.5
