"""Loading backbone weights: ImageNet weights from the local torch cache, or a local file.

Nothing here downloads. A missing ImageNet file raises :class:`WeightsNotFoundError` naming the
file, where to put it and where to get it. Weight files are read as safetensors, or with
``torch.load(weights_only=True)``; a pickle renamed ``.safetensors`` is rejected by content.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import torch
from torch import nn


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights are not on this machine (cnnlstm never downloads them)."""


def torch_cache_checkpoints() -> Path:
    """The folder where torchvision keeps downloaded weights: ``$TORCH_HOME/hub/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def default_weights_file(arch: str) -> tuple[Path, str]:
    """(expected local path, download URL) of torchvision's default pretrained weights for ``arch``."""
    from torchvision.models import get_model_weights

    url = get_model_weights(arch).DEFAULT.url
    return torch_cache_checkpoints() / os.path.basename(url), url


imagenet_weights_file = default_weights_file  # the 2D backbones' defaults are ImageNet weights


def require_cached(arch: str, what: str) -> Path:
    """The local file of torchvision's default ``what`` (e.g. "ImageNet") weights for ``arch``, or a
    :class:`WeightsNotFoundError` naming the file, where to put it and where to get it."""
    path, url = default_weights_file(arch)
    if not path.is_file():
        raise WeightsNotFoundError(
            f"{what} weights for {arch} are not on this machine: expected {path}. "
            f"cnnlstm does not download weights. Download {url} on a machine with internet "
            f"access and copy it to {path} (or set TORCH_HOME to the folder holding hub/checkpoints/), "
            "or pass weights=None for random init or weights='/path/to/file' for a local file."
        )
    return path


def _read_header(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(16)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from a safetensors file or a ``torch.save`` file (weights only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    head = _read_header(path)
    looks_safetensors = len(head) >= 9 and head[8:9] == b"{"
    if path.suffix == ".safetensors" or looks_safetensors:
        if not looks_safetensors:
            raise ValueError(
                f"{path} is named .safetensors but its content is not safetensors "
                f"(starts with {head[:4]!r}); refusing to load it"
            )
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - report any unpickling refusal the same way
        raise ValueError(
            f"cannot read weights from {path} with torch.load(weights_only=True): {exc}. "
            "Save a plain state dict (model.state_dict()) or use safetensors."
        ) from exc
    for key in ("state_dict", "model"):  # common checkpoint wrappers
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_into(
    module: nn.Module, weights: str | os.PathLike, *, arch: str, ignore_prefixes: tuple[str, ...] = ()
) -> None:
    """Load ``weights`` ("imagenet" or a file path) into a torchvision ``module`` of ``arch``.

    Keys under ``ignore_prefixes`` (the ImageNet classifier) may be present or absent; every other
    key must match, else a ValueError lists what is missing and what was unexpected.
    """
    path = require_cached(arch, "ImageNet") if weights == "imagenet" else Path(weights)
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith(ignore_prefixes)}
    own = {k: v for k, v in module.state_dict().items() if not k.startswith(ignore_prefixes)}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"weights in {path} do not fit {arch}: {len(missing)} missing keys {missing[:3]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:3]}, {len(mismatched)} shape mismatches "
            f"{mismatched[:3]}. Expected a torchvision {arch} state dict."
        )
    module.load_state_dict(state, strict=False)
