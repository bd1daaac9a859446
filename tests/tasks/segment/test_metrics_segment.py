"""Segmentation metrics against cases worked out by hand (arithmetic in the comments)."""
from __future__ import annotations

import pytest
import torch

from cnnlstm.tasks.segment.metrics import (
    edit_score,
    f1_at_k,
    frame_accuracy,
    segment_counts,
    segment_map,
    segmentation_report,
)

t = torch.tensor


def test_perfect_prediction_scores_one():
    target = t([0, 0, 1, 1, 1, 2, 2, 0])
    assert frame_accuracy(target, target) == 1.0
    assert edit_score(target, target) == 1.0
    for k in (0.1, 0.25, 0.5):
        assert f1_at_k(target, target, k) == 1.0
    report = segmentation_report([target], [target], None, ["bg", "a", "b"])
    assert all(report[key] == 1.0 for key in ("frame_accuracy", "edit", "f1@10", "f1@25", "f1@50", "map@0.3", "map@0.5",
                                              "map@0.7"))


def test_over_segmentation_lowers_edit_and_f1_not_frame_accuracy():
    target = t([1] * 6 + [2] * 6)
    one_boundary_error = t([1] * 8 + [2] * 4)  # 2 frames wrong, in one place
    scattered = t([1, 1, 2, 1, 1, 1, 2, 2, 2, 2, 1, 2])  # 2 frames wrong (indices 2, 10), scattered
    assert frame_accuracy(one_boundary_error, target) == frame_accuracy(scattered, target) == 10 / 12
    assert edit_score(one_boundary_error, target) == 1.0  # segments [1, 2] vs [1, 2]
    # segments [1, 2, 1, 2, 1, 2] vs [1, 2]: 4 deletions -> 1 - 4 / max(6, 2) = 1/3
    assert edit_score(scattered, target) == pytest.approx(1 / 3)
    # predicted (1,0,2) IoU 2/6 -> TP (uses GT 1); (2,2,3) IoU 0 -> FP; (1,3,6): GT 1 taken -> FP;
    # (2,6,10) IoU 4/6 -> TP; (1,10,11) FP; (2,11,12) GT 2 taken -> FP. TP 2, FP 4, FN 0
    assert segment_counts(scattered, target, 0.1) == (2, 4, 0)
    # P = 2/6, R = 1, F1 = 2 * (1/3) / (4/3) = 0.5
    assert f1_at_k(scattered, target, 0.1) == pytest.approx(0.5)


def test_empty_prediction():
    target = t([0, 1, 1, 0])
    nothing = t([0, 0, 0, 0])  # all background
    # background left out: no predicted segment vs [1]: 1 insertion -> 1 - 1/1 = 0; F1: TP 0, FN 1 -> 0
    assert edit_score(nothing, target, background=0) == 0.0
    assert segment_counts(nothing, target, 0.5, background=0) == (0, 0, 1)
    assert f1_at_k(nothing, target, 0.1, background=0) == 0.0
    # every class counted: [0] vs [0, 1, 0] -> 2 edits -> 1 - 2/3
    assert edit_score(nothing, target) == pytest.approx(1 / 3)
    # (0,0,4) vs GT (0,0,1), (0,3,4): IoU 1/4 each -> TP at 0.1 (the first), FN 2: P 1, R 1/3, F1 0.5
    assert f1_at_k(nothing, target, 0.1) == pytest.approx(0.5)
    assert f1_at_k(nothing, target, 0.5) == 0.0
    # no frames at all
    empty = torch.zeros(0, dtype=torch.long)
    assert (frame_accuracy(empty, empty), edit_score(empty, empty), f1_at_k(empty, empty, 0.5)) == (0.0, 1.0, 0.0)
    report = segmentation_report([nothing], [target], None, ["bg", "a"])
    assert report["map@0.5"] == 0.0 and report["frame_accuracy"] == 0.5


def test_two_predictions_that_share_their_best_match_give_one_tp_and_one_fp():
    # GT (1,0,8), (0,8,9), (1,9,10); predicted (1,0,3), (0,3,4), (1,4,10)
    target = t([1] * 8 + [0, 1])
    pred = t([1, 1, 1, 0] + [1] * 6)
    # (1,0,3): IoU 3/8 with GT (1,0,8) -> TP. (0,3,4): its label's GT (0,8,9) lies apart (IoU < 0) -> FP.
    # (1,4,10): IoU 4/10 with (1,0,8), 1/6 with (1,9,10): the best over all is (1,0,8), already matched
    # -> FP (as the MS-TCN script; a greedy "best unmatched" rule would count a TP with (1,9,10)).
    # FN: (0,8,9) and (1,9,10).
    assert segment_counts(pred, target, 0.1) == (1, 2, 2)
    assert segment_counts(pred, target, 0.1, background=0) == (1, 1, 1)  # without the class-0 segments
    # the simplest case: one GT, two predictions inside it
    assert segment_counts(t([1, 1, 0, 1, 1]), t([1, 1, 1, 1, 1]), 0.1, background=0) == (1, 1, 0)


def test_a_tie_goes_to_the_earlier_ground_truth_even_when_it_is_taken():
    target = t([1, 1, 0, 1, 1])  # GT (1,0,2), (1,3,5)
    assert segment_counts(t([1, 1, 1, 1, 1]), target, 0.1, background=0) == (1, 0, 1)  # (1,0,5): 2/5 with both
    target = t([1, 1, 1, 0, 0, 1, 1, 1])  # GT (1,0,3), (1,5,8)
    pred = t([1, 0, 1, 1, 1, 1, 0, 0])  # (1,0,1): 1/3 with (1,0,3) -> TP; (1,2,6): 1/6 with both -> the first, taken
    assert segment_counts(pred, target, 0.1, background=0) == (1, 1, 1)


def _script_counts(pred: list[int], target: list[int], overlap: float, background: int) -> tuple[int, int, int]:
    """An independent, vectorised reading of the MS-TCN rule, to compare with on random sequences."""
    import numpy as np

    def runs(labels):
        cuts = [0] + [i for i in range(1, len(labels)) if labels[i] != labels[i - 1]] + [len(labels)]
        return [(labels[a], a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True) if labels[a] != background]

    p, g = np.array(runs(pred)).reshape(-1, 3), np.array(runs(target)).reshape(-1, 3)
    inter = np.minimum(p[:, None, 2], g[None, :, 2]) - np.maximum(p[:, None, 1], g[None, :, 1])  # (P, G)
    union = np.maximum(p[:, None, 2], g[None, :, 2]) - np.minimum(p[:, None, 1], g[None, :, 1])
    iou = inter / union * (p[:, None, 0] == g[None, :, 0])
    hit = np.zeros(len(g), bool)
    tp = 0
    for row in iou:
        j = int(row.argmax()) if len(g) else -1
        if j >= 0 and row[j] >= overlap and not hit[j]:
            hit[j], tp = True, tp + 1
    return tp, len(p) - tp, len(g) - int(hit.sum())


@pytest.mark.parametrize("overlap", [0.0, 0.1, 0.25, 0.5])
def test_counts_agree_with_the_script_rule_on_random_sequences(overlap):
    generator = torch.Generator().manual_seed(0)
    for _ in range(300):
        n = int(torch.randint(1, 30, (1,), generator=generator))
        # few classes and sticky runs, so segments overlap, tie and share best matches
        target = torch.randint(0, 3, (n,), generator=generator).repeat_interleave(2)[:n]
        pred = torch.where(torch.rand(n, generator=generator) < 0.3, torch.randint(0, 3, (n,), generator=generator),
                           target)
        for background in (0, -1):
            expected = _script_counts(pred.tolist(), target.tolist(), overlap, background)
            got = segment_counts(pred, target, overlap, None if background < 0 else background)
            assert got == expected, (pred.tolist(), target.tolist(), overlap, background)


def test_unlabelled_frames_are_dropped():
    target = t([1, 1, -100, -100, 2])
    pred = t([1, 1, 2, 2, 2])
    assert frame_accuracy(pred, target) == 1.0  # the -100 frames do not count
    assert edit_score(pred, target) == 1.0 and f1_at_k(pred, target, 0.5) == 1.0


def test_segment_map_by_hand():
    gt = [[{"label": 1, "start": 0, "end": 10}, {"label": 2, "start": 12, "end": 20}],
          [{"label": 1, "start": 0, "end": 10}]]
    preds = [[{"label": 1, "start": 0, "end": 10, "score": 0.9}, {"label": 3, "start": 0, "end": 5, "score": 1.0}],
             [{"label": 1, "start": 5, "end": 10, "score": 0.8}, {"label": 1, "start": 0, "end": 4, "score": 0.95}]]
    # class 1 by score: v1 (0,4) IoU 0.4, v0 (0,10) IoU 1, v1 (5,10) IoU 0.5 (2 GT)
    # thr 0.3: TP, TP, FP (GT v1 taken): recall .5, 1, 1; precision 1, 1, 2/3 -> AP = .5*1 + .5*1 = 1
    # thr 0.5: FP, TP, TP: recall 0, .5, 1; precision 0, 1/2, 2/3 -> monotone 2/3, 2/3 -> AP = 2/3
    # thr 0.7: FP, TP, FP: recall 0, .5, .5; precision 0, 1/2, 1/3 -> AP = .5 * .5 = .25
    # class 2: GT, no prediction -> AP 0; class 3: prediction, no GT -> left out of the mean
    result = segment_map(preds, gt, num_classes=4, iou_thresholds=(0.3, 0.5, 0.7))
    assert result[0.3] == pytest.approx((1 + 0) / 2)
    assert result[0.5] == pytest.approx((2 / 3 + 0) / 2)
    assert result[0.7] == pytest.approx((0.25 + 0) / 2)
    assert segment_map([[]], [[]], 4, (0.5,)) == {0.5: 0.0}


def test_segmentation_report_over_two_videos():
    target0 = pred0 = t([0, 1, 1, 1, 0, 2, 2, 0])
    target1, pred1 = t([1, 1, 1, 1, 2, 2, 2, 2]), t([1, 1, 2, 1, 2, 2, 2, 2])
    report = segmentation_report([pred0, pred1], [target0, target1], None, ["bg", "a", "b"])
    assert set(report) == {"frame_accuracy", "edit", "f1@10", "f1@25", "f1@50", "map@0.3", "map@0.5", "map@0.7",
                           "num_videos", "per_class"}
    assert report["num_videos"] == 2
    assert report["frame_accuracy"] == pytest.approx(15 / 16)  # one wrong frame in 16
    # edit: video 0 -> 1; video 1: [1, 2, 1, 2] vs [1, 2] -> 1 - 2/4 = 0.5; mean 0.75
    assert report["edit"] == pytest.approx(0.75)
    # F1 (background left out): video 0 TP 2 ((1,1,4), (2,5,7)); video 1: (1,0,2) IoU .5 TP, (2,2,3) FP,
    # (1,3,4) best GT (1,0,4) taken -> FP, (2,4,8) TP. TP 4, FP 2, FN 0 -> P 2/3, R 1, F1 = (4/3) / (5/3) = 0.8
    # (IoU 0.5 >= 0.5, so the same at @50)
    assert report["f1@10"] == report["f1@25"] == report["f1@50"] == pytest.approx(0.8)
    with_background = segmentation_report([pred0, pred1], [target0, target1], None, ["bg", "a", "b"], background=None)
    # every class: video 0 adds its three background runs as TPs: TP 7, FP 2 -> F1 = (14/9) / (16/9) = 0.875
    assert with_background["f1@10"] == pytest.approx(0.875)
    # mAP without background, all scores 1.0 (video, then time order):
    # class 1: v0 (1,4) TP, v1 (0,2) IoU .5, v1 (3,4) IoU .25 (GT taken); 2 GT -> AP 1 at .3/.5; at .7: TP, FP, FP -> .5
    # class 2: v0 (5,7) TP, v1 (2,3) FP, v1 (4,8) TP; precision 1, 1/2, 2/3 -> AP = .5*1 + .5*2/3 = 5/6
    assert report["map@0.3"] == pytest.approx((1 + 5 / 6) / 2)
    assert report["map@0.5"] == pytest.approx((1 + 5 / 6) / 2)
    assert report["map@0.7"] == pytest.approx((0.5 + 5 / 6) / 2)
    rows = {r["class"]: r for r in report["per_class"]}
    assert (rows["bg"]["frames"], rows["a"]["frames"], rows["b"]["frames"]) == (3, 7, 6)
    assert rows["a"]["recall"] == pytest.approx(6 / 7) and rows["b"]["recall"] == 1.0


def test_report_probabilities_rank_the_segments():
    target = t([1, 1, 1, 1, 0, 0, 0, 0])
    pred = t([1, 1, 0, 0, 1, 1, 0, 0])  # (1,0,2) IoU .5 with GT (1,0,4); (1,4,6) IoU 0
    probs = torch.full((8, 2), 0.5)
    good_first = probs.clone()
    good_first[4:6, 1] = 0.2  # the false segment scores lower: TP then FP; 1 GT -> recall 1 at precision 1 -> AP 1
    bad_first = probs.clone()
    bad_first[0:2, 1] = 0.2  # FP then TP: recall 0, 1 at precision 0, 1/2 -> AP = 1 * 1/2
    classes = ["bg", "a"]
    assert segmentation_report([pred], [target], [good_first], classes)["map@0.5"] == pytest.approx(1.0)
    assert segmentation_report([pred], [target], [bad_first], classes)["map@0.5"] == pytest.approx(0.5)


def test_bad_inputs():
    with pytest.raises(ValueError, match="same number of frames"):
        frame_accuracy(t([1, 2]), t([1]))
    with pytest.raises(TypeError, match="integer class indices"):
        edit_score(torch.tensor([0.5]), t([1]))
    with pytest.raises(ValueError, match="overlap must be an IoU"):
        f1_at_k(t([1]), t([1]), 50)
    with pytest.raises(ValueError, match=r"probs must be \(T, K\)"):
        segmentation_report([t([1])], [t([1])], [torch.ones(1, 3)], ["bg", "a"])
