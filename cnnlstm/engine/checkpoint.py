"""Run-directory I/O: weights as safetensors, resumable checkpoints.

Every file is written atomically (:mod:`cnnlstm.engine.io`). A checkpoint is a folder
``checkpoints/step-NNNNNNNN/`` holding ``model.safetensors``, ``state.pt`` (optimizer, scheduler,
scaler, position, RNGs; read with ``weights_only=True``) and the marker ``COMPLETE``, written
last: a folder without it is ignored. The marker holds the SHA-256 of the two files (neither
format checks its own bytes: a flipped bit in a tensor loads silently), checked on load.
``checkpoints/latest`` names the newest complete one; a complete checkpoint that does not load
(damaged files, a checksum mismatch) falls back, loudly, to the previous valid one.
"""
from __future__ import annotations

import hashlib
import io
import os
import random
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .io import atomic_write_bytes, atomic_write_text, fsync_dir

MARKER = "COMPLETE"
FILES = ("model.safetensors", "state.pt")  # a checkpoint's files, checksummed in its marker


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(checkpoint: Path) -> None:
    """Raise ValueError when a file's SHA-256 differs from the one its marker recorded (markers
    written before checksums existed hold only the step, and are trusted)."""
    for line in (checkpoint / MARKER).read_text().splitlines()[1:]:
        name, expected = line.split()
        actual = _sha256(checkpoint / name)
        if actual != expected:
            raise ValueError(f"{name} does not match the checksum in {MARKER} (damaged after it was written: "
                             f"sha256 {actual[:12]}..., expected {expected[:12]}...)")


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
        digests = "".join(f"{name} {_sha256(tmp / name)}\n" for name in FILES)
        atomic_write_text(tmp / MARKER, f"{step}\n{digests}")
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
            _verify(path)
            state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
            load_weights(model, path / "model.safetensors")
            return state
        except Exception as exc:  # noqa: BLE001
            raise RuntimeError(f"checkpoint {path} cannot be loaded: {exc}") from exc

    def load_newest(self, model: nn.Module, log: Callable[[str], None] = print) -> tuple[Path, dict[str, Any]] | None:
        """Load the newest checkpoint that loads into ``model``: ``(its path, the training state)``.

        Starts from :meth:`latest`; a complete checkpoint whose files are damaged (truncated or
        garbled weights or state) is reported with ``log`` and the one before it is tried. None when
        there is no complete checkpoint; RuntimeError, naming each failure, when none loads.
        """
        newest = self.latest()
        if newest is None:
            return None
        candidates = [newest] + [p for p in reversed(self._valid()) if p.name < newest.name]
        failures = []
        for path, fallback in zip(candidates, [*candidates[1:], None], strict=True):
            try:
                return path, self.load(path, model)
            except RuntimeError as exc:
                failures.append(str(exc))
                log(f"warning: {exc}; " + (f"falling back to the previous checkpoint, {fallback.name}" if fallback
                                           else "no older checkpoint is left"))
        raise RuntimeError(f"no checkpoint in {self.root} can be loaded ({'; '.join(failures)}). Start again without "
                           "--resume in a new --out, or delete the damaged checkpoint folders")
