"""Lazy imports of optional dependencies, with an actionable error.

This is the only place that decides whether an optional package is available.
"""
from __future__ import annotations

import importlib
from types import ModuleType

# import name -> what to tell the user to install
_HINTS = {
    "av": "pip install av",
    "torchcodec": "pip install torchcodec (it also needs FFmpeg's shared libraries, e.g. apt-get install ffmpeg)",
    "matplotlib": "pip install 'cnnlstm[plot]'",
    "yaml": "pip install pyyaml",
    "tqdm": "pip install tqdm",
    "safetensors": "pip install safetensors",
    "onnx": "pip install 'cnnlstm[export]'",
    "onnxscript": "pip install 'cnnlstm[export]'",
    "onnxruntime": "pip install 'cnnlstm[export]'",
    "fastapi": "pip install 'cnnlstm[serve]'",
    "uvicorn": "pip install 'cnnlstm[serve]'",
    "python_multipart": "pip install 'cnnlstm[serve]'",
}


class MissingDependencyError(ImportError):
    """An optional package is not installed; the message says what to ``pip install``."""


def install_hint(module: str) -> str:
    """What to run to get ``module`` (e.g. ``pip install 'cnnlstm[serve]'``)."""
    return _HINTS.get(module.split(".")[0], f"pip install {module}")


def require(module: str, *, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise a :class:`MissingDependencyError` (an ImportError) that says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        what = f" for {purpose}" if purpose else ""
        raise MissingDependencyError(f"cnnlstm needs the package '{module}'{what}. Install it with: "
                                     f"{install_hint(module)}") from exc


def available(module: str) -> bool:
    """True when ``module`` imports (its own import errors included)."""
    try:
        importlib.import_module(module)
    except Exception:  # noqa: BLE001 - a broken install counts as unavailable
        return False
    return True
