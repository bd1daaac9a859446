"""Frame encoders: a 2D CNN applied to every frame, with time folded into the batch.

Letters: B batch, T frames, C channels, H/W height/width, D feature size, h/w feature-map size.
A :class:`FrameEncoder` maps clips (B, T, C, H, W) to features (B, T, D). Its CNN is an ordered
set of named stages (ResNet: ``stem, layer1..layer4``; EfficientNet-B0: ``stem, stage1..stage7,
conv_head``) that :meth:`FrameEncoder.freeze` / :meth:`FrameEncoder.unfreeze` address by name.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Callable, Iterable, NamedTuple

import torch
from torch import Tensor, nn

from . import weights as _weights
from ._registry import Registry
from ._seq import check_lengths, is_ragged, lengths_to_mask
from .pools import GlobalAvgPool, GridPool, SpatialAttentionPool

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class CNNParts(NamedTuple):
    stages: "OrderedDict[str, nn.Module]"
    num_features: int
    last_stages: tuple[str, ...]  # what "unfreeze the last stage" means for this CNN
    input_size: int
    pool: str = "avg"  # the spatial pooling this CNN's features get unless the model asks for another


BACKBONES: Registry[Callable[..., CNNParts]] = Registry("backbone")


def list_backbones() -> list[str]:
    return BACKBONES.names()


POOLS = ("avg", "attention", "grid")


class StagedEncoder(nn.Module):
    """An encoder whose CNN is ``self.stages`` (an ordered ``nn.ModuleDict``) that freezes and
    unfreezes by stage name. Subclasses set ``name``, ``stages``, ``last_stages`` and ``_frozen``."""

    name: str
    stages: nn.ModuleDict
    last_stages: tuple[str, ...]
    _frozen: set[str]

    # --- freezing -------------------------------------------------------------------------
    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(self.stages.keys())

    @property
    def frozen_stages(self) -> tuple[str, ...]:
        return tuple(n for n in self.stage_names if n in self._frozen)

    @property
    def trainable_stages(self) -> tuple[str, ...]:
        return tuple(n for n in self.stage_names if n not in self._frozen)

    def _resolve(self, stages: str | Iterable[str] | None) -> list[str]:
        if stages is None:
            return list(self.stage_names)
        if stages == "last":
            return list(self.last_stages)
        names = [stages] if isinstance(stages, str) else list(stages)
        unknown = [n for n in names if n not in self.stages]
        if unknown:
            raise ValueError(
                f"{self.name} has no stage {unknown}; its stages are {list(self.stage_names)} (or 'last')"
            )
        return names

    def freeze(self, stages: str | Iterable[str] | None = None) -> "StagedEncoder":
        """Freeze CNN stages (all by default): no gradients, and BatchNorm kept in eval mode,
        so a frozen stage stays bitwise unchanged, buffers included. The attention pool (if any)
        is not a CNN stage and stays trainable."""
        for name in self._resolve(stages):
            self.stages[name].requires_grad_(False)
            self.stages[name].eval()
            self._frozen.add(name)
        return self

    def unfreeze(self, stages: str | Iterable[str] | None = None) -> "StagedEncoder":
        """Make stages trainable again (all by default; ``"last"`` = this CNN's last stage)."""
        for name in self._resolve(stages):
            self.stages[name].requires_grad_(True)
            self.stages[name].train(self.training)
            self._frozen.discard(name)
        return self

    def train(self, mode: bool = True) -> "StagedEncoder":
        super().train(mode)
        for name in self._frozen:
            self.stages[name].eval()
        return self


class FrameEncoder(StagedEncoder):
    """A 2D CNN over frames plus spatial pooling; (B, T, C, H, W) -> (B, T, D).

    ``pool="avg"`` is global average pooling; ``pool="attention"`` is learned spatial attention
    pooling that also returns its maps (B, T, h, w); ``pool="grid"`` averages a 2 x 2 grid of cells
    (D = 4 x the CNN's channels) and keeps coarse position, which motion needs. Only real frames go
    through the CNN when ``lengths`` marks padding.
    """

    def __init__(self, parts: CNNParts, *, name: str, pool: str | None = None):
        super().__init__()
        pool = pool or parts.pool
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {list(POOLS)}; got {pool!r}")
        self.name = name
        self.stages = nn.ModuleDict(parts.stages)
        self.num_features = parts.num_features * (4 if pool == "grid" else 1)
        self.last_stages = parts.last_stages
        spatial = {"avg": GlobalAvgPool, "grid": GridPool}
        self.pool = spatial[pool]() if pool != "attention" else SpatialAttentionPool(parts.num_features)
        self.data_config = {
            "mean": IMAGENET_MEAN,
            "std": IMAGENET_STD,
            "input_size": parts.input_size,
            "interpolation": "bilinear",
        }
        self._frozen: set[str] = set()

    @property
    def cacheable(self) -> bool:
        """True when the whole encoder is fixed, so its features can be computed once and cached."""
        return not any(p.requires_grad for p in self.parameters())

    # --- forward ----------------------------------------------------------------------------
    def forward_maps(self, frames: Tensor) -> Tensor:
        """(N, C, H, W) -> CNN feature maps (N, D, h, w)."""
        first = next(iter(self.stages.values()))
        weight = next(first.parameters(), None)
        if weight is not None and weight.dim() == 4 and weight.is_contiguous(memory_format=torch.channels_last):
            frames = frames.contiguous(memory_format=torch.channels_last)
        for stage in self.stages.values():
            frames = stage(frames)
        return frames

    def forward(self, clips: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """(B, T, C, H, W) -> features (B, T, D) and spatial attention maps (B, T, h, w) or None."""
        if clips.dim() != 5:
            raise ValueError(f"{self.name} expects clips (B, T, C, H, W); got shape {tuple(clips.shape)}")
        B, T = clips.shape[:2]
        lengths = check_lengths(lengths, B, T, clips.device)
        if is_ragged(lengths, T):
            mask = lengths_to_mask(lengths, T)  # (B, T)
            frames = clips[mask]  # (N, C, H, W) real frames only, N = lengths.sum()
        else:
            mask = None
            frames = clips.flatten(0, 1)  # (B*T, C, H, W)
        feats, maps = self.pool(self.forward_maps(frames))  # (N, D), (N, h, w) | None
        if mask is None:
            feats = feats.unflatten(0, (B, T))  # (B, T, D)
            maps = maps.unflatten(0, (B, T)) if maps is not None else None  # (B, T, h, w)
            return feats, maps
        out = feats.new_zeros(B, T, feats.shape[-1])  # (B, T, D), zeros on padding
        out[mask] = feats
        if maps is not None:
            full = maps.new_zeros(B, T, *maps.shape[1:])  # (B, T, h, w)
            full[mask] = maps
            maps = full
        return out, maps


def create_encoder(name: str, *, weights: str | os.PathLike | None = None, pool: str | None = None) -> FrameEncoder:
    """Build the frame encoder ``name`` with ``weights`` (None, "imagenet" or a local file)."""
    return FrameEncoder(BACKBONES.get(name)(weights=weights), name=name, pool=pool)


# --- the CNNs ----------------------------------------------------------------------------------
def _resnet(arch: str, weights) -> CNNParts:
    from . import resnet  # torchvision's ResNet without importing torchvision (see resnet.py)

    net = getattr(resnet, arch)()
    if weights is not None:
        _weights.load_into(net, weights, arch=arch, ignore_prefixes=("fc.",))
    stages = OrderedDict(stem=nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool))
    for name in ("layer1", "layer2", "layer3", "layer4"):
        stages[name] = getattr(net, name)
    return CNNParts(stages, net.fc.in_features, ("layer4",), 224)


@BACKBONES.register
def resnet18(*, weights=None) -> CNNParts:
    return _resnet("resnet18", weights)


@BACKBONES.register
def resnet50(*, weights=None) -> CNNParts:
    return _resnet("resnet50", weights)


@BACKBONES.register
def efficientnet_b0(*, weights=None) -> CNNParts:
    import torchvision

    net = torchvision.models.efficientnet_b0(weights=None)
    if weights is not None:
        _weights.load_into(net, weights, arch="efficientnet_b0", ignore_prefixes=("classifier.",))
    blocks = list(net.features)  # stem conv, 7 MBConv stages, final 1x1 conv
    stages = OrderedDict(stem=blocks[0])
    stages.update((f"stage{i}", blocks[i]) for i in range(1, 8))
    stages["conv_head"] = blocks[8]
    return CNNParts(stages, net.classifier[-1].in_features, ("stage7", "conv_head"), 224)


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


@BACKBONES.register
def test_tiny(*, weights=None) -> CNNParts:
    """A 3-stage CNN (about 6k parameters) with BatchNorm, for fast tests and CPU demos.

    Its features are pooled over a 2 x 2 grid by default: after a global average, a CNN this
    shallow cannot tell where an object is (deep CNNs learn it from their padding), so motion was
    invisible and the demo's CNN-LSTM sat at the class prior for 9-17 epochs; with the grid it
    learns in 3 (docs/training.md)."""
    stages = OrderedDict(stem=_conv_bn(3, 8), layer1=_conv_bn(8, 16), layer2=_conv_bn(16, 32))
    if weights == "imagenet":
        raise ValueError("test_tiny has no ImageNet weights; use weights=None or a local file")
    parts = CNNParts(stages, 32, ("layer2",), 32, pool="grid")
    if weights is not None:
        container = nn.Sequential(stages)
        _weights.load_into(container, weights, arch="test_tiny")
    return parts
