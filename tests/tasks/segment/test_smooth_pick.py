"""How predicted frame labels are cleaned before segments are cut (majority filter, shortest run):
picked on the validation rows when --smooth / --min-segment are not given, carried to evaluate and
predict through best.json, and the given values when they are."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from cnnlstm.config import TrainConfig
from cnnlstm.tasks.segment.metrics import segmentation_report, sequence_scores
from cnnlstm.tasks.segment.task import DEFAULT_CLEANING, SMOOTH_WINDOWS, SegmentTask, cleaning, pick_cleaning

CLASSES = ["background", "a", "b"]
TARGET = [0] * 8 + [1] * 12 + [0] * 8 + [2] * 12 + [0] * 8  # 48 frames, two actions of 12 with gaps of 8


def rows_of(preds: list[list[int]], targets: list[list[int]]) -> list[dict]:
    return [{"pred": torch.tensor(p), "target": torch.tensor(t), "probs": F.one_hot(torch.tensor(p), 3).float()}
            for p, t in zip(preds, targets, strict=True)]


def flicker(target: list[int], every: int, offset: int) -> list[int]:
    """``target`` with a one-frame flicker to the next class every ``every`` frames."""
    return [(c + 1) % 3 if (i + offset) % every == 0 else c for i, c in enumerate(target)]


def runs(labels: torch.Tensor) -> int:
    return int((labels[1:] != labels[:-1]).sum()) + 1


def test_validation_picks_a_cleaning_that_removes_flickers_and_none_where_there_are_none():
    cfg = TrainConfig(task="segment")
    assert cfg.smooth is None and cfg.min_segment is None
    noisy = rows_of([flicker(TARGET, 5, k) for k in range(3)], [TARGET] * 3)
    how, report, preds = pick_cleaning(noisy, cfg, CLASSES)
    assert how["smooth"] in SMOOTH_WINDOWS and (how["smooth"] > 1 or how["min_segment"] > 1)
    assert report["f1@50"] == 1.0 and [runs(p) for p in preds] == [5, 5, 5], "the returned labels are the cleaned ones"
    raw, _, _ = pick_cleaning(noisy, TrainConfig(task="segment", smooth=1, min_segment=1), CLASSES)
    assert raw == {"smooth": 1, "min_segment": 1}, "given: only those"
    half, _, _ = pick_cleaning(noisy, TrainConfig(task="segment", smooth=1), CLASSES)
    assert half["smooth"] == 1 and half["min_segment"] > 1, "a flicker of one frame is a run of one: merged"

    short = [0] * 4 + [1] * 3 + [0] * 4 + [2] * 3 + [0] * 4  # actions of 3 frames: any window >= 7 erases them
    how, report, _ = pick_cleaning(rows_of([short], [short]), cfg, CLASSES)
    assert how == {"smooth": 1, "min_segment": 1} and report["f1@50"] == 1.0, "exact labels: the mildest cleaning"


def test_the_cheap_scores_that_pick_the_cleaning_are_the_reports():
    preds = [torch.tensor(flicker(TARGET, 7, k)) for k in range(4)]
    targets = [torch.tensor(TARGET)] * 3 + [torch.tensor([-100] * 6 + TARGET[6:])]  # unlabelled frames too
    full = segmentation_report(preds, targets, None, CLASSES)
    keys = ("frame_accuracy", "edit", "f1@10", "f1@25", "f1@50")
    assert sequence_scores(preds, targets) == {k: full[k] for k in keys}


def test_evaluate_and_predict_clean_labels_as_validation_did_for_the_kept_weights(tmp_path):
    run = tmp_path
    loaded = SimpleNamespace(cfg=TrainConfig(task="segment"), state=SegmentTask().load_state(run))
    assert loaded.state == {} and cleaning(loaded) == DEFAULT_CLEANING, "no best.json: the defaults"
    (run / "best.json").write_text('{"epoch": 3, "val_score": 0.5, "val_smooth": 11, "val_min_segment": 3}')
    loaded.state = SegmentTask().load_state(run)
    assert cleaning(loaded) == {"smooth": 11, "min_segment": 3}
    loaded.cfg = TrainConfig(task="segment", smooth=3)
    assert cleaning(loaded) == {"smooth": 3, "min_segment": 3}, "a value set when training wins over the picked one"
    (run / "best.json").write_text('{"epoch": 3, "val_score": 0.5}')  # trained without --val
    assert SegmentTask().load_state(run) == {}
    (run / "best.json").write_text('{"epoch": 3, "val_sm')
    with pytest.raises(ValueError, match="best.json is damaged.*delete it"):
        SegmentTask().load_state(run)
