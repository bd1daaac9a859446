"""Config resolution: defaults < the model family's recipe < --config YAML < flags."""
from __future__ import annotations

import dataclasses

import pytest

from cnnlstm.config import GENERIC_RECIPE, RECIPE_KEYS, TrainConfig, read_recipe, resolve_config, resolve_defaults
from cnnlstm.models import list_models, model_recipe
from cnnlstm.tasks import get_task, list_tasks


@pytest.mark.parametrize("task", list_tasks())
def test_the_default_model_follows_the_task(task):
    cfg = resolve_defaults(TrainConfig(task=task))
    assert cfg.model == get_task(task).default_model
    assert resolve_defaults(TrainConfig(task=task, model="mean_pool")).model == "mean_pool"


def test_auto_schedule_trains_everything_from_random_init_and_unfreezes_gradually_from_pretrained():
    assert resolve_defaults(TrainConfig()).schedule == "full"
    assert resolve_defaults(TrainConfig(weights="imagenet")).schedule == "gradual"
    assert resolve_defaults(TrainConfig(weights="imagenet", schedule="frozen")).schedule == "frozen"


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


def test_the_saved_config_is_resolved(tmp_path):
    cfg = resolve_defaults(TrainConfig(task="segment"))
    assert dataclasses.asdict(cfg)["model"] == "seq2seq_cnn_lstm"
    assert cfg.lr is not None and cfg.schedule in ("full", "gradual", "frozen")
