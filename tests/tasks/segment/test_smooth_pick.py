"""The majority filter's window: picked on the validation rows when --smooth is not given, carried to
evaluate and predict through best.json, and --smooth when given."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from cnnlstm.config import TrainConfig
from cnnlstm.tasks.segment.task import DEFAULT_SMOOTH, SMOOTH_WINDOWS, SegmentTask, pick_window, smooth_window

CLASSES = ["background", "a", "b"]


def rows_of(preds: list[list[int]], targets: list[list[int]]) -> list[dict]:
    return [{"pred": torch.tensor(p), "target": torch.tensor(t), "probs": F.one_hot(torch.tensor(p), 3).float()}
            for p, t in zip(preds, targets, strict=True)]


TARGET = [0] * 8 + [1] * 12 + [0] * 8 + [2] * 12 + [0] * 8  # 48 frames, two actions of 12 with gaps of 8


def flicker(target: list[int], every: int, offset: int) -> list[int]:
    """``target`` with a one-frame flicker to the next class every ``every`` frames."""
    return [(c + 1) % 3 if (i + offset) % every == 0 else c for i, c in enumerate(target)]


def test_validation_picks_a_window_that_removes_flickers_and_none_where_there_are_none():
    cfg = TrainConfig(task="segment")
    assert cfg.smooth is None
    noisy = rows_of([flicker(TARGET, 5, k) for k in range(3)], [TARGET] * 3)
    window, report, preds = pick_window(noisy, cfg, CLASSES)
    assert window in SMOOTH_WINDOWS and window > 1 and report["f1@50"] == 1.0
    runs = [int((p[1:] != p[:-1]).sum()) + 1 for p in preds]
    assert runs == [5, 5, 5], f"the returned labels are the filtered ones (5 runs like the target): {runs}"
    raw, _, _ = pick_window(noisy, TrainConfig(task="segment", smooth=1), CLASSES)
    assert raw == 1, "--smooth given: only that window"

    short = [0] * 4 + [1] * 3 + [0] * 4 + [2] * 3 + [0] * 4  # actions of 3 frames: any window >= 7 erases them
    window, report, _ = pick_window(rows_of([short], [short]), cfg, CLASSES)
    assert window == 1 and report["f1@50"] == 1.0, "exact labels: the smallest of the windows that score best"


def test_evaluate_and_predict_use_the_window_validation_picked_for_the_kept_weights(tmp_path):
    run = tmp_path
    loaded = SimpleNamespace(cfg=TrainConfig(task="segment"), state=SegmentTask().load_state(run))
    assert loaded.state is None and smooth_window(loaded) == DEFAULT_SMOOTH, "no best.json: the default"
    (run / "best.json").write_text('{"epoch": 3, "val_score": 0.5, "val_smooth": 11}')
    loaded.state = SegmentTask().load_state(run)
    assert smooth_window(loaded) == 11
    loaded.cfg = TrainConfig(task="segment", smooth=3)
    assert smooth_window(loaded) == 3, "a window set when training wins over the picked one"
    (run / "best.json").write_text('{"epoch": 3, "val_score": 0.5}')  # trained without --val
    assert SegmentTask().load_state(run) is None
    (run / "best.json").write_text('{"epoch": 3, "val_sm')
    with pytest.raises(ValueError, match="best.json is damaged.*delete it"):
        SegmentTask().load_state(run)
