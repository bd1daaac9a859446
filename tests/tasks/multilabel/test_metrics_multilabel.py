"""Multi-label metrics: AP (Charades-style, against hand-computed values and scikit-learn when it
is installed), mAP over the classes with positives, F1@0.5 micro and macro, exact match."""
from __future__ import annotations

import math

import pytest
import torch

from cnnlstm.tasks.multilabel.metrics import (
    average_precision,
    f1_scores,
    format_per_class,
    mean_average_precision,
    multilabel_report,
)


def charades_ap(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """The Charades/THUMOS evaluation's formula: the mean, over the positives, of the precision at
    each positive's rank (scores sorted descending)."""
    order = torch.argsort(scores, descending=True)
    hits = targets[order].bool()
    precision = torch.cumsum(hits, 0).double() / torch.arange(1, len(hits) + 1)
    return float(precision[hits].sum() / hits.sum())


@pytest.mark.parametrize(("scores", "targets", "expected"), [
    ([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0], (1 + 2 / 3) / 2),  # precision 1 at rank 1, 2/3 at rank 3
    ([0.9, 0.8, 0.7, 0.6], [0, 0, 1, 1], (1 / 3 + 2 / 4) / 2),
    ([0.1, 0.2, 0.3], [0, 0, 1], 1.0),  # the positive ranked first, whatever the scale
    ([5.0, -1.0, 2.0, 0.0, 3.0], [1, 0, 0, 1, 1], (1 + 2 / 2 + 3 / 4) / 3),  # positives at ranks 1, 2, 4
    ([0.9, 0.5, 0.5, 0.1], [1, 1, 0, 0], 0.5 * 1 + 0.5 * 2 / 3),  # a tie is one threshold
    ([0.5, 0.5, 0.5, 0.5], [1, 0, 0, 0], 0.25),  # all tied: the positive rate
])
def test_average_precision_matches_hand_computed_values(scores, targets, expected):
    assert average_precision(scores, targets) == pytest.approx(expected, abs=1e-12)


def test_without_ties_the_ap_is_the_charades_formula():
    generator = torch.Generator().manual_seed(1)
    for _ in range(20):
        scores = torch.randn(37, generator=generator)
        targets = (torch.rand(37, generator=generator) < 0.3).long()
        targets[0] = 1
        assert average_precision(scores, targets) == pytest.approx(charades_ap(scores, targets), abs=1e-12)


def test_average_precision_equals_scikit_learn_with_and_without_ties():
    sklearn = pytest.importorskip("sklearn.metrics")  # not in the dev extras; the hand-computed cases stand in
    generator = torch.Generator().manual_seed(2)
    for _ in range(20):
        scores = torch.randint(0, 6, (40,), generator=generator).float()  # many ties
        targets = (torch.rand(40, generator=generator) < 0.4).long()
        targets[3] = 1
        expected = sklearn.average_precision_score(targets.numpy(), scores.numpy())
        assert average_precision(scores, targets) == pytest.approx(expected, abs=1e-12)


def test_classes_without_positives_have_no_ap_and_stay_out_of_the_mean():
    scores = torch.tensor([[0.9, 0.2, 0.1], [0.8, 0.7, 0.3], [0.1, 0.6, 0.2]])  # (N, K)
    targets = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 1, 0]])
    mean, per_class = mean_average_precision(scores, targets)
    assert per_class == [pytest.approx(1.0), pytest.approx(1.0), None]
    assert mean == pytest.approx(1.0)
    assert average_precision([0.3, 0.2], [0, 0]) is None
    assert mean_average_precision(scores, torch.zeros(3, 3))[0] == 0.0


def test_f1_micro_pools_pairs_and_macro_averages_the_classes_that_have_anything():
    predicted = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 0, 0]])
    targets = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 0], [0, 1, 0, 0]])
    f1 = f1_scores(predicted, targets)
    # class 0: tp 1 fp 1 fn 0 -> 2/3; class 1: tp 2 -> 1; class 2: fn 1 -> 0; class 3: nothing, left out
    assert f1["tp"] == [1, 2, 0, 0] and f1["fp"] == [1, 0, 0, 0] and f1["fn"] == [0, 0, 1, 0]
    assert f1["micro"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert f1["macro"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert f1["f1"][3] == 0.0 and f1["precision"][0] == pytest.approx(0.5)


def test_report_thresholds_the_probabilities_and_names_what_it_leaves_out():
    logits = torch.tensor([[2.0, -1.0, -3.0], [0.5, 1.0, -2.0], [-2.0, 3.0, -1.0], [0.0, -0.5, -4.0]])  # (N, K)
    targets = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]])
    report = multilabel_report(logits, targets, ["a", "b", "c"])
    # sigmoid(0.0) = 0.5 counts as present: predicted sets {a}, {a, b}, {b}, {a}
    assert report["exact_match"] == pytest.approx(3 / 4)
    assert [r["predicted"] for r in report["per_class"]] == [3, 2, 0]
    assert report["classes_without_positives"] == ["c"] and report["per_class"][2]["ap"] is None
    assert report["map"] == pytest.approx((1.0 + 1.0) / 2)
    assert report["f1@0.5_micro"] == pytest.approx(2 * 4 / (2 * 4 + 1 + 0))
    assert report["label_cardinality"] == pytest.approx(1.0) and report["num_videos"] == 4
    strict = multilabel_report(logits, targets, ["a", "b", "c"], threshold=0.9)
    assert [r["predicted"] for r in strict["per_class"]] == [0, 1, 0] and strict["threshold"] == 0.9
    table = format_per_class(report["per_class"])
    assert table.splitlines()[0].split() == ["class", "AP", "positives", "predicted", "precision", "recall", "f1"]
    assert table.splitlines()[-1].split()[:2] == ["c", "-"]
    assert not math.isnan(report["f1@0.5_macro"])


def test_bad_inputs_name_what_was_expected():
    with pytest.raises(ValueError, match=r"only 0 and 1.*0.5"):
        multilabel_report(torch.zeros(2, 2), torch.tensor([[0.5, 1.0], [0.0, 1.0]]), ["a", "b"])
    with pytest.raises(ValueError, match=r"same shape \(N, K\)"):
        multilabel_report(torch.zeros(2, 3), torch.zeros(2, 2), ["a", "b"])
    with pytest.raises(ValueError, match="3 class names"):
        multilabel_report(torch.zeros(2, 2), torch.zeros(2, 2), ["a", "b", "c"])
    with pytest.raises(ValueError, match="NaN"):
        average_precision([float("nan"), 1.0], [1, 0])
    with pytest.raises(ValueError, match=r"probability in \[0, 1\]"):
        multilabel_report(torch.zeros(2, 2), torch.zeros(2, 2), ["a", "b"], threshold=1.5)
