"""The comparison baselines: temporal transformer and torchvision's 3D CNNs."""
from __future__ import annotations

import json

import pytest
import torch

from cnnlstm import create_model
from cnnlstm.cli import main
from cnnlstm.models import WeightsNotFoundError
from cnnlstm.models.baselines import TransformerTemporal, clips_to_cthw, kinetics_weights_file, repeat_last_real_frame

THREE_D = ["r3d_18", "mc3_18", "r2plus1d_18"]


# --- layout helpers ---------------------------------------------------------------------------------
def test_clips_to_cthw_moves_time_behind_channels():
    x = torch.arange(2 * 3 * 4 * 5 * 6).reshape(2, 3, 4, 5, 6)  # (B=2, T=3, C=4, H=5, W=6)
    y = clips_to_cthw(x)
    assert y.shape == (2, 4, 3, 5, 6)  # (B, C, T, H, W)
    for b, t, c, h, w in [(0, 0, 0, 0, 0), (1, 2, 3, 4, 5), (0, 1, 2, 3, 4), (1, 0, 3, 1, 2)]:
        assert y[b, c, t, h, w] == x[b, t, c, h, w]


def test_repeat_last_real_frame_fills_padding():
    x = torch.arange(2 * 4).reshape(2, 4).float()  # (B, T) stands in for (B, T, C, H, W)
    assert repeat_last_real_frame(x, None) is x
    out = repeat_last_real_frame(x, torch.tensor([4, 2]))
    assert out.tolist() == [[0, 1, 2, 3], [4, 5, 5, 5]]


# --- temporal transformer -----------------------------------------------------------------------------
@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_transformer_shapes(positions, pooling):
    m = TransformerTemporal(12, 16, num_layers=1, num_heads=2, positions=positions, pooling=pooling, max_len=8)
    out = m(torch.randn(2, 5, 12), torch.tensor([5, 3]))
    assert out.sequence.shape == (2, 5, 16) and out.final.shape == (2, 16) and out.state is None
    assert (m.cls_token is not None) == (pooling == "cls")
    params = dict(m.named_parameters())
    assert ("pos_embed" in params) == (positions == "learned")
    assert not m.causal


def test_transformer_mean_pooling_is_the_masked_mean_of_the_sequence():
    m = TransformerTemporal(12, 16, num_layers=1, num_heads=2, pooling="mean").eval()
    out = m(torch.randn(2, 5, 12), torch.tensor([5, 3]))
    torch.testing.assert_close(out.final[1], out.sequence[1, :3].mean(0))


def test_sinusoidal_positions_are_fixed_and_order_matters():
    m = TransformerTemporal(12, 16, num_layers=1, num_heads=2, positions="sinusoidal", pooling="mean",
                            dropout=0.0).eval()
    assert "pos_embed" not in m.state_dict()  # recomputed, not saved
    x = torch.randn(1, 5, 12)
    seq = m(x).sequence
    shuffled = m(x[:, [4, 3, 2, 1, 0]]).sequence
    assert not torch.allclose(seq[:, [4, 3, 2, 1, 0]], shuffled, atol=1e-4), "positions must make order matter"


def test_learned_positions_start_from_the_sinusoidal_table():
    """Learned positions start at the sin/cos table (amplitude 1), not at noise 50x smaller than the
    projected frame features: on pairs8 the small start left the transformer near order-blind."""
    from cnnlstm.models.baselines import sinusoidal_positions

    m = TransformerTemporal(12, 15, num_layers=1, num_heads=3, max_len=8)  # odd width: cos fills one column less
    table = sinusoidal_positions(8, 15)
    torch.testing.assert_close(m.pos_embed.detach(), table)
    assert table[:, 0::2].abs().max() <= 1 and torch.all(table[0, 1::2] == 1), "sin(0)=0, cos(0)=1"
    assert m.pos_embed.requires_grad


@pytest.mark.parametrize("grad", [True, False], ids=["grad", "no_grad"])  # no_grad: PyTorch's inference fast path
@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_transformer_ignores_padding(pooling, grad):
    m = TransformerTemporal(12, 16, num_layers=2, num_heads=2, pooling=pooling).eval()
    clip = torch.randn(1, 3, 12)
    batch = torch.randn(2, 6, 12) * 5  # garbage padding, not zeros
    batch[1, :3] = clip[0]
    with torch.set_grad_enabled(grad):
        alone = m(clip)
        in_batch = m(batch, torch.tensor([6, 3]))
    torch.testing.assert_close(in_batch.final[1], alone.final[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(in_batch.sequence[1, :3], alone.sequence[0], atol=1e-5, rtol=1e-4)


def test_temporal_transformer_model_ignores_padding_without_grad():
    model = create_model("temporal_transformer", num_classes=5, backbone="test_tiny", d_model=16, num_heads=2,
                         num_layers=1).eval()
    clip = torch.randn(1, 3, 3, 32, 32)
    padded = torch.cat([clip, torch.randn(1, 2, 3, 32, 32)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(padded, torch.tensor([3])).logits, model(clip).logits, atol=1e-5, rtol=1e-4)
    assert not model.streamable and not model.per_frame
    with pytest.raises(ValueError, match="not causal"):
        model.init_state(1)


def test_transformer_bad_arguments():
    with pytest.raises(ValueError, match="divisible by num_heads; got 10 and 4"):
        TransformerTemporal(8, 10, num_heads=4)
    with pytest.raises(ValueError, match="pooling must be"):
        TransformerTemporal(8, 16, num_heads=2, pooling="max")
    with pytest.raises(ValueError, match="positions must be"):
        TransformerTemporal(8, 16, num_heads=2, positions="rope")
    m = TransformerTemporal(8, 16, num_heads=2, max_len=4)
    with pytest.raises(ValueError, match="5 frames.*max_len=4"):
        m(torch.randn(1, 5, 8))


# --- 3D CNNs -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def r3d():
    return create_model("r3d_18", num_classes=5)


def test_3d_model_surface(r3d):
    assert r3d.fixed_length and not r3d.streamable and not r3d.per_frame
    assert r3d.num_features == 512 and r3d.num_classes == 5
    enc = r3d.encoder
    assert enc.stage_names == ("stem", "layer1", "layer2", "layer3", "layer4")
    assert enc.last_stages == ("layer4",) and not enc.cacheable
    assert enc.data_config["mean"] == (0.43216, 0.394666, 0.37645)
    assert enc.data_config["std"] == (0.22803, 0.22145, 0.216989)
    assert enc.data_config["input_size"] == 112


def test_3d_model_takes_clips_only(r3d):
    with pytest.raises(ValueError, match=r"takes clips \(B, T, C, H, W\) only, not frame features"):
        r3d(torch.randn(2, 4, 512))
    with pytest.raises(ValueError, match="not causal"):
        r3d(torch.randn(1, 4, 3, 32, 32), return_state=True)


def test_3d_padding_repeats_the_last_real_frame(r3d):
    r3d.eval()
    clip = torch.randn(1, 3, 3, 32, 32)
    garbage = torch.cat([clip, torch.randn(1, 2, 3, 32, 32) * 5], dim=1)
    repeated = torch.cat([clip, clip[:, -1:], clip[:, -1:]], dim=1)  # what the sampler's "pad" policy gives
    with torch.no_grad():
        torch.testing.assert_close(r3d(garbage, torch.tensor([3])).logits, r3d(repeated).logits)


def test_3d_reset_head():
    model = create_model("mc3_18", num_classes=5).eval()
    model.reset_head(0)
    assert model(torch.randn(1, 4, 3, 32, 32)).logits.shape == (1, 512)


def test_3d_freeze_then_unfreeze_last_trains_only_layer4_and_head():
    model = create_model("r3d_18", num_classes=5)
    model.encoder.freeze()
    model.encoder.unfreeze("last")
    model.train()
    trainable = {n.split(".")[0] if n.startswith("head") else ".".join(n.split(".")[:3])
                 for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"encoder.stages.layer4", "head"}
    assert model.encoder.trainable_stages == ("layer4",)
    assert not any(m.training for m in model.encoder.stages["layer3"].modules()), "frozen BatchNorm stays in eval mode"
    assert all(m.training for m in model.encoder.stages["layer4"].modules())


def test_3d_channels_last_as_the_training_loop_asks():
    model = create_model("mc3_18", num_classes=5).eval()
    x = torch.randn(1, 4, 3, 32, 32)
    with torch.no_grad():
        ref = model(x).logits
        model.encoder.to(memory_format=torch.channels_last)  # train.py does this for every encoder
        assert model.encoder.stages["stem"][0].weight.is_contiguous(memory_format=torch.channels_last_3d)
        torch.testing.assert_close(model(x).logits, ref, atol=1e-4, rtol=1e-4)


def test_3d_trunk_runs_in_fp32_under_cpu_autocast(r3d):
    """CPU bf16 Conv3d weight gradients came out NaN at random (torch 2.14.1): with gradients the trunk
    leaves autocast, the head keeps it, every convolution's gradient is fp32 and finite; inference keeps bf16."""
    r3d.train()
    seen = []
    hook = r3d.encoder.stages["layer4"].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    clips = torch.randn(2, 4, 3, 32, 32)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            with torch.no_grad():
                r3d.forward_features(clips)
            feats = r3d.forward_features(clips)
            logits = r3d.forward_head(feats)
    finally:
        hook.remove()
    assert seen == [torch.bfloat16, torch.float32] and feats.dtype == torch.float32 and logits.dtype == torch.bfloat16
    r3d.zero_grad()
    logits.float().sum().backward()
    convs = [m.weight for m in r3d.encoder.modules() if isinstance(m, torch.nn.Conv3d)]
    assert convs and all(w.grad is not None and torch.isfinite(w.grad).all() for w in convs)


def test_kinetics_weights_missing_offline_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("CNNLSTM_OFFLINE", "1")  # online, "kinetics" downloads: see test_weights_download.py
    with pytest.raises(WeightsNotFoundError, match=r"r3d_18-b3b3357e\.pth.*downloads are off \(CNNLSTM_OFFLINE=1\)"):
        create_model("r3d_18", num_classes=5, weights="kinetics")
    with pytest.raises(ValueError, match="weights='kinetics'"):
        create_model("r3d_18", num_classes=5, weights="imagenet")


def test_kinetics_weights_load_from_the_torch_cache_and_from_a_file(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("CNNLSTM_OFFLINE", "1")  # a cached file needs no network
    monkeypatch.delenv("CNNLSTM_WEIGHTS_URL", raising=False)
    path, url = kinetics_weights_file("r3d_18")
    assert path.parent == tmp_path / "hub" / "checkpoints" and url.endswith(path.name)
    path.parent.mkdir(parents=True)
    state = torchvision.models.video.r3d_18(weights=None, num_classes=400).state_dict()  # a Kinetics-shaped checkpoint
    torch.save(state, path)
    for weights in ("kinetics", str(path)):
        model = create_model("r3d_18", num_classes=5, weights=weights)
        torch.testing.assert_close(model.encoder.stages["layer4"][1].conv2[0].weight, state["layer4.1.conv2.0.weight"],
                                   rtol=0, atol=0)
        torch.testing.assert_close(model.encoder.stages["stem"][0].weight, state["stem.0.weight"], rtol=0, atol=0)
        assert model.head.fc.out_features == 5  # the Kinetics classifier is not loaded


# --- listing ---------------------------------------------------------------------------------------------
def test_cli_lists_the_baselines(capsys):
    assert main(["models", "--json"]) == 0
    rows = {m["name"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    for name in THREE_D + ["temporal_transformer"]:
        assert rows[name]["output"] == "clip" and rows[name]["streamable"] is False
        assert rows[name]["description"]
