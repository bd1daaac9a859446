from __future__ import annotations

import pytest
import torch

from cnnlstm.data.transforms import (
    IMAGENET_MEAN,
    DataConfig,
    average_views,
    denormalize,
    eval_transform,
    multi_view_crops,
    to_float_normalized,
    train_transform,
)

CFG = DataConfig(input_size=32)
HALF = DataConfig(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), input_size=32, resize=32)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _texture(t: int = 4, h: int = 48, w: int = 64, seed: int = 0) -> torch.Tensor:
    """uint8 (T, 3, H, W) whose frames share one random texture."""
    frame = torch.randint(0, 200, (3, h, w), dtype=torch.uint8, generator=_gen(seed))
    return frame.expand(t, -1, -1, -1).clone()


def _gradient(t: int = 4, h: int = 40, w: int = 64) -> torch.Tensor:
    """uint8 (T, 3, H, W), dark on the left and bright on the right."""
    ramp = torch.linspace(0, 255, w).round().to(torch.uint8)
    return ramp.expand(t, 3, h, w).clone()


@pytest.mark.parametrize(
    "make", [lambda: train_transform(CFG, flip=True), lambda: eval_transform(CFG)], ids=["train", "eval"]
)
def test_output_shape_dtype_and_identical_frames_stay_identical(make):
    out = make()(_texture(), generator=_gen(0))
    assert out.shape == (4, 3, 32, 32) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert torch.equal(out, out[:1].expand_as(out))


@pytest.mark.parametrize("seed", range(5))
def test_one_crop_box_for_the_whole_clip(seed):
    # frames differ only by a brightness offset; with the same box for every frame that offset survives
    clip = _texture(t=6) + torch.arange(6, dtype=torch.uint8)[:, None, None, None]  # (T, C, H, W)
    out = train_transform(HALF, flip=True)(clip, generator=_gen(seed))
    diff = (out - out[:1]) * 0.25 * 255  # back to uint8 steps
    expected = torch.arange(6.0)[:, None, None, None].expand_as(diff)
    torch.testing.assert_close(diff, expected, atol=1.01, rtol=0)
    assert diff.flatten(1).mean(1).sub(torch.arange(6.0)).abs().max() < 0.05


def test_moving_marker_moves_the_same_in_the_output():
    clip = torch.zeros(4, 3, 32, 64, dtype=torch.uint8)
    for t in range(4):  # a bright column moving 2 px per frame
        clip[t, :, :, 20 + 2 * t] = 255
    out = eval_transform(HALF)(clip)  # centre crop: columns 16..47
    cols = out[:, 0, 0].argmax(dim=-1)  # (T,)
    assert cols.tolist() == [4, 6, 8, 10]


def test_train_crop_depends_only_on_the_generator():
    tf, clip = train_transform(CFG), _texture(seed=1)
    assert torch.equal(tf(clip, generator=_gen(3)), tf(clip, generator=_gen(3)))
    outs = {tf(clip, generator=_gen(s)).sum().item() for s in range(5)}
    assert len(outs) > 1


def test_flip_is_off_by_default():
    clip = _gradient()
    for seed in range(20):
        out = train_transform(CFG)(clip, generator=_gen(seed))
        assert out[..., :4].mean() < out[..., -4:].mean(), "the dark left side must stay on the left"
    flipped = [train_transform(CFG, flip=True)(clip, generator=_gen(s)) for s in range(20)]
    n_flipped = sum(bool(o[..., :4].mean() > o[..., -4:].mean()) for o in flipped)
    assert 0 < n_flipped < 20


def test_normalize_known_values_and_round_trip():
    x = torch.tensor([0, 64, 128, 255], dtype=torch.uint8).expand(2, 3, 3, 4)  # (T, C, H, W)
    out = to_float_normalized(x, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    torch.testing.assert_close(out[0, 0, 0], (torch.tensor([0, 64, 128, 255]) / 255 - 0.5) / 0.25)
    back = (denormalize(out, (0.5,) * 3, (0.25,) * 3) * 255).round().to(torch.uint8)
    assert torch.equal(back, x)
    batch = torch.randint(0, 256, (2, 3, 3, 8, 8), dtype=torch.uint8)  # (B, T, C, H, W)
    y = to_float_normalized(batch, IMAGENET_MEAN, (0.229, 0.224, 0.225))
    torch.testing.assert_close(denormalize(y, IMAGENET_MEAN, (0.229, 0.224, 0.225)), batch / 255)
    f = torch.rand(2, 3, 4, 4)
    kept = f.clone()
    assert to_float_normalized(f, (0.5,) * 3, (0.5,) * 3).data_ptr() != f.data_ptr() and torch.equal(f, kept)
    assert to_float_normalized(f, (0.5,) * 3, (0.5,) * 3, inplace=True).data_ptr() == f.data_ptr()
    torch.testing.assert_close(f, kept * 2 - 1)
    with pytest.raises(ValueError, match="C=3"):
        to_float_normalized(torch.zeros(2, 8, 8, 3, dtype=torch.uint8), IMAGENET_MEAN, (1, 1, 1))


def test_eval_center_crop_picks_the_center():
    clip = torch.randint(0, 256, (2, 3, 32, 64), dtype=torch.uint8)
    out = eval_transform(HALF)(clip)
    expected = to_float_normalized(clip[..., 16:48], HALF.mean, HALF.std)
    torch.testing.assert_close(out, expected)


def test_eval_resizes_shorter_side_then_crops():
    assert DataConfig().resize_size == 256 and DataConfig(input_size=112).resize_size == 128
    out = eval_transform(DataConfig(input_size=16))(_texture(t=2, h=40, w=90))
    assert out.shape == (2, 3, 16, 16)


@pytest.mark.parametrize("num_crops", [1, 3, 5])
def test_multi_view_shapes(num_crops):
    views = multi_view_crops(_texture(t=3, h=40, w=70), CFG, num_crops=num_crops)
    assert views.shape == (num_crops, 3, 3, 32, 32) and views.dtype == torch.float32


@pytest.mark.parametrize("landscape", [True, False])
def test_three_crops_span_the_long_side(landscape):
    clip = torch.randint(0, 256, (2, 3, 32, 96), dtype=torch.uint8)  # shorter side already 32
    if not landscape:
        clip = clip.transpose(-1, -2).contiguous()  # (T, C, 96, 32)
    views = multi_view_crops(clip, HALF, num_crops=3)
    for v, start in enumerate((0, 32, 64)):
        part = clip[..., start:start + 32] if landscape else clip[..., start:start + 32, :]
        torch.testing.assert_close(views[v], to_float_normalized(part, HALF.mean, HALF.std))
    with pytest.raises(ValueError, match="num_crops"):
        multi_view_crops(clip, HALF, num_crops=4)


def test_average_views():
    logits = torch.randn(2, 3, 7)  # (B, V, K)
    torch.testing.assert_close(average_views(logits), logits.mean(1))
    assert average_views(logits[0]).shape == (7,)
    probs = average_views(logits, softmax=True)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2))
    with pytest.raises(ValueError, match="V, K"):
        average_views(torch.randn(7))


def test_data_config_from_backbone():
    cfg = DataConfig.from_backbone({"mean": [0.5] * 3, "std": (0.5,) * 3, "input_size": 112, "interpolation": "bicubic",
                                    "num_features": 512})
    assert cfg == DataConfig(mean=(0.5,) * 3, std=(0.5,) * 3, input_size=112, interpolation="bicubic")
    timm_like = DataConfig.from_backbone({"input_size": (3, 224, 224), "crop_pct": 0.95})
    assert timm_like.input_size == 224 and timm_like.resize_size == round(224 / 0.95)
    assert DataConfig.from_backbone({"input_size": 224}, input_size=160).input_size == 160
    with pytest.raises(ValueError, match="interpolation"):
        DataConfig(interpolation="lanczos")
    with pytest.raises(ValueError, match="std"):
        DataConfig(std=(0.2, 0.0, 0.2))


def test_bad_clip_layout_raises():
    with pytest.raises(ValueError, match=r"\(T, C=3, H, W\)"):
        eval_transform(CFG)(torch.zeros(4, 48, 64, 3, dtype=torch.uint8))


def test_multiscale_crop_boxes_stay_in_the_frame_and_in_the_scale_range():
    from cnnlstm.data.transforms import multiscale_crop_params

    for seed in range(50):
        top, left, h, w = multiscale_crop_params(60, 90, (0.66, 1.0), (3 / 4, 4 / 3), _gen(seed))
        assert 0 <= top and top + h <= 60 and 0 <= left and left + w <= 90
        side = (h * w) ** 0.5
        assert 0.66 * 60 * 0.99 <= side <= 60 * 1.16  # about s * shorter side, s in [0.66, 1]
    sides = {multiscale_crop_params(60, 90, (0.66, 1.0), (1.0, 1.0), _gen(s))[2] for s in range(50)}
    assert min(sides) < 45 < max(sides), "the scale varies"


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear", "bicubic"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("shape", [(3, 3, 41, 57), (2, 3, 64, 30), (1, 3, 20, 20)])
def test_the_eval_transform_equals_torchvisions_resize_and_center_crop(interpolation, dtype, shape):
    """The eval path resizes in plain torch (no torchvision import at start-up); torchvision is the reference."""
    from torchvision.transforms.v2 import functional as TF
    from torchvision.transforms.v2.functional import InterpolationMode

    clip = torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    clip = clip if dtype == torch.uint8 else clip.float() / 255
    cfg = DataConfig(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), input_size=24, resize=29,
                     interpolation=interpolation)
    ref = TF.resize(clip, [29], interpolation=InterpolationMode(interpolation), antialias=True)
    ref = TF.center_crop(ref, [24, 24])  # (T, C, 24, 24)
    torch.testing.assert_close(eval_transform(cfg)(clip), to_float_normalized(ref, cfg.mean, cfg.std), atol=0, rtol=0)
