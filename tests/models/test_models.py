"""Behaviour of every registered model, with the tiny test backbone on tiny clips."""
from __future__ import annotations

import pytest
import torch

import cnnlstm
from cnnlstm import create_model, list_models

K = 7  # odd on purpose
TINY = dict(backbone="test_tiny", hidden_size=16)
NO_HIDDEN = {"mean_pool"}
CLIPS_ONLY = {"r3d_18", "mc3_18", "r2plus1d_18"}  # 3D CNNs: full torchvision trunks, clips only

# (registered name, extra kwargs): every model plus the variants the seed names; the captioning model
# (a decoder fed with caption tokens) has its own tests in test_caption_model.py
CAPTION = {"caption_lstm"}
VARIANTS = [(name, {}) for name in list_models() if name not in CAPTION] + [
    ("cnn_lstm", {"bidirectional": True}),
    ("cnn_lstm", {"pool": "attention"}),
    ("seq2seq_cnn_lstm", {"pool": "grid"}),
    ("cnn_lstm_attention", {"bidirectional": False}),
    ("seq2seq_cnn_lstm", {"bidirectional": True}),
    ("seq2seq_cnn_lstm", {"feature_diff": True}),
    ("cnn_lstm", {"feature_diff": True}),
    ("bi_cnn_lstm", {"feature_diff": True}),
]
IDS = [n + "".join(f"-{k}={v}" for k, v in kw.items()) for n, kw in VARIANTS]


def build(name: str, **kw):
    if name in CLIPS_ONLY:
        return create_model(name, num_classes=K, **kw)
    args = dict(TINY)
    if name in NO_HIDDEN:
        args.pop("hidden_size")
    if name == "self_attention_lstm":
        args["num_heads"] = 4
    if name == "temporal_transformer":
        args.pop("hidden_size")
        args.update(d_model=16, num_heads=2, num_layers=1)
    args.update(kw)
    return create_model(name, num_classes=K, **args)


def clips(B=2, T=4, size=32):
    return torch.randn(B, T, 3, size, size)


def expected_shape(model, B, T):
    return (B, T, K) if model.per_frame else (B, K)


@pytest.mark.parametrize("name,kw", VARIANTS, ids=IDS)
def test_forward_shapes_from_clips_and_features(name, kw):
    model = build(name, **kw).eval()
    out = model(clips(), torch.tensor([4, 3]))
    assert out.logits.shape == expected_shape(model, 2, 4)
    assert torch.isfinite(out.logits).all()
    feats = torch.randn(2, 4, model.num_features)
    if name in CLIPS_ONLY:
        with pytest.raises(ValueError, match="takes clips"):
            model(feats)
        return
    assert model(feats, torch.tensor([4, 2])).logits.shape == expected_shape(model, 2, 4)


@pytest.mark.parametrize("name,kw", VARIANTS, ids=IDS)
def test_every_trainable_parameter_gets_a_gradient(name, kw):
    model = build(name, **kw).train()
    out = model(clips(), torch.tensor([4, 2]))
    out.logits.float().pow(2).sum().backward()
    missing = [n for n,
               p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not missing, f"no gradient reached: {missing}"


@pytest.mark.parametrize("name,kw", VARIANTS, ids=IDS)
def test_frozen_backbone_is_bitwise_unchanged_after_training_steps(name, kw):
    model = build(name, **kw)
    model.encoder.freeze()
    model.train()
    modules = [m for s in model.encoder.stages.values() for m in s.modules()]
    assert all(not m.training for m in modules), "frozen BatchNorm must stay in eval mode"
    before = {k: v.clone() for k, v in model.encoder.stages.state_dict().items()}
    head_before = [p.detach().clone() for p in model.head.parameters()]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(2):
        opt.zero_grad()
        model(clips(), torch.tensor([4, 3])).logits.pow(2).sum().backward()
        opt.step()
    after = model.encoder.stages.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert not changed, f"frozen backbone changed: {changed}"
    pairs = zip(head_before, model.head.parameters(), strict=True)
    assert any(not torch.equal(a, p) for a, p in pairs), "the head must train"


@pytest.mark.parametrize("name,kw", VARIANTS, ids=IDS)
def test_output_ignores_padding_and_batch_mates(name, kw):
    model = build(name, **kw).eval()
    if getattr(model, "fixed_length", False):
        pytest.skip(f"{name} sees a fixed number of frames (model.fixed_length): its output depends on T by design")
    clip = torch.randn(1, 3, 3, 32, 32)
    alone = model(clip)
    # in a batch with a longer clip, padded with garbage (not zeros)
    batch = torch.randn(2, 5, 3, 32, 32) * 5
    batch[1, :3] = clip[0]
    in_batch = model(batch, torch.tensor([5, 3]))
    # with extra padding appended
    padded = torch.cat([clip, torch.randn(1, 4, 3, 32, 32)], dim=1)
    with_padding = model(padded, torch.tensor([3]))

    ref = alone.logits[0]
    for got in (in_batch.logits[1], with_padding.logits[0]):
        got = got[:3] if model.per_frame else got
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)
    if alone.attention is not None:
        torch.testing.assert_close(in_batch.attention[1, :3], alone.attention[0], atol=1e-5, rtol=1e-4)
        assert torch.all(in_batch.attention[1, 3:] == 0), "padding must get zero attention"
    if alone.spatial_attention is not None:
        torch.testing.assert_close(in_batch.spatial_attention[1, :3], alone.spatial_attention[0], atol=1e-5, rtol=1e-4)


STREAMABLE = [(n, kw) for n, kw in VARIANTS if build(n, **kw).streamable]


def test_the_causal_models_are_the_streamable_ones():
    names = {(n, tuple(kw.items())) for n, kw in STREAMABLE}
    assert names == {
        ("cnn_lstm", ()), ("cnn_lstm", (("pool", "attention"),)), ("deep_cnn_lstm", ()), ("mean_pool", ()),
        ("seq2seq_cnn_lstm", ()), ("seq2seq_cnn_lstm", (("pool", "grid"),)), ("spatial_attention_cnn_lstm", ()),
        ("seq2seq_cnn_lstm", (("feature_diff", True),)), ("cnn_lstm", (("feature_diff", True),)),
                     ("cnn_lstm_attention", (("bidirectional", False),)),
    }


@pytest.mark.parametrize("name,kw", STREAMABLE, ids=[n + str(kw or "") for n, kw in STREAMABLE])
def test_stepping_frame_by_frame_equals_running_whole(name, kw):
    model = build(name, **kw).eval()
    video = clips(B=2, T=5)
    whole = model(video).logits
    state = model.init_state(2)
    steps = []
    for t in range(video.shape[1]):
        out, state = model.step(video[:, t], state)
        steps.append(out.logits)
    if model.per_frame:
        torch.testing.assert_close(torch.stack(steps, 1), whole, atol=1e-5, rtol=1e-4)
    else:
        torch.testing.assert_close(steps[-1], whole, atol=1e-5, rtol=1e-4)
        prefix = model(video[:, :3]).logits  # each step answers for the clip so far
        torch.testing.assert_close(steps[2], prefix, atol=1e-5, rtol=1e-4)
    # two chunks with the state carried over give the same as one piece
    first = model(video[:, :2], return_state=True)
    second = model(video[:, 2:], state=first.state)
    tail = second.logits if not model.per_frame else torch.cat([first.logits, second.logits], 1)
    torch.testing.assert_close(tail, whole, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name,kw", [v for v in VARIANTS if v not in STREAMABLE])
def test_non_causal_models_refuse_to_stream(name, kw):
    model = build(name, **kw)
    assert not model.streamable
    with pytest.raises(ValueError, match="not causal"):
        model.init_state(1)


def test_ragged_final_state_equals_each_clip_run_alone():
    model = build("cnn_lstm").eval()
    feats = torch.randn(2, 6, model.num_features)
    out = model(feats, torch.tensor([6, 3]), return_state=True)
    alone = model(feats[1:, :3], return_state=True)
    (h, c), _ = out.state
    (h1, c1), _ = alone.state
    torch.testing.assert_close(h[:, 1], h1[:, 0])
    torch.testing.assert_close(c[:, 1], c1[:, 0])


@pytest.mark.parametrize("name", ["cnn_lstm", "self_attention_lstm", "deep_cnn_lstm"])
def test_clip_logits_come_from_the_last_real_frame_output(name):
    # a mean over time of these stacks' outputs learned frame order slowly (docs/training.md): the head
    # reads the temporal output at each clip's last real frame
    model = build(name).eval()
    feats, lengths = torch.randn(2, 6, model.num_features), torch.tensor([6, 4])
    sequence = model.temporal(feats, lengths).sequence  # (B, T, H)
    last = sequence[torch.arange(2), lengths - 1]  # (B, H)
    torch.testing.assert_close(model(feats, lengths).logits, model.head(last))


# The models transcribed from the seed chapter (the baselines are new and have no seed count).
SEED_FAMILY = {
    "cnn_lstm", "bi_cnn_lstm", "cnn_lstm_attention", "self_attention_lstm", "deep_cnn_lstm",
    "seq2seq_cnn_lstm", "spatial_attention_cnn_lstm", "mean_pool",
}

# Parameter counts of the seed chapter's classes at their default sizes (ResNet-50 backbone,
# num_classes=101), computed once from a faithful transcription of the seed code with weights=None.
# One deliberate difference: the temporal attention's score has no bias (it cannot change a softmax).
SEED_COUNTS = {
    ("cnn_lstm", ()): 30_908_069,
    ("cnn_lstm", (("bidirectional", True),)): 40_405_157,
    ("bi_cnn_lstm", ()): 29_964_965,
    ("cnn_lstm_attention", ()): 40_536_486 - 1,  # without the seed's score bias: a no-op before the softmax
    ("self_attention_lstm", ()): 29_858_469,  # SelfAttentionLSTM(2048, 512, 8) + CNN + Linear(512, K)
    ("deep_cnn_lstm", ()): 33_018_021,
    ("seq2seq_cnn_lstm", ()): 30_908_069,
    ("spatial_attention_cnn_lstm", ()): 31_957_670,  # SpatialAttentionCNN + CNNLSTM's LSTM and head
    ("mean_pool", ()): 23_714_981,  # CNN + Linear(2048, K)
}


@pytest.mark.parametrize("key", SEED_COUNTS, ids=[k[0] + str(dict(k[1]) or "") for k in SEED_COUNTS])
def test_parameter_counts_match_the_seed(key):
    name, kw = key
    with torch.device("meta"):  # shapes only, no memory or init time
        model = create_model(name, num_classes=101, backbone="resnet50", **dict(kw))
    assert sum(p.numel() for p in model.parameters()) == SEED_COUNTS[key]


def test_every_seed_model_has_a_seed_count():
    assert {name for name, _ in SEED_COUNTS} == SEED_FAMILY
    assert SEED_FAMILY <= set(list_models())


def test_unknown_model_lists_the_closest_choices():
    with pytest.raises(ValueError, match=r"Unknown model 'cnn_lstmm'.*Did you mean 'cnn_lstm'.*Available: bi_cnn_lstm"):
        create_model("cnn_lstmm", num_classes=3)


def test_unknown_argument_names_the_builder_arguments():
    with pytest.raises(TypeError, match="hidden_size"):
        create_model("cnn_lstm", num_classes=3, backbone="test_tiny", hiden_size=3)


def test_duplicate_registration_raises():
    from cnnlstm.models._registry import register_model

    def cnn_lstm(**kw):  # same name as a registered model
        return None

    with pytest.raises(ValueError, match="already registered"):
        register_model(cnn_lstm)


def test_bad_inputs_get_clear_errors():
    model = build("cnn_lstm", pool="avg")  # D = 32
    with pytest.raises(ValueError, match=r"expected clips \(B, T, C, H, W\) or frame features"):
        model(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match="features must have D=32"):
        model(torch.randn(2, 4, 31))
    with pytest.raises(ValueError, match=r"every length must be in \[1, 4\]"):
        model(torch.randn(2, 4, 32), torch.tensor([5, 1]))
    with pytest.raises(TypeError, match="lengths must be integers"):
        model(torch.randn(2, 4, 32), torch.tensor([4.0, 1.0]))


def test_reset_head():
    model = build("cnn_lstm", pool="avg").eval()
    model.reset_head(3)
    assert model(torch.randn(1, 2, 32)).logits.shape == (1, 3)
    model.reset_head(0)
    assert model(torch.randn(1, 2, 32)).logits.shape == (1, 16)  # pooled features


def test_public_surface():
    assert set(cnnlstm.list_models()) >= {
        "cnn_lstm", "bi_cnn_lstm", "cnn_lstm_attention", "self_attention_lstm", "deep_cnn_lstm",
        "seq2seq_cnn_lstm", "spatial_attention_cnn_lstm", "mean_pool",
    }
    assert cnnlstm.list_models("*attention*") == ["cnn_lstm_attention", "self_attention_lstm",
                                                  "spatial_attention_cnn_lstm"]


def test_the_cnn_runs_only_on_real_frames():
    model = build("cnn_lstm").eval()
    seen = []
    model.encoder.stages["stem"].register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    model(clips(B=3, T=6), torch.tensor([6, 2, 1]))
    model(clips(B=2, T=4))
    assert seen == [9, 8]


def test_an_attention_checkpoint_with_the_old_score_bias_still_loads():
    """Runs saved before the score bias was dropped load: the bias shifted every score equally."""
    model = build("cnn_lstm_attention").eval()
    state = model.state_dict()
    key = next(k for k in state if k.endswith("attention.2.weight"))
    old = {**state, key.replace("weight", "bias"): torch.tensor([0.7])}
    x = torch.randn(2, 4, 3, 32, 32)
    before = model(x).logits
    model.load_state_dict(old)  # strict: no unexpected key
    assert torch.equal(model(x).logits, before)
