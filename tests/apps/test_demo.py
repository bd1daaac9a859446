"""The demo's splits: each run picks its epoch on the val split and is scored on the held-out test split.
The demo end to end runs in tests/test_cli.py."""
from __future__ import annotations

from cnnlstm.apps.demo import DENSE_RUNS, DemoConfig, _dense_config, _synth_config, _train_config


def test_demo_datasets_have_a_val_split():
    default = _synth_config(DemoConfig(), task="caption")
    assert (default.task, default.videos_per_class, default.test_per_class, default.val_per_class) == (
        "caption", 24, 8, 8)
    quick = _synth_config(DemoConfig(videos_per_class=3))
    assert (quick.videos_per_class, quick.test_per_class, quick.val_per_class) == (3, 1, 1)
    assert _synth_config(DemoConfig(videos_per_class=12)).val_per_class == 4


def test_every_demo_run_picks_its_epoch_on_val(tmp_path):
    cfg, data = DemoConfig(), tmp_path / "data"
    runs = [_train_config(cfg, data, tmp_path / model, model) for model in cfg.models]
    runs += [_dense_config(cfg, data, tmp_path / dense.task, dense) for dense in DENSE_RUNS]
    for run in runs:
        assert (run.data, run.val) == (str(data / "train.csv"), str(data / "val.csv")), run.task
