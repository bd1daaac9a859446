"""The autoregressive per-frame labeller (seq2seq_ar_cnn_lstm), tiny backbone, tiny clips."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnlstm import create_model, list_models
from cnnlstm.models.label_decoder import AutoregressiveLabeller

K = 5


def build(**kw):
    args = dict(backbone="test_tiny", pool="avg", hidden_size=16, label_embed=8)  # avg pool: D = 32
    args.update(kw)
    return create_model("seq2seq_ar_cnn_lstm", num_classes=K, **args)


def test_registered_with_the_training_surface():
    assert "seq2seq_ar_cnn_lstm" in list_models()
    model = build()
    assert isinstance(model, AutoregressiveLabeller)
    assert model.per_frame and model.autoregressive and not model.streamable
    assert model.num_classes == K and model.num_features == model.encoder.num_features == 32
    assert model.encoder.data_config["input_size"] and not model.encoder.cacheable
    model.encoder.freeze()
    assert model.encoder.cacheable
    with pytest.raises(ValueError, match="not causal"):
        model.init_state(1)


@pytest.mark.parametrize("targets", [False, True])
def test_shapes_from_clips_and_features(targets):
    model = build().eval()
    clips = torch.randn(2, 4, 3, 32, 32)
    y = torch.randint(0, K, (2, 4)) if targets else None
    out = model(clips, torch.tensor([4, 3]), targets=y)
    assert out.logits.shape == (2, 4, K) and torch.isfinite(out.logits).all()
    feats = torch.randn(2, 6, model.num_features)
    assert model(feats, targets=None).logits.shape == (2, 6, K)


def test_padding_does_not_change_real_frames():
    model = build().eval()
    feats = torch.randn(1, 5, 32)
    targets = torch.randint(0, K, (1, 5))
    for y in (None, targets):
        alone = model(feats, targets=y).logits
        batch = torch.randn(2, 8, 32) * 5  # garbage padding, a longer batch mate
        batch[0, :5] = feats[0]
        padded_y = None if y is None else torch.cat([y, torch.full((1, 3), -100)], 1).expand(2, 8).clone()
        got = model(batch, torch.tensor([5, 8]), targets=padded_y).logits
        torch.testing.assert_close(got[0, :5], alone[0], atol=1e-5, rtol=1e-4)
    # clips: the CNN sees only real frames, the same outputs
    clip = torch.randn(1, 3, 3, 32, 32)
    padded = torch.cat([clip, torch.randn(1, 2, 3, 32, 32)], 1)
    torch.testing.assert_close(model(padded, torch.tensor([3])).logits[0, :3], model(clip).logits[0], atol=1e-5,
                               rtol=1e-4)


@pytest.mark.parametrize("teacher_forcing", [1.0, 0.5, None], ids=["teacher", "scheduled", "greedy"])
def test_every_trainable_parameter_gets_a_gradient(teacher_forcing):
    model = build().train()
    targets = None if teacher_forcing is None else torch.randint(0, K, (2, 4))
    out = model(torch.randn(2, 4, 3, 32, 32), torch.tensor([4, 2]), targets=targets,
                teacher_forcing=teacher_forcing or 1.0)
    out.logits.pow(2).sum().backward()
    missing = [n for n,
               p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not missing, f"no gradient reached: {missing}"


def test_teacher_forcing_equals_the_loop_fed_the_truth():
    model = build().eval()
    feats = torch.randn(3, 7, 32)
    targets = torch.randint(0, K, (3, 7))
    targets[1, 2] = -100  # an unlabelled frame inside: both paths feed <start> after it
    targets[2, 5:] = -100  # padding
    enc = model.temporal(feats).sequence
    vectorised = model(feats, targets=targets, teacher_forcing=1.0).logits
    loop = model._decode_loop(enc, targets, teacher_forcing=1.0)
    torch.testing.assert_close(vectorised, loop, atol=1e-5, rtol=1e-4)
    # the fed labels matter: other targets change the logits after frame 0, never at frame 0
    other = (targets.clamp(min=0) + 1) % K
    changed = model(feats, targets=other).logits
    torch.testing.assert_close(changed[:, 0], vectorised[:, 0])
    assert not torch.allclose(changed[:, 1:], vectorised[:, 1:])


def test_without_targets_it_feeds_its_own_greedy_labels():
    model = build().eval()
    feats = torch.randn(2, 6, 32)
    greedy = model(feats).logits
    fed_own = model(feats, targets=greedy.argmax(-1), teacher_forcing=1.0).logits  # the same labels, teacher forced
    torch.testing.assert_close(greedy, fed_own, atol=1e-5, rtol=1e-4)
    never_truth = model(feats, targets=torch.randint(0, K, (2, 6)), teacher_forcing=0.0).logits
    torch.testing.assert_close(never_truth, greedy, atol=1e-5, rtol=1e-4)


def test_overfits_an_order_dependent_label_sequence():
    # the label at t is the number of "events" so far, mod K: it depends on the order of the frames
    torch.manual_seed(0)
    model = build(hidden_size=32)
    B, T = 8, 10
    events = (torch.rand(B, T) < 0.4).float()
    feats = events[..., None] * torch.ones(B, T, 32) + 0.1 * torch.randn(B, T, 32)
    targets = events.long().cumsum(1) % K
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for step in range(120):
        logits = model(feats, targets=targets, teacher_forcing=1.0 if step < 60 else 0.7).logits
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], (losses[0], losses[-1])
    accuracy = (model.eval()(feats).logits.argmax(-1) == targets).float().mean()
    assert accuracy > 0.8, accuracy


def test_reset_head_and_bad_inputs():
    model = build()
    model.reset_head(3)
    assert model.num_classes == 3 and model.label_embedding.num_embeddings == 3
    assert model(torch.randn(1, 4, 32)).logits.shape == (1, 4, 3)
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        model.reset_head(0)
    with pytest.raises(ValueError, match=r"targets must be < K=3"):
        model(torch.randn(1, 4, 32), targets=torch.full((1, 4), 3))
    with pytest.raises(ValueError, match=r"targets must be integer labels \(B, T\) = \(1, 4\)"):
        model(torch.randn(1, 4, 32), targets=torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="teacher_forcing is a probability"):
        model(torch.randn(1, 4, 32), targets=torch.zeros(1, 4, dtype=torch.long), teacher_forcing=2.0)
    with pytest.raises(ValueError, match="features must have D=32"):
        model(torch.randn(1, 4, 31))
    with pytest.raises(ValueError, match="not causal-streamable"):
        model(torch.randn(1, 4, 32), return_state=True)
