"""BLEU and CIDEr-D: our implementation against pycocoevalcap, and hand-checked values."""
from __future__ import annotations

import math

import pytest

from cnnlstm.tasks.caption.metrics import bleu, caption_report, cider_d
from cnnlstm.tasks.caption.text import tokenize

SETS = {
    "msvd_like": (
        ["a man is playing a guitar", "a woman is slicing an onion", "a cat is jumping", "two dogs run on the beach"],
        [
            ["a man plays a guitar", "a man is playing guitar", "someone is playing an acoustic guitar"],
            ["a woman slices an onion", "a lady is cutting an onion into pieces"],
            ["a cat jumps onto a table", "the kitten is jumping", "a cat is jumping up", "a cat leaps"],
            ["dogs are running on a beach", "two dogs play in the sand"],
        ],
    ),
    "short_and_long_hypotheses": (
        ["a", "the red square moves left then shrinks and then moves left again and again", "blue circle"],
        [
            ["a red square moves left then shrinks"],
            ["the red square moves left and then shrinks", "a red square first moves left then shrinks"],
            ["a blue circle grows", "the blue circle grows then moves up", "blue circle grows"],
        ],
    ),
    "repeats_and_clipping": (
        ["the the the the the the", "a dog a dog a dog", "nothing in common here"],
        [["the cat is on the mat", "there is a cat on the mat"], ["a dog runs", "a dog is running fast"],
         ["a bird flies", "the bird is flying"]],
    ),
    "raw_punctuation": (
        ["A Man's guitar, played loudly!", "Two dogs (brown) run -- fast."],
        [["a man's guitar is played loudly.", "A man plays his guitar"],
         ["two brown dogs run fast", "Dogs are running."]],
    ),
}


def coco(hyps, refs):
    """pycocoevalcap on the same tokenized strings."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    res = {i: [" ".join(tokenize(h))] for i, h in enumerate(hyps)}
    gts = {i: [" ".join(tokenize(r)) for r in rs] for i, rs in enumerate(refs)}
    b, _ = Bleu(4).compute_score(gts, res, verbose=0)
    c, _ = Cider().compute_score(gts, res)
    return b, float(c)


@pytest.mark.parametrize("name", list(SETS))
def test_matches_pycocoevalcap(name):
    pytest.importorskip("pycocoevalcap")
    hyps, refs = SETS[name]
    expected_bleu, expected_cider = coco(hyps, refs)
    assert bleu(hyps, refs) == pytest.approx(expected_bleu, abs=1e-6)
    assert cider_d(hyps, refs) == pytest.approx(expected_cider, abs=1e-6)
    assert 0 < expected_cider and any(0 < b < 1 for b in expected_bleu), "a nontrivial case"


def test_perfect_match():
    refs = [["a red square moves left then shrinks"], ["the blue circle grows and then moves up"]]
    hyps = [r[0] for r in refs]
    assert bleu(hyps, refs) == pytest.approx([1.0] * 4, abs=1e-9)
    # identical vectors: cosine 1 for every n, no length penalty -> 10 (x10 scale)
    assert cider_d(hyps, refs) == pytest.approx(10.0, abs=1e-9)


def test_hand_checked_values():
    # every n-gram right, but 4 words against a 5-word reference: brevity penalty exp(1 - 5/4)
    assert bleu(["a b c d"], [["a b c d e"]]) == pytest.approx([math.exp(-0.25)] * 4, abs=1e-9)
    # the closest reference length is used (4, not 8)
    assert bleu(["a b c d"], [["a b c d e f g h", "a b c x"]])[0] == pytest.approx(1.0, abs=1e-9)
    # unigram clipping: "the" counts at most twice; 2 of 6 words right; no bigram right
    b = bleu(["the the the the the the"], [["the cat is on the mat"]])
    assert b[0] == pytest.approx(2 / 6, abs=1e-9) and b[1] < 1e-6
    # CIDEr-D: one video only -> every n-gram has idf log(1) - log(1) = 0
    assert cider_d(["a b c"], [["a b c"]]) == 0.0


def test_report_and_bad_inputs():
    hyps, refs = SETS["msvd_like"]
    report = caption_report(hyps, refs)
    assert set(report) == {"bleu1", "bleu2", "bleu3", "bleu4", "cider", "num_videos"}
    assert report["num_videos"] == 4 and 1 >= report["bleu1"] >= report["bleu2"] >= report["bleu4"] > 0
    with pytest.raises(ValueError, match="2 hypotheses but 1"):
        bleu(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="non-empty list"):
        cider_d(["a"], [[]])
    with pytest.raises(ValueError, match="non-empty list"):
        cider_d(["a"], ["a"])
    with pytest.raises(TypeError, match="list of strings"):
        bleu("a b", [["a b"]])
    with pytest.raises(ValueError, match="empty"):
        caption_report([], [])
