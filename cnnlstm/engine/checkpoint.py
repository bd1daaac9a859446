"""Run-directory I/O: weights as safetensors, resumable checkpoints.

Every file is written atomically (:mod:`cnnlstm.engine.io`). A checkpoint is a folder
``checkpoints/step-NNNNNNNN/`` holding ``model.safetensors``, ``state.pt`` (optimizer, scheduler,
scaler, position, RNGs; read with ``weights_only=True``) and the marker ``COMPLETE``, written
last: a folder without it is ignored. ``checkpoints/latest`` names the newest complete one; a
damaged latest falls back, loudly, to the previous valid one.
"""
from __future__ import annotations

import io
import os
import random
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .io import atomic_write_bytes, atomic_write_text, fsync_dir

MARKER = "COMPLETE"


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DistributedDataParallel and torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def save_weights(model: nn.Module, path: str | os.PathLike) -> Path:
    """The model's parameters and buffers as safetensors, atomically."""
    from safetensors.torch import save

    state = {k: v.detach().contiguous().cpu() for k, v in unwrap(model).state_dict().items()}
    return atomic_write_bytes(path, save(state))


def load_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Load ``path`` (safetensors) into ``model``; every key must match."""
    from ..models.weights import read_state_dict

    state = read_state_dict(path)
    result = unwrap(model).load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{path} does not fit this model: missing {result.missing_keys[:5]}, "
                         f"unexpected {result.unexpected_keys[:5]}. Was it trained with another config?")


def capture_rng() -> dict[str, Any]:
    """Every RNG state, as tensors and plain values (loadable with weights_only=True)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Checkpoints:
    """Resumable checkpoints under ``RUN/checkpoints/``; keeps the newest ``keep`` complete ones."""

    def __init__(self, run_dir: str | os.PathLike, keep: int = 2):
        self.root = Path(run_dir) / "checkpoints"
        self.keep = keep

    def save(self, step: int, model: nn.Module, state: dict[str, Any]) -> Path:
        final = self.root / f"step-{step:08d}"
        tmp = self.root / f".step-{step:08d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_weights(model, tmp / "model.safetensors")
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write_bytes(tmp / "state.pt", buffer.getvalue())
        atomic_write_text(tmp / MARKER, f"{step}\n")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        fsync_dir(self.root)
        atomic_write_text(self.root / "latest", final.name + "\n")
        self._prune()
        return final

    def _valid(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.glob("step-*") if (p / MARKER).is_file() and (p / "state.pt").is_file())

    def _prune(self) -> None:
        for old in self._valid()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)

    def latest(self) -> Path | None:
        """The newest complete checkpoint (None when there is none)."""
        valid = self._valid()
        pointer = self.root / "latest"
        named = self.root / pointer.read_text().strip() if pointer.is_file() else None
        if named is not None and named in valid:
            return named
        if named is not None:
            fallback = valid[-1] if valid else None
            warnings.warn(f"checkpoint {named} named by {pointer} is missing or incomplete; using {fallback}",
                          stacklevel=2)
            return fallback
        return valid[-1] if valid else None

    def load(self, path: Path, model: nn.Module) -> dict[str, Any]:
        """Load weights into ``model`` and return the training state (weights_only=True)."""
        try:
            load_weights(model, path / "model.safetensors")
            return torch.load(path / "state.pt", map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            raise RuntimeError(f"checkpoint {path} cannot be loaded: {exc}") from exc
