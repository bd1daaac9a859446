"""Comparison baselines: a temporal transformer over frame features, and 3D CNNs over whole clips.

Letters: B batch, T frames, C channels, H/W height/width, D frame-feature size, d transformer
width, K classes.

* ``temporal_transformer`` is a :class:`~cnnlstm.models.video_model.VideoModel`: the same frame
  encoder as the CNN-LSTMs, with :class:`TransformerTemporal` in place of the LSTM.
* ``r3d_18``, ``mc3_18``, ``r2plus1d_18`` are torchvision's video ResNets. They convolve over time
  and space together, so they take clips only (no per-frame features) and see a fixed number of
  frames; :class:`Clip3DModel` gives them the surface the training loop expects (``encoder`` with
  named stages to freeze, ``data_config``, ``head``, ``reset_head``).

Comparisons differ by the model name only: same data, transforms (built from ``data_config``),
loop and metrics.
"""
from __future__ import annotations

import math
import os
from collections import OrderedDict

import torch
from torch import Tensor, nn

from . import weights as _weights
from ._registry import register_model
from ._seq import check_lengths, lengths_to_mask, masked_mean
from .backbones import StagedEncoder, create_encoder
from .heads import ClassifierHead
from .pools import FinalStatePool
from .temporal import TemporalOutput
from .video_model import ModelOutput, VideoModel

__all__ = [
    "TransformerTemporal",
    "Clip3DEncoder",
    "Clip3DModel",
    "clips_to_cthw",
    "temporal_transformer",
    "r3d_18",
    "mc3_18",
    "r2plus1d_18",
]

DEFAULT_BACKBONE = "resnet18"
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


# --- temporal transformer -------------------------------------------------------------------------
def sinusoidal_positions(max_len: int, d_model: int) -> Tensor:
    """The fixed sin/cos position table of "Attention Is All You Need": (max_len, d)."""
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]  # (max_len, 1)
    freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))  # (d/2,)
    table = torch.zeros(max_len, d_model)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: d_model // 2])
    return table


class TransformerTemporal(nn.Module):
    """Projection D -> d, positions, optional CLS token, then a transformer encoder over frames.

    Padding is excluded as attention keys (``key_padding_mask`` from ``lengths``), so a clip's
    output does not depend on its batch mates or on padding. ``pooling="cls"`` summarises with a
    learned CLS token's output, ``"mean"`` with the mean over real frames. It sees every frame, so
    it is not causal and cannot stream. ``positions="learned"`` starts from the sin/cos table and
    trains it; ``"sinusoidal"`` keeps the table fixed (not saved in the state dict).
    """

    causal = False

    def __init__(self, input_size: int, d_model: int, *, num_layers: int = 2, num_heads: int = 8, dropout: float = 0.1,
                 positions: str = "learned", max_len: int = 1024, pooling: str = "cls"):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model must be divisible by num_heads; got {d_model} and {num_heads}")
        if positions not in ("learned", "sinusoidal"):
            raise ValueError(f"positions must be 'learned' or 'sinusoidal'; got {positions!r}")
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean'; got {pooling!r}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1; got {num_layers}")
        self.out_features = d_model
        self.max_len = max_len
        self.pooling = pooling
        self.input_proj = nn.Linear(input_size, d_model)
        if positions == "learned":  # starts from the sin/cos table: order is visible from the first step
            self.pos_embed = nn.Parameter(sinusoidal_positions(max_len, d_model))  # (max_len, d)
        else:
            self.register_buffer("pos_embed", sinusoidal_positions(max_len, d_model), persistent=False)
        self.cls_token = nn.Parameter(torch.randn(1, 1, d_model) * 0.02) if pooling == "cls" else None
        layer = nn.TransformerEncoderLayer(d_model, num_heads, dim_feedforward=4 * d_model, dropout=dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        # no nested tensors: padded positions stay in the (B, T, d) layout, exactly as in training
        self.encoder = nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)

    def forward(self, x: Tensor, lengths: Tensor | None = None, state=None, need_state: bool = False) -> TemporalOutput:
        if state is not None or need_state:
            raise ValueError("a transformer over the whole clip cannot be streamed; use a causal model")
        B, T = x.shape[:2]
        if T > self.max_len:
            raise ValueError(f"clips have {T} frames but the transformer has positions for max_len={self.max_len}; "
                             "build it with a larger max_len or sample fewer frames")
        x = self.input_proj(x) + self.pos_embed[:T]  # (B, T, d)
        mask = None if lengths is None else lengths_to_mask(lengths, T)  # (B, T) True on real frames
        pad = None if mask is None else ~mask  # (B, T) True on padding
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1)  # (B, 1+T, d)
            if pad is not None:
                pad = torch.cat([pad.new_zeros(B, 1), pad], dim=1)  # (B, 1+T)
        out = self.encoder(x, src_key_padding_mask=pad)  # (B, 1+T, d) or (B, T, d)
        if self.cls_token is not None:
            return TemporalOutput(out[:, 1:], out[:, 0], None)  # (B, T, d), (B, d)
        return TemporalOutput(out, masked_mean(out, mask), None)  # (B, T, d), (B, d)


@register_model(recipe="transformer")
def temporal_transformer(*, num_classes: int, backbone: str = DEFAULT_BACKBONE, weights=None, pool: str | None = None,
                         d_model: int = 512, num_layers: int = 2, num_heads: int = 8, dropout: float = 0.1,
                         positions: str = "learned", pooling: str = "cls", max_len: int = 1024) -> VideoModel:
    """CNN -> transformer encoder over frame features -> CLS output (or masked mean) -> linear.

    A baseline for the LSTM: same frame encoder, attention over time instead of recurrence. It
    reads ``lengths`` (padding is masked out) but is not causal, so it does not stream.
    """
    encoder = create_encoder(backbone, weights=weights, pool=pool)
    temporal = TransformerTemporal(encoder.num_features, d_model, num_layers=num_layers, num_heads=num_heads,
                                   dropout=dropout, positions=positions, max_len=max_len, pooling=pooling)
    return VideoModel(encoder=encoder, temporal=temporal, pool=FinalStatePool(),
                      head=ClassifierHead(d_model, num_classes))


# --- 3D CNNs --------------------------------------------------------------------------------------
def clips_to_cthw(clips: Tensor) -> Tensor:
    """The one layout change for 3D CNNs: (B, T, C, H, W) -> (B, C, T, H, W)."""
    return clips.permute(0, 2, 1, 3, 4)  # (B, C, T, H, W)


def repeat_last_real_frame(clips: Tensor, lengths: Tensor | None) -> Tensor:
    """Replace padded frames by each clip's last real frame, as the default sampler's ``"pad"``
    policy does for short videos: (B, T, ...) -> (B, T, ...)."""
    if lengths is None:
        return clips
    B, T = clips.shape[:2]
    index = torch.minimum(torch.arange(T, device=clips.device)[None, :], lengths[:, None] - 1)  # (B, T)
    return clips[torch.arange(B, device=clips.device)[:, None], index]  # (B, T, ...)


kinetics_weights_file = _weights.default_weights_file  # the 3D CNNs' defaults are Kinetics-400 weights


def _load_3d_weights(net: nn.Module, weights: str | os.PathLike, arch: str) -> None:
    """Load ``weights`` ("kinetics" from the torch cache, downloaded on first use, or a local file) into ``net``."""
    if weights == "imagenet":
        raise ValueError(f"{arch} is a 3D CNN; its pretrained weights are weights='kinetics' (Kinetics-400), not "
                         "'imagenet'")
    if weights == "kinetics":
        weights = _weights.cached_weights(arch, "Kinetics-400")
    _weights.load_into(net, weights, arch=arch, ignore_prefixes=("fc.",))


class Clip3DEncoder(StagedEncoder):
    """A 3D CNN trunk (stages ``stem, layer1..layer4``) plus global average pooling:
    clips (B, C, T, H, W) -> clip features (B, D).

    Stages freeze and unfreeze by name like :class:`~cnnlstm.models.backbones.FrameEncoder`
    (frozen BatchNorm stays in eval mode). ``cacheable`` is always False: the features are one
    per clip and depend on the sampled frames together, so there are no per-frame features to cache.
    """

    cacheable = False

    def __init__(self, stages: "OrderedDict[str, nn.Module]", *, name: str, num_features: int = 512,
                 last_stages: tuple[str, ...] = ("layer4",), input_size: int = 112):
        super().__init__()
        self.name = name
        self.stages = nn.ModuleDict(stages)
        self.num_features = num_features
        self.last_stages = last_stages
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.data_config = {"mean": KINETICS_MEAN, "std": KINETICS_STD, "input_size": input_size,
                            "interpolation": "bilinear"}
        self._frozen: set[str] = set()

    def to(self, *args, **kwargs):
        """As ``nn.Module.to``; ``memory_format=torch.channels_last`` (what the training loop asks
        of every encoder) means ``channels_last_3d`` for these 5-D weights."""
        if kwargs.get("memory_format") is torch.channels_last:
            kwargs["memory_format"] = torch.channels_last_3d
        return super().to(*args, **kwargs)

    def forward(self, clips: Tensor) -> Tensor:
        """(B, C, T, H, W) -> (B, D). When it computes gradients under CPU autocast the trunk runs in fp32:
        there the bf16 weight gradient of ``Conv3d`` (oneDNN, torch 2.14.1) comes out NaN at random, in
        channels_last_3d and contiguous layouts alike, and the loop skipped 5-12 of r3d_18's 18 steps an
        epoch (docs/training.md). Inference keeps bf16."""
        if clips.device.type == "cpu" and torch.is_autocast_enabled("cpu") and torch.is_grad_enabled():
            with torch.autocast("cpu", enabled=False):
                return self._trunk(clips.float())
        return self._trunk(clips)

    def _trunk(self, clips: Tensor) -> Tensor:
        first = next(iter(self.stages.values()))
        weight = next(first.parameters())
        if weight.is_contiguous(memory_format=torch.channels_last_3d) and not weight.is_contiguous():
            clips = clips.contiguous(memory_format=torch.channels_last_3d)
        for stage in self.stages.values():
            clips = stage(clips)  # (B, D', T', h, w)
        return self.pool(clips).flatten(1)  # (B, D)


class Clip3DModel(nn.Module):
    """A 3D CNN clip classifier with the registry's model surface: clips (B, T, C, H, W) -> (B, K).

    It sees a fixed number of frames: padded frames (``lengths``) are replaced by each clip's last
    real frame, so its output depends on the padded length T (``fixed_length = True``).
    """

    fixed_length = True  # output depends on T: sample every clip to the same T
    per_frame = False
    streamable = False

    def __init__(self, *, encoder: Clip3DEncoder, head: ClassifierHead):
        super().__init__()
        self.encoder = encoder
        self.head = head

    @property
    def num_features(self) -> int:
        return self.encoder.num_features

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def reset_head(self, num_classes: int) -> None:
        """Replace the classifier for ``num_classes`` classes (0: the head returns pooled features)."""
        self.head.reset(num_classes)

    def init_state(self, batch_size: int, *, device=None, dtype=None):
        raise ValueError(f"{self.encoder.name} is a 3D CNN over the whole clip; it is not causal, so it cannot stream")

    def forward_features(self, clips: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Clips (B, T, C, H, W) -> clip features (B, D)."""
        clips = repeat_last_real_frame(clips, lengths)  # (B, T, C, H, W)
        return self.encoder(clips_to_cthw(clips))  # (B, D)

    def forward_head(self, x: Tensor) -> Tensor:
        return self.head(x)  # (B, K)

    def forward(self, x: Tensor, lengths: Tensor | None = None, *, state=None,
                return_state: bool = False) -> ModelOutput:
        """x: clips (B, T, C, H, W); lengths (B,) counts real frames (padding repeats the last one)."""
        if x.dim() == 3:
            raise ValueError(f"{self.encoder.name} is a 3D CNN and takes clips (B, T, C, H, W) only, not frame "
                             "features "
                             f"(B, T, D) (got shape {tuple(x.shape)}): it convolves over time and space together, "
                             "so it has no per-frame features")
        if x.dim() != 5:
            raise ValueError(f"{self.encoder.name} expects clips (B, T, C, H, W); got shape {tuple(x.shape)}")
        if state is not None or return_state:
            raise ValueError(f"{self.encoder.name} is a 3D CNN over the whole clip; it is not causal, so it has no "
                             "streaming state")
        lengths = check_lengths(lengths, x.shape[0], x.shape[1], x.device)
        return ModelOutput(self.forward_head(self.forward_features(x, lengths)))


def _create_3d(arch: str, *, num_classes: int, weights, dropout: float) -> Clip3DModel:
    import torchvision

    net = getattr(torchvision.models.video, arch)(weights=None)
    if weights is not None:
        _load_3d_weights(net, weights, arch)
    stages = OrderedDict(stem=net.stem)
    for name in ("layer1", "layer2", "layer3", "layer4"):
        stages[name] = getattr(net, name)
    encoder = Clip3DEncoder(stages, name=arch, num_features=net.fc.in_features)
    return Clip3DModel(encoder=encoder, head=ClassifierHead(encoder.num_features, num_classes, dropout=dropout))


_3D_DOC = """

    Takes clips (B, T, C, H, W) at 112x112 with Kinetics normalisation (``model.encoder.data_config``);
    frame features (B, T, D) raise a ValueError. It sees a fixed number of frames: variable length
    is handled by sampling every video to the same T (the default sampler's ``"pad"`` policy
    repeats the last frame of short videos). ``lengths`` is honoured the same way: padded frames
    are replaced by each clip's last real frame. ``weights``: None (random init), "kinetics"
    (torchvision's Kinetics-400 weights, downloaded on first use into the torch cache; see
    :mod:`cnnlstm.models.weights` for the offline switch and mirrors) or a local file.
    ``backbone`` is not used (the 3D trunk is fixed by the model name); it is accepted so every
    registered builder takes the same arguments.
    """


@register_model(recipe="cnn3d")
def r3d_18(*, num_classes: int, backbone: str | None = None, weights=None, dropout: float = 0.0) -> Clip3DModel:
    return _create_3d("r3d_18", num_classes=num_classes, weights=weights, dropout=dropout)


@register_model(recipe="cnn3d")
def mc3_18(*, num_classes: int, backbone: str | None = None, weights=None, dropout: float = 0.0) -> Clip3DModel:
    return _create_3d("mc3_18", num_classes=num_classes, weights=weights, dropout=dropout)


@register_model(recipe="cnn3d")
def r2plus1d_18(*, num_classes: int, backbone: str | None = None, weights=None, dropout: float = 0.0) -> Clip3DModel:
    return _create_3d("r2plus1d_18", num_classes=num_classes, weights=weights, dropout=dropout)


r3d_18.__doc__ = "3D ResNet-18 (R3D): 3D convolutions in every block -> average pool -> linear." + _3D_DOC
mc3_18.__doc__ = ("Mixed-convolution ResNet-18 (MC3): 3D convolutions early, 2D later -> average pool -> linear."
                  + _3D_DOC)
r2plus1d_18.__doc__ = ("R(2+1)D ResNet-18: each 3D convolution split into 2D spatial + 1D temporal -> average pool "
                       "-> linear." + _3D_DOC)
