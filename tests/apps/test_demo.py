"""The demo's splits: each run picks its epoch on the val split and is scored on the held-out test split.
The demo end to end runs in tests/test_cli.py."""
from __future__ import annotations

import dataclasses

from cnnlstm.apps.demo import (
    DENSE_RUNS,
    DemoConfig,
    _dense_config,
    _dense_synth_config,
    _forcing,
    _synth_config,
    _train_config,
)


def test_demo_datasets_have_a_val_split():
    default = _synth_config(DemoConfig(), task="segment")
    assert (default.task, default.videos_per_class, default.test_per_class, default.val_per_class) == (
        "segment", 24, 8, 8)
    quick = _synth_config(DemoConfig(videos_per_class=3))
    assert (quick.videos_per_class, quick.test_per_class, quick.val_per_class) == (3, 1, 1)
    assert _synth_config(DemoConfig(videos_per_class=12)).val_per_class == 4


def test_every_demo_run_picks_its_epoch_on_val(tmp_path):
    cfg, data = DemoConfig(), tmp_path / "data"
    runs = [_train_config(cfg, data, tmp_path / model, model) for model in cfg.models]
    runs += [_dense_config(cfg, data, tmp_path / dense.task, dense) for dense in DENSE_RUNS]
    for run in runs:
        assert (run.data, run.val) == (str(data / "train.csv"), str(data / "val.csv")), run.task


def test_the_dense_sets_are_twice_as_large_unless_a_quick_check_asks_for_fewer():
    for dense in DENSE_RUNS:
        synth = _dense_synth_config(DemoConfig(), dense)
        assert (synth.task, synth.videos_per_class, synth.test_per_class, synth.val_per_class) == (
            dense.task, 48, 8, 8)  # the test split is the one the 24-video set had: the scores stay comparable
        assert _dense_synth_config(DemoConfig(videos_per_class=3), dense).videos_per_class == 3
    assert _synth_config(DemoConfig()).videos_per_class == 24  # the classification set


def test_the_report_says_how_the_captioner_was_fed(tmp_path):
    cfg = _dense_config(DemoConfig(), tmp_path, tmp_path / "run", next(r for r in DENSE_RUNS if r.task == "caption"))
    assert "None" not in _forcing(cfg)
    assert "scheduled sampling" in _forcing(dataclasses.replace(cfg, teacher_forcing_end=0.5))
