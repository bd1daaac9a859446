"""The captioning model: shapes, padding, teacher forcing vs free running, loss masking, learning."""
from __future__ import annotations

import pytest
import torch
from caption_batches import decoder_batch

from cnnlstm import create_model, list_models
from cnnlstm.tasks.caption.generate import greedy_search
from cnnlstm.tasks.caption.metrics import bleu
from cnnlstm.tasks.caption.task import caption_loss
from cnnlstm.tasks.caption.text import Vocabulary

V = 11  # odd on purpose
TINY = dict(backbone="test_tiny", pool="avg", hidden_size=16, embed_dim=8)  # avg pool: D = 32
VARIANTS = [{}, {"attention": "luong"}, {"encoder_lstm": False}, {"num_layers": 2}, {"pool": "attention"}]
IDS = ["default", "luong", "no_encoder_lstm", "two_layers", "spatial_pool"]


def build(**kw):
    return create_model("caption_lstm", num_classes=V, **{**TINY, **kw})


def captions(B=2, L=5):
    caps = torch.randint(4, V, (B, L))
    caps[:, 0] = 1  # <bos>
    return caps


def test_registered_with_the_training_loop_surface():
    assert "caption_lstm" in list_models()
    model = build()
    assert (model.task, model.per_frame, model.streamable) == ("caption", False, False)
    assert model.num_classes == V and model.num_features == model.encoder.num_features == 32
    assert model.encoder.data_config["input_size"] == 32
    model.encoder.freeze()
    assert model.encoder.cacheable
    model.reset_head(13)
    assert model.num_classes == 13
    out = model(torch.randn(1, 3, 32), captions=torch.tensor([[1, 12]]))
    assert out.logits.shape == (1, 2, 13)


@pytest.mark.parametrize("kw", VARIANTS, ids=IDS)
def test_forward_shapes_from_clips_and_features(kw):
    model = build(**kw).eval()
    caps = captions()
    out = model(torch.randn(2, 4, 3, 32, 32), torch.tensor([4, 3]), captions=caps)
    assert out.logits.shape == (2, 5, V) and out.attention.shape == (2, 5, 4)
    assert torch.isfinite(out.logits).all()
    torch.testing.assert_close(out.attention.sum(-1), torch.ones(2, 5))
    feats = model(torch.randn(2, 4, model.num_features), torch.tensor([4, 2]), captions=caps)
    assert feats.logits.shape == (2, 5, V)
    assert torch.all(feats.attention[1, :, 2:] == 0)


@pytest.mark.parametrize("kw", VARIANTS, ids=IDS)
def test_every_trainable_parameter_gets_a_gradient(kw):
    model = build(**kw).train()
    out = model(torch.randn(2, 4, 3, 32, 32), torch.tensor([4, 2]), captions=captions())
    out.logits.pow(2).sum().backward()
    missing = [n for n,
               p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not missing, f"no gradient reached: {missing}"


@pytest.mark.parametrize("kw", VARIANTS[:3], ids=IDS[:3])
def test_output_ignores_video_padding_and_batch_mates(kw):
    model = build(**kw).eval()
    clip, caps = torch.randn(1, 3, 3, 32, 32), captions(B=2)
    alone = model(clip, captions=caps[1:])
    batch = torch.randn(2, 5, 3, 32, 32) * 5  # padding is garbage, not zeros
    batch[1, :3] = clip[0]
    in_batch = model(batch, torch.tensor([5, 3]), captions=caps)
    padded = model(torch.cat([clip, torch.randn(1, 4, 3, 32, 32)], 1), torch.tensor([3]), captions=caps[1:])
    for logits, attention in ((in_batch.logits[1], in_batch.attention[1]), (padded.logits[0], padded.attention[0])):
        torch.testing.assert_close(logits, alone.logits[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(attention[:, :3], alone.attention[0], atol=1e-5, rtol=1e-4)
        assert torch.all(attention[:, 3:] == 0), "padding must get exactly zero attention"


def test_teacher_forcing_and_free_running():
    model = build().eval()
    x, caps = torch.randn(2, 4, model.num_features), captions(L=6)
    forced = model(x, captions=caps).logits
    torch.manual_seed(1)
    again = model(x, captions=caps, teacher_forcing=1.0).logits
    torch.testing.assert_close(forced, again, rtol=0, atol=0)  # no sampling at ratio 1
    # ratio 0: the model feeds its own argmax, i.e. greedy decoding with the given first token
    free = model(x, captions=caps, teacher_forcing=0.0).logits  # (B, L, V)
    greedy = greedy_search(model, x, max_len=6, eos=-1)  # eos=-1: never stop early
    assert free.argmax(-1).tolist() == [g["tokens"] for g in greedy]
    assert not torch.allclose(free, forced)
    torch.testing.assert_close(free[:, 0], forced[:, 0])  # step 0 always reads <bos>
    # in between, each step and sample flips a coin: some steps agree with each extreme, not all
    mixed = model(x.repeat(8, 1, 1), captions=caps.repeat(8, 1), teacher_forcing=0.5).logits
    same_as_forced = torch.isclose(mixed, forced.repeat(8, 1, 1)).all(-1)[:, 1:]  # (8B, L - 1)
    assert same_as_forced.any() and not same_as_forced.all()


def test_bad_inputs_get_clear_errors():
    model = build()
    x = torch.randn(2, 4, model.num_features)
    with pytest.raises(ValueError, match="LongTensor"):
        model(x, captions=torch.ones(2, 3))
    with pytest.raises(ValueError, match="vocabulary"):
        model(x, captions=torch.full((2, 3), V))
    with pytest.raises(ValueError, match=r"B=2"):
        model(x, captions=torch.ones(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="teacher_forcing"):
        model(x, captions=torch.ones(2, 3, dtype=torch.long), teacher_forcing=1.5)
    with pytest.raises(ValueError, match="D=32"):
        model(torch.randn(2, 4, 7), captions=torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="attention"):
        build(attention="dot")
    with pytest.raises(ValueError, match="vocab_size"):
        create_model("caption_lstm", num_classes=4, **TINY)


def test_loss_ignores_caption_padding():
    logits = torch.randn(2, 4, V)
    targets = torch.tensor([[5, 6, 2, -100], [7, 2, -100, -100]])
    loss = caption_loss(logits, targets)
    real = targets != -100
    by_hand = -torch.log_softmax(logits, -1)[real].gather(1, targets[real][:, None]).mean()
    torch.testing.assert_close(loss, by_hand)
    changed = logits.clone()
    changed[~real] = torch.randn(int((~real).sum()), V) * 100  # garbage where the caption is padding
    assert caption_loss(changed, targets) == loss
    changed[0, 0] += torch.randn(V)  # a real position does count
    assert caption_loss(changed, targets) != loss


def test_learns_to_caption_in_order():
    """Three feature sequences: two events in either order; the captions name them in order."""
    torch.manual_seed(0)
    model = create_model("caption_lstm", num_classes=12, backbone="test_tiny", hidden_size=32, embed_dim=16,
                         dropout=0.0)
    texts = ["red moves left then shrinks", "red shrinks then moves left", "blue moves left then shrinks"]
    vocab = Vocabulary.build(texts)
    model.reset_head(len(vocab))
    D, T = model.num_features, 8
    color = {"red": torch.randn(D), "blue": torch.randn(D)}
    event = {"moves left": torch.randn(D), "shrinks": torch.randn(D)}
    def video(c, first, second):
        return torch.stack([color[c] + (event[first] if t < T // 2 else event[second]) for t in range(T)])  # (T, D)
    x = torch.stack([video("red", "moves left", "shrinks"), video("red", "shrinks", "moves left"),
                     video("blue", "moves left", "shrinks")])  # (3, T, D)
    lengths = torch.tensor([8, 6, 7])  # ragged on purpose
    inputs, targets = decoder_batch([vocab.encode(t) for t in texts])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(150):
        opt.zero_grad()
        caption_loss(model(x, lengths, captions=inputs).logits, targets).backward()
        opt.step()
    model.eval()
    hyps = [vocab.decode(g["tokens"]) for g in greedy_search(model, x, lengths, max_len=10)]
    assert hyps == texts
    assert bleu(hyps, [[t] for t in texts])[3] > 0.999


def test_frozen_encoder_is_bitwise_unchanged_while_the_decoder_trains():
    model = build()
    model.encoder.freeze()
    model.train()
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    decoder_before = model.out.weight.detach().clone()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(2):
        opt.zero_grad()
        out = model(torch.randn(2, 4, 3, 32, 32), torch.tensor([4, 3]), captions=captions())
        out.logits.pow(2).sum().backward()
        opt.step()
    changed = [k for k, v in model.encoder.state_dict().items() if not torch.equal(before[k], v)]
    assert not changed, f"frozen encoder changed: {changed}"
    assert not torch.equal(decoder_before, model.out.weight)
