"""Metrics against small cases worked out by hand."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cnnlstm.engine.loop import RunningMean
from cnnlstm.tasks.classify.metrics import classification_report, format_per_class, mean_class_accuracy, topk_accuracy
from cnnlstm.tasks.metrics import confusion_matrix, per_class_table

CLASSES = ["cat", "dog", "bird"]
# Six labelled videos and one unlabelled (-1); no ties inside any row.
#                        true  argmax  2nd
LOGITS = torch.tensor([
    [3.0, 1.0, 0.0],  # 0     0       1
    [1.0, 3.0, 0.0],  # 0     1       0
    [0.0, 3.0, 1.0],  # 1     1       2
    [1.0, 2.0, 0.0],  # 1     1       0
    [3.0, 2.0, 1.0],  # 2     0       1   -> missed by top-2
    [0.0, 1.0, 3.0],  # 2     2       1
    [0.0, 0.0, 9.0],  # -1 (unlabelled: would change every number if counted)
])
TARGETS = torch.tensor([0, 0, 1, 1, 2, 2, -1])
# rows true, cols predicted
EXPECTED_CM = [[1, 1, 0],
               [0, 2, 0],
               [1, 0, 1]]


def test_topk_by_hand_including_k_above_num_classes():
    acc = topk_accuracy(LOGITS, TARGETS, ks=(1, 2, 3, 5))
    assert acc == pytest.approx({1: 4 / 6, 2: 5 / 6, 3: 1.0, 5: 1.0})
    assert all(type(v) is float for v in acc.values())


def test_topk_ignores_unlabelled_and_handles_all_unlabelled():
    assert topk_accuracy(LOGITS[:6], TARGETS[:6], ks=(1,)) == topk_accuracy(LOGITS, TARGETS, ks=(1,))
    assert topk_accuracy(LOGITS, torch.full((7,), -1), ks=(1, 5)) == {1: 0.0, 5: 0.0}


def test_topk_accepts_numpy_and_integral_float_targets():
    acc = topk_accuracy(LOGITS.numpy(), TARGETS.numpy().astype(np.float32), ks=(1,))
    assert acc[1] == pytest.approx(4 / 6)


def test_confusion_matrix_by_hand_from_preds_and_from_logits():
    preds = LOGITS.argmax(1)
    cm = confusion_matrix(preds, TARGETS, 3)
    assert cm.dtype == torch.long and cm.shape == (3, 3)
    assert cm.tolist() == EXPECTED_CM
    assert confusion_matrix(LOGITS, TARGETS, 3).tolist() == EXPECTED_CM


def test_mean_class_accuracy_by_hand_and_class_without_support():
    assert mean_class_accuracy(torch.tensor(EXPECTED_CM)) == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    # class 2 never occurs: it is left out of the mean (not counted as 0)
    assert mean_class_accuracy([[2, 0, 0], [1, 1, 0], [0, 0, 0]]) == pytest.approx((1.0 + 0.5) / 2)
    assert mean_class_accuracy(torch.zeros(3, 3, dtype=torch.long)) == 0.0


def test_per_class_precision_recall_f1_by_hand():
    table = per_class_table(torch.tensor(EXPECTED_CM), CLASSES)
    assert [r["class"] for r in table] == CLASSES
    assert [(r["support"], r["correct"]) for r in table] == [(2, 1), (2, 2), (2, 1)]
    assert [r["recall"] for r in table] == pytest.approx([1 / 2, 1.0, 1 / 2])
    assert [r["precision"] for r in table] == pytest.approx([1 / 2, 2 / 3, 1.0])
    assert [r["f1"] for r in table] == pytest.approx([1 / 2, 0.8, 2 / 3])


def test_per_class_never_predicted_and_no_support_give_zero():
    table = per_class_table([[1, 0], [1, 0]], ["a", "b"])
    assert table[1] == {"class": "b", "support": 1, "correct": 0, "recall": 0.0, "precision": 0.0, "f1": 0.0}


def test_classification_report_values_and_json():
    skipped = [{"path": "broken.mp4", "error": "DecodeError"}]
    rep = classification_report(LOGITS, TARGETS, CLASSES, skipped=skipped)
    assert set(rep) >= {"top1", "top5", "mean_class_accuracy", "num_videos", "confusion_matrix",
                        "per_class", "classes", "skipped"}
    assert rep["top1"] == pytest.approx(4 / 6)
    assert rep["top5"] == 1.0 and rep["top5_k"] == 3  # K=3: top-5 is top-3
    assert rep["mean_class_accuracy"] == pytest.approx(2 / 3)
    assert rep["num_videos"] == 6 and rep["num_unlabelled"] == 1
    assert rep["confusion_matrix"] == EXPECTED_CM
    assert rep["classes"] == CLASSES and rep["skipped"] == skipped
    assert json.loads(json.dumps(rep, allow_nan=False)) == rep
    assert classification_report(LOGITS, TARGETS, CLASSES)["skipped"] == []


def test_report_top5_with_many_classes():
    logits = torch.arange(10.0).repeat(4, 1)  # (4, 10): ranking 9, 8, 7, ...
    rep = classification_report(logits, torch.tensor([9, 5, 4, 0]), [str(i) for i in range(10)])
    assert rep["top1"] == 0.25 and rep["top5"] == 0.5 and rep["top5_k"] == 5


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: topk_accuracy(LOGITS, TARGETS[:5]), r"logits \(7, 3\), targets \(5,\)"),
        (lambda: topk_accuracy(LOGITS[0], TARGETS), r"\(N, K\)"),
        (lambda: topk_accuracy(LOGITS, torch.tensor([0, 0, 1, 1, 2, 3, -1])), "< K=3"),
        (lambda: topk_accuracy(LOGITS, TARGETS, ks=(0,)), "positive"),
        (lambda: confusion_matrix(torch.tensor([0, 1]), torch.tensor([0]), 3), r"preds \(2,\), targets \(1,\)"),
        (lambda: confusion_matrix(torch.tensor([0, 4]), torch.tensor([0, 1]), 3), r"preds must lie in \[0, 3\)"),
        (lambda: per_class_table(torch.tensor(EXPECTED_CM), ["a", "b"]), "2 class names"),
        (lambda: classification_report(LOGITS, TARGETS, ["a"]), "1 class names"),
        (lambda: mean_class_accuracy(torch.zeros(2, 3)), "square"),
    ],
    ids=["length-mismatch", "logits-1d", "target-too-big", "bad-k", "cm-mismatch", "pred-range",
         "table-names", "report-names", "not-square"],
)
def test_errors_name_the_problem(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_non_integer_targets_rejected():
    with pytest.raises(TypeError, match="integer"):
        topk_accuracy(LOGITS, TARGETS.float() + 0.5)


def test_running_mean_is_weighted_by_n():
    m = RunningMean()
    assert m.mean == 0.0
    m.update(2.0, n=2)
    m.update(torch.tensor(5.0))
    assert m.mean == pytest.approx(3.0) and m.count == 3
    m.reset()
    assert (m.mean, m.count) == (0.0, 0)
    with pytest.raises(ValueError, match="non-negative"):
        m.update(1.0, n=-1)


def test_format_per_class_is_aligned():
    text = format_per_class(per_class_table(torch.tensor(EXPECTED_CM), CLASSES))
    lines = text.splitlines()
    assert lines[0].split() == ["class", "support", "correct", "recall", "precision", "f1"]
    assert len({len(line) for line in lines}) == 1  # every line padded to the same width
    assert "dog" in text and "66.7%" in text and lines[-1].startswith("macro avg")
