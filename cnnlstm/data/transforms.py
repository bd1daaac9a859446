"""Clip transforms on whole clips: one crop box and one flip decision per clip, never per frame.

Letters: B batch, V views, T frames, C channels, H/W height/width, S crop size, K classes.

A clip is uint8 ``(T, C, H, W)``; torchvision's ``transforms.v2.functional`` ops treat it as a
batch of T images, so every frame gets the same geometry in one call. Build the transforms from
a backbone's data config (``DataConfig.from_backbone(backbone.data_config)``) so the mean, std
and input size always match the weights.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_CROP_PCT = 0.875  # eval resizes the shorter side to input_size / 0.875 (224 -> 256)
_INTERPOLATIONS = ("nearest", "bilinear", "bicubic")  # torchvision InterpolationMode values


def _functional():
    """torchvision's ``transforms.v2.functional``, imported on first use: importing torchvision
    takes seconds (it loads torch._dynamo), which ``cnnlstm --help`` and the task registry need not pay."""
    import torchvision.transforms.v2.functional

    return torchvision.transforms.v2.functional


@dataclass(frozen=True)
class DataConfig:
    """Preprocessing a backbone expects: normalisation, crop size, resize, interpolation."""

    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    input_size: int = 224  # side S of the square crop fed to the model
    resize: int | None = None  # eval: shorter side before the centre crop; None -> round(S / 0.875)
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(f"mean and std need one value per channel; got mean={self.mean}, std={self.std}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std values must be > 0; got {self.std}")
        if self.input_size <= 0 or (self.resize is not None and self.resize < self.input_size):
            raise ValueError(
                f"need 0 < input_size <= resize; got input_size={self.input_size}, resize={self.resize}. "
                "Leave resize=None for round(input_size / 0.875)"
            )
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {list(_INTERPOLATIONS)}; got {self.interpolation!r}")

    @property
    def resize_size(self) -> int:
        """Shorter side the eval transform resizes to before the centre crop."""
        return self.resize if self.resize is not None else round(self.input_size / DEFAULT_CROP_PCT)

    @property
    def interpolation_mode(self):
        """The torchvision ``InterpolationMode``."""
        from torchvision.transforms import InterpolationMode

        return InterpolationMode(self.interpolation)

    @classmethod
    def from_backbone(cls, data_config: Mapping[str, Any], **overrides: Any) -> DataConfig:
        """Build from a backbone's ``data_config`` mapping (keys mean, std, input_size, interpolation).

        ``input_size`` may be an int or timm's ``(C, H, W)`` (square crops only); an optional
        ``crop_pct`` sets ``resize``. Other keys are ignored; ``overrides`` win over the mapping.
        """
        keys = ("mean", "std", "input_size", "interpolation", "resize")
        values = {k: data_config[k] for k in keys if k in data_config}
        size = values.get("input_size")
        if isinstance(size, Sequence):
            if len(size) not in (2, 3) or size[-1] != size[-2]:
                raise ValueError(f"input_size must be an int or a square (C, H, W); got {size}")
            values["input_size"] = int(size[-1])
        if "crop_pct" in data_config and "resize" not in values:
            values["resize"] = round(values.get("input_size", cls.input_size) / float(data_config["crop_pct"]))
        values.update(overrides)
        return cls(**values)


def _check_clip(clip: Tensor, channels: int) -> None:
    if not isinstance(clip, Tensor) or clip.ndim != 4 or clip.shape[1] != channels:
        got = f"{clip.dtype} {tuple(clip.shape)}" if isinstance(clip, Tensor) else type(clip).__name__
        raise ValueError(
            f"expected one clip (T, C={channels}, H, W); got {got}. Use .permute(0, 3, 1, 2) for (T, H, W, C)"
        )


def _resize_shorter(clip: Tensor, size: int, cfg: DataConfig) -> Tensor:
    """torchvision's ``resize(clip, [size], antialias=True)`` on tensors, value for value, in plain torch.

    The eval path (predict, stream, serve) needs no torchvision import: that import pulls in
    torch._dynamo, ~200 MB resident and seconds at start-up. ``tests/data/test_transforms.py``
    checks every interpolation against torchvision.
    """
    h, w = clip.shape[-2:]
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)  # torchvision's rounding (truncation)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_h, new_w) == (h, w) or clip.numel() == 0:
        return clip
    mode = cfg.interpolation
    smooth = mode != "nearest"  # bilinear / bicubic: antialiased, align_corners=False
    native = clip.dtype in (torch.float32, torch.float64) or (clip.dtype == torch.uint8 and (
        not smooth or (clip.device.type == "cpu" and (mode == "bicubic" or _native_uint8_bilinear()))))
    x = clip.reshape(-1, *clip.shape[-3:])  # (N, C, H, W)
    x = torch.nn.functional.interpolate(x if native else x.float(), size=[new_h, new_w], mode=mode,
                                        align_corners=False if smooth else None, antialias=smooth)
    if not native and not clip.is_floating_point():
        if mode == "bicubic" and clip.dtype == torch.uint8:
            x = x.clamp_(0, 255)
        x = x.round_().to(clip.dtype)
    return x.reshape(*clip.shape[:-2], new_h, new_w)  # (..., C, H', W')


def _native_uint8_bilinear() -> bool:
    """Where torchvision resizes uint8 bilinearly without a float round trip (its own rule)."""
    import platform

    return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512") or platform.machine() in ("aarch64",
                                                                                                   "arm64")


def _center_crop(clip: Tensor, side: int) -> Tensor:
    """torchvision's ``center_crop`` for a crop inside the frame (the eval resize guarantees it)."""
    h, w = clip.shape[-2:]
    if side > h or side > w:
        return _functional().center_crop(clip, [side, side])  # torchvision pads with zeros
    top, left = int(round((h - side) / 2.0)), int(round((w - side) / 2.0))
    return clip[..., top:top + side, left:left + side]


def to_float_normalized(
    clip: Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    dtype: torch.dtype = torch.float32,
    inplace: bool = False,
) -> Tensor:
    """uint8 in [0, 255] (or float in [0, 1]) -> ``(x - mean) / std`` in ``dtype``; any ``(..., C, H, W)``.

    Works on one clip ``(T, C, H, W)`` or a batch ``(B, T, C, H, W)`` on any device (normalise
    on the GPU after the uint8 copy, which moves 4x fewer bytes). After the one dtype
    conversion the arithmetic is in place; ``inplace=True`` also skips the copy of a float
    input that already has ``dtype``.
    """
    if clip.ndim < 3 or clip.shape[-3] != len(mean):
        raise ValueError(f"expected (..., C={len(mean)}, H, W) to match mean/std; got {tuple(clip.shape)}")
    if clip.dtype == torch.uint8:
        x, scale = clip.to(dtype), 255.0  # (x / 255 - m) / s == (x - 255 m) / (255 s)
    elif clip.is_floating_point():
        x, scale = (clip if inplace and clip.dtype == dtype else clip.to(dtype, copy=True)), 1.0
    else:
        raise TypeError(f"expected a uint8 clip, or a float clip in [0, 1]; got {clip.dtype}")
    m = torch.as_tensor(mean, dtype=dtype, device=x.device)[:, None, None] * scale  # (C, 1, 1)
    s = torch.as_tensor(std, dtype=dtype, device=x.device)[:, None, None] * scale  # (C, 1, 1)
    return x.sub_(m).div_(s)


def denormalize(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Inverse of :func:`to_float_normalized`: float in [0, 1] (clamped), any ``(..., C, H, W)``."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device)[:, None, None]  # (C, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device)[:, None, None]  # (C, 1, 1)
    return (x * s + m).clamp_(0, 1)


def multiscale_crop_params(
    height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
    generator: torch.Generator | None = None,
) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of a random box for a multi-scale crop (MMAction2's ``MultiScaleCrop``).

    The box's side is ``s`` times the frame's shorter side, ``s`` uniform in ``scale``, with an
    aspect ratio log-uniform in ``ratio`` (clamped to the frame), at a uniform random position.
    The eval transform's centre crop is the box ``s = 0.875`` (``DEFAULT_CROP_PCT``), inside the
    default range, so training and testing see objects at the same scale.
    """
    u = torch.rand(4, generator=generator, dtype=torch.float64)
    side = min(height, width) * (scale[0] + (scale[1] - scale[0]) * float(u[0]))
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = math.exp(log_lo + (log_hi - log_lo) * float(u[1]))  # width / height
    w = min(width, max(1, round(side * math.sqrt(aspect))))
    h = min(height, max(1, round(side / math.sqrt(aspect))))
    return int(float(u[2]) * (height - h + 1)), int(float(u[3]) * (width - w + 1)), h, w


class ClipTransform:
    """uint8 clip ``(T, C, H, W)`` -> normalised float32 ``(T, C, S, S)``; see the presets below."""

    def __init__(
        self,
        cfg: DataConfig,
        *,
        train: bool = False,
        flip: bool = False,
        scale: tuple[float, float] = (0.66, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
    ) -> None:
        if not (0 < scale[0] <= scale[1] <= 1) or not (0 < ratio[0] <= ratio[1]):
            raise ValueError(
                f"need 0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= ratio[1]; got scale={scale}, ratio={ratio}"
            )
        self.cfg, self.train, self.flip = cfg, train, flip
        self.scale, self.ratio = tuple(scale), tuple(ratio)

    def __call__(self, clip: Tensor, generator: torch.Generator | None = None) -> Tensor:
        cfg = self.cfg
        _check_clip(clip, len(cfg.mean))
        size = [cfg.input_size, cfg.input_size]
        if self.train:
            height, width = clip.shape[-2:]
            top, left, h, w = multiscale_crop_params(height, width, self.scale, self.ratio, generator)
            clip = _functional().resized_crop(clip, top, left, h, w, size, interpolation=cfg.interpolation_mode,
                                              antialias=True)
            # (T, C, S, S)
            if self.flip and float(torch.rand((), generator=generator)) < 0.5:
                clip = clip.flip(-1)
        else:
            clip = _resize_shorter(clip, cfg.resize_size, cfg)  # (T, C, H', W')
            clip = _center_crop(clip, cfg.input_size)  # (T, C, S, S)
        return to_float_normalized(clip, cfg.mean, cfg.std)

    def __repr__(self) -> str:
        extra = f", flip={self.flip}, scale={self.scale}, ratio={self.ratio}" if self.train else ""
        return f"{type(self).__name__}({self.cfg}, train={self.train}{extra})"


def train_transform(
    cfg: DataConfig,
    *,
    flip: bool = False,
    scale: tuple[float, float] = (0.66, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> ClipTransform:
    """Multi-scale crop (one box per clip), optional horizontal flip, float, normalise.

    The box side is ``scale`` times the frame's shorter side (MMAction2's TSN crop: 1 to 0.66), so
    the eval view (the centre 0.875) sits inside the training range. A random-resized crop down to
    25% of the area (the ImageNet recipe) cut the moving object out of small videos and kept a
    CNN-LSTM near chance on order-dependent classes (measured on held-out temporal-order data).

    ``flip`` is off by default: mirroring changes the meaning of direction-dependent labels
    ("moving something left to right", "swiping left"); turn it on only when the labels are
    symmetric.
    """
    return ClipTransform(cfg, train=True, flip=flip, scale=scale, ratio=ratio)


def eval_transform(cfg: DataConfig) -> ClipTransform:
    """Resize the shorter side to ``cfg.resize_size``, centre crop ``cfg.input_size``, float, normalise."""
    return ClipTransform(cfg, train=False)


class EvalResize:
    """The eval transform's first step alone: uint8 ``(T, C, H, W)`` -> uint8 with the shorter side
    ``cfg.resize_size``. Picklable: run it where frames are decoded (a worker process) so that
    full-size frames never travel; ``eval_transform(cfg)`` then gives exactly what it gives on the
    full-size frames (its resize of an already resized clip is a no-op)."""

    def __init__(self, cfg: DataConfig) -> None:
        self.cfg = cfg

    def __call__(self, clip: Tensor) -> Tensor:
        _check_clip(clip, len(self.cfg.mean))
        return _resize_shorter(clip, self.cfg.resize_size, self.cfg)  # (T, C, H', W')

    def __repr__(self) -> str:
        return f"EvalResize({self.cfg})"


def multi_view_crops(clip: Tensor, cfg: DataConfig, num_crops: int = 3) -> Tensor:
    """Spatial test-time views of one clip, normalised float32 ``(V, T, C, S, S)``.

    ``num_crops=1``: the eval transform's centre crop. ``3``: the shorter side is resized to S
    and three S x S crops are taken along the longer side (left/top, centre, right/bottom), so
    together they see the whole frame. ``5``: after the eval resize, four corners and the centre.
    Combine the model's outputs over views with :func:`average_views`.
    """
    _check_clip(clip, len(cfg.mean))
    s = cfg.input_size
    if num_crops == 1:
        return eval_transform(cfg)(clip)[None]  # (1, T, C, S, S)
    if num_crops == 3:
        clip = _resize_shorter(clip, s, cfg)  # (T, C, H', W') with min(H', W') = S
        h, w = clip.shape[-2:]
        if w >= h:
            boxes = [((h - s) // 2, left) for left in (0, (w - s) // 2, w - s)]
        else:
            boxes = [(top, (w - s) // 2) for top in (0, (h - s) // 2, h - s)]
    elif num_crops == 5:
        clip = _resize_shorter(clip, cfg.resize_size, cfg)  # (T, C, H', W')
        h, w = clip.shape[-2:]
        boxes = [(0, 0), (0, w - s), (h - s, 0), (h - s, w - s), ((h - s) // 2, (w - s) // 2)]
    else:
        raise ValueError(f"num_crops must be 1, 3 or 5; got {num_crops}")
    views = torch.stack([clip[..., top:top + s, left:left + s] for top, left in boxes])  # (V, T, C, S, S)
    return to_float_normalized(views, cfg.mean, cfg.std)


def average_views(logits: Tensor, *, softmax: bool = False) -> Tensor:
    """Combine per-view outputs: ``(V, K) -> (K,)`` or ``(B, V, K) -> (B, K)``.

    By default the logits are averaged (the same rule as averaging clips into a video score), so
    the result still goes into ``cross_entropy``/``argmax``. ``softmax=True`` averages the
    class probabilities instead and returns probabilities.
    """
    if logits.ndim not in (2, 3):
        raise ValueError(f"expected logits (V, K) or (B, V, K); got shape {tuple(logits.shape)}")
    scores = logits.softmax(dim=-1) if softmax else logits
    return scores.mean(dim=-2)  # (K,) or (B, K)


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DataConfig",
    "ClipTransform",
    "train_transform",
    "eval_transform",
    "EvalResize",
    "multi_view_crops",
    "to_float_normalized",
    "denormalize",
    "multiscale_crop_params",
    "average_views",
]
