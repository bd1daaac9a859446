"""Greedy and beam search over the captioning model; the attention plot."""
from __future__ import annotations

import itertools

import pytest
import torch

from cnnlstm import create_model
from cnnlstm.tasks.caption.generate import beam_search, greedy_search
from cnnlstm.tasks.caption.viz import plot_caption_attention

BOS, EOS = 1, 2


def peaky_model(seed: int, vocab: int = 9):
    """A random captioner with confident outputs, so captions end at different lengths."""
    torch.manual_seed(seed)
    model = create_model("caption_lstm", num_classes=vocab, backbone="test_tiny", hidden_size=16, embed_dim=8).eval()
    with torch.no_grad():
        model.out.weight.mul_(6)
        model.out.bias.mul_(3)
    return model


def videos(seed: int, model):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(3, 6, model.num_features, generator=g), torch.tensor([6, 4, 2])


def sequence_logprob(model, x, lengths, tokens: list[int], ended: bool) -> float:
    """Sum of log-probs of ``tokens`` (+ <eos>) for one video, by teacher forcing."""
    out = tokens + ([EOS] if ended else [])
    caps = torch.tensor([[BOS] + out[:-1]])
    with torch.no_grad():
        logp = torch.log_softmax(model(x, lengths, captions=caps).logits.float(), -1)[0]  # (N, V)
    return float(logp[torch.arange(len(out)), torch.tensor(out)].sum())


def penalty(n: int, alpha: float) -> float:
    return ((5 + n) / 6) ** alpha


@pytest.mark.parametrize("seed", range(4))
def test_beam_of_one_is_greedy_and_wider_beams_score_at_least_as_well(seed):
    model = peaky_model(seed)
    x, lengths = videos(seed, model)
    greedy = greedy_search(model, x, lengths, max_len=8)
    one = beam_search(model, x, lengths, beam_size=1, length_penalty=0.0, max_len=8)
    four = beam_search(model, x, lengths, beam_size=4, length_penalty=0.0, max_len=8)
    for g, b1, b4 in zip(greedy, one, four, strict=True):
        assert b1["tokens"] == g["tokens"] and b1["score"] == g["score"]
        torch.testing.assert_close(b1["attention"], g["attention"])
        assert b4["score"] >= g["score"] - 1e-6


@pytest.mark.parametrize("search", ["greedy", "beam"])
@pytest.mark.parametrize("alpha", [0.0, 0.8])
def test_scores_attention_and_lengths_are_consistent(search, alpha):
    finished = unfinished = 0
    for seed in range(3):
        model = peaky_model(seed)
        x, lengths = videos(seed, model)
        if search == "greedy":
            results, alpha = greedy_search(model, x, lengths, max_len=6), 0.0
        else:
            results = beam_search(model, x, lengths, beam_size=3, length_penalty=alpha, max_len=6)
        for b, r in enumerate(results):
            n, T = r["attention"].shape
            assert T == 6 and len(r["tokens"]) <= 6 and EOS not in r["tokens"]
            ended = n == len(r["tokens"]) + 1
            assert ended or (n == len(r["tokens"]) == 6), "unfinished captions stop at max_len"
            finished, unfinished = finished + ended, unfinished + (not ended)
            assert torch.all(r["attention"][:, lengths[b]:] == 0), "padding gets no attention"
            torch.testing.assert_close(r["attention"].sum(1), torch.ones(n))
            raw = sequence_logprob(model, x[b : b + 1, : lengths[b]], None, r["tokens"], ended)
            assert r["score"] == pytest.approx(raw / penalty(n, alpha), abs=1e-4)
    assert finished and unfinished, "the seeds should give both finished and max_len captions"


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_a_beam_as_wide_as_every_prefix_finds_the_best_caption(alpha):
    """With K >= V^(max_len - 1) beams nothing is pruned: compare with exhaustive search."""
    vocab, max_len = 6, 3
    model = peaky_model(7, vocab)
    x, lengths = videos(7, model)
    best = []
    for b in range(3):
        xb = x[b : b + 1, : lengths[b]]
        scores = {}
        for n in range(1, max_len + 1):
            for words in itertools.product([v for v in range(vocab) if v != EOS], repeat=n - 1):
                scores[(words, True)] = sequence_logprob(model, xb, None, list(words), True) / penalty(n, alpha)
        for words in itertools.product([v for v in range(vocab) if v != EOS], repeat=max_len):
            scores[(words, False)] = sequence_logprob(model, xb, None, list(words), False) / penalty(max_len, alpha)
        best.append(max(scores.items(), key=lambda kv: kv[1]))
    results = beam_search(model, x, lengths, beam_size=vocab ** (max_len - 1), length_penalty=alpha, max_len=max_len)
    for r, ((words, _), score) in zip(results, best, strict=True):
        assert tuple(r["tokens"]) == words
        assert r["score"] == pytest.approx(score, abs=1e-4)


def test_batched_search_equals_one_video_at_a_time_and_encodes_once():
    model = peaky_model(1)
    x, lengths = videos(1, model)
    calls = []
    encode = model.encode
    model.encode = lambda *a, **k: calls.append(1) or encode(*a, **k)
    batched = beam_search(model, x, lengths, beam_size=3, max_len=7)
    assert len(calls) == 1
    for b, r in enumerate(batched):
        alone = beam_search(model, x[b : b + 1, : lengths[b]], beam_size=3, max_len=7)[0]
        assert alone["tokens"] == r["tokens"]
        assert alone["score"] == pytest.approx(r["score"], abs=1e-5)
        torch.testing.assert_close(alone["attention"], r["attention"][:, : lengths[b]])
        greedy_alone = greedy_search(model, x[b : b + 1, : lengths[b]], max_len=7)[0]
        assert greedy_alone["tokens"] == greedy_search(model, x, lengths, max_len=7)[b]["tokens"]


def test_bad_arguments():
    model = peaky_model(0)
    x, _ = videos(0, model)
    with pytest.raises(ValueError, match="max_len"):
        greedy_search(model, x, max_len=0)
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(model, x, beam_size=0)


def test_attention_plot_is_written(tmp_path):
    model = peaky_model(2)
    clips = torch.randint(0, 256, (1, 5, 3, 32, 32), dtype=torch.uint8)
    result = greedy_search(model, clips.float() / 255, max_len=4)[0]
    words = [f"w{t}" for t in result["tokens"]]
    path = plot_caption_attention(clips[0], words, result["attention"], tmp_path / "plots" / "attention.png",
                                  title="test")
    assert path.endswith("attention.png") and (tmp_path / "plots" / "attention.png").stat().st_size > 1000
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="attention must be"):
        plot_caption_attention(clips[0], words, torch.rand(len(words) + 2, 5), tmp_path / "bad.png")
    with pytest.raises(TypeError, match="uint8"):
        plot_caption_attention(clips[0].float(), words, result["attention"], tmp_path / "bad.png")
