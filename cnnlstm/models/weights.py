"""Loading backbone weights: torchvision's pretrained weights (downloaded on first use into the
torch cache), or a local file.

``weights="imagenet"`` (2D backbones) and ``weights="kinetics"`` (3D CNNs) resolve to torchvision's
default weights file in ``torch.hub.get_dir()/checkpoints/`` (``$TORCH_HOME/hub/checkpoints``).
A file already there is used as it is, with no network access. A missing one is downloaded the way
torchvision does it: to a temporary file in the same folder, its sha256 checked against the prefix
in its name (``resnet18-f37072fd.pth``), then moved into place with ``os.replace``. A failed
download (server error, dropped connection, stalled server, wrong hash, interrupt) leaves nothing
in the cache and raises :class:`WeightsDownloadError`.

Environment:

* ``CNNLSTM_OFFLINE=1``: never download; a missing file raises :class:`WeightsNotFoundError`
  naming the file, the folder and the URL to fetch by hand (``offline=`` overrides it).
* ``CNNLSTM_WEIGHTS_URL``: replaces the URL up to the file name, for a mirror or an air-gapped
  server (``https://mirror.example/weights/`` or ``file:///mnt/weights/``).
* ``CNNLSTM_DOWNLOAD_TIMEOUT``: seconds to wait for a connection or for the next bytes (default 30).

Weight files are read as safetensors, or with ``torch.load(weights_only=True)``; a pickle renamed
``.safetensors`` is rejected by content.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

__all__ = [
    "WeightsNotFoundError",
    "WeightsDownloadError",
    "OFFLINE_ENV",
    "MIRROR_ENV",
    "TIMEOUT_ENV",
    "torch_cache_checkpoints",
    "torchvision_weights_url",
    "default_weights_file",
    "sha256_prefix",
    "cached_weights",
    "download_weights_file",
    "read_state_dict",
    "load_into",
]

OFFLINE_ENV = "CNNLSTM_OFFLINE"
MIRROR_ENV = "CNNLSTM_WEIGHTS_URL"
TIMEOUT_ENV = "CNNLSTM_DOWNLOAD_TIMEOUT"
DEFAULT_TIMEOUT = 30.0  # seconds without a byte before a download counts as stalled
_CHUNK = 1 << 20
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")
_HASH = re.compile(r"[0-9a-f]{8,64}")  # torch.hub's convention: name-<first 8+ hex of sha256>.ext


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights are not on this machine and may not be downloaded (offline mode)."""


class WeightsDownloadError(WeightsNotFoundError):
    """Downloading pretrained weights failed; nothing was left in the cache."""


# --- where the weights live ----------------------------------------------------------------------
def torch_cache_checkpoints() -> Path:
    """The folder where torchvision keeps downloaded weights: ``$TORCH_HOME/hub/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def torchvision_weights_url(arch: str) -> str:
    """The URL of torchvision's default pretrained weights for ``arch`` (no network access)."""
    from torchvision.models import get_model_weights

    return get_model_weights(arch).DEFAULT.url


def _file_name(url: str) -> str:
    return os.path.basename(urllib.parse.urlparse(url).path)


def _mirrored(url: str) -> str:
    """``url`` with everything up to the file name replaced by ``$CNNLSTM_WEIGHTS_URL`` (if set)."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if not mirror:
        return url
    if urllib.parse.urlparse(mirror).scheme not in ("http", "https", "file"):
        raise ValueError(
            f"{MIRROR_ENV} must be an http://, https:// or file:// URL of the folder holding the weight "
            f"files; got {mirror!r}"
        )
    return mirror.rstrip("/") + "/" + _file_name(url)


def default_weights_file(arch: str) -> tuple[Path, str]:
    """(local path in the torch cache, URL to download it from) of torchvision's default pretrained
    weights for ``arch``; the URL honours ``$CNNLSTM_WEIGHTS_URL``."""
    url = torchvision_weights_url(arch)
    return torch_cache_checkpoints() / _file_name(url), _mirrored(url)


imagenet_weights_file = default_weights_file  # the 2D backbones' defaults are ImageNet weights


def _offline(offline: bool | None) -> str | None:
    """Why downloads are off ("offline=True" or "CNNLSTM_OFFLINE=1"), or None when they are allowed."""
    if offline is not None:
        return "offline=True" if offline else None
    value = os.environ.get(OFFLINE_ENV, "")
    if value.strip().lower() in _TRUE:
        return f"{OFFLINE_ENV}={value}"
    if value.strip().lower() in _FALSE:
        return None
    raise ValueError(f"{OFFLINE_ENV} must be 1/true/yes/on or 0/false/no/off; got {value!r}")


def _timeout(timeout: float | None) -> float:
    if timeout is None:
        value = os.environ.get(TIMEOUT_ENV, "").strip()
        try:
            timeout = float(value) if value else DEFAULT_TIMEOUT
        except ValueError:
            raise ValueError(f"{TIMEOUT_ENV} must be a number of seconds; got {value!r}") from None
    if not timeout > 0:
        raise ValueError(f"the download timeout ({TIMEOUT_ENV} or timeout=) must be > 0 seconds; got {timeout}")
    return timeout


def sha256_prefix(file_name: str) -> str:
    """The sha256 prefix a weights file name carries: ``resnet18-f37072fd.pth`` -> ``f37072fd``."""
    tag = file_name.split(".", 1)[0].rpartition("-")[2]
    if not _HASH.fullmatch(tag):
        raise ValueError(
            f"{file_name!r} does not carry a sha256 prefix (expected name-<8 or more hex digits>.ext, "
            "as torchvision's weight files do), so a download of it cannot be checked"
        )
    return tag


# --- getting them --------------------------------------------------------------------------------
def cached_weights(
    arch: str,
    what: str = "pretrained",
    *,
    offline: bool | None = None,
    timeout: float | None = None,
    progress: bool | None = None,
) -> Path:
    """The local file of torchvision's default ``what`` (e.g. "ImageNet") weights for ``arch``,
    downloaded into the torch cache on first use.

    ``offline`` (default: ``$CNNLSTM_OFFLINE``) refuses to download: a missing file raises
    :class:`WeightsNotFoundError` naming the file, its folder and the URL to fetch by hand. A failed
    download raises :class:`WeightsDownloadError` and leaves nothing in the cache.
    """
    path, url = default_weights_file(arch)
    if path.is_file():  # like torchvision: a cached file is trusted, not re-hashed on every load
        return path
    reason = _offline(offline)
    if reason is not None:
        raise WeightsNotFoundError(
            f"{what} weights for {arch} are not on this machine: expected {path.name} in {path.parent}, "
            f"and downloads are off ({reason}). Download {url} on a machine with internet access and copy "
            f"it to {path} (or set TORCH_HOME to the folder holding hub/checkpoints/), allow downloads "
            f"(unset {OFFLINE_ENV}) to fetch it on first use, or pass weights=None for random init or "
            "weights='/path/to/file' for a local file."
        )
    return download_weights_file(url, path, timeout=timeout, progress=progress)


def download_weights_file(
    url: str, dst: str | os.PathLike, *, timeout: float | None = None, progress: bool | None = None
) -> Path:
    """Download ``url`` to ``dst`` atomically, checking the sha256 prefix in ``dst``'s name.

    The bytes go to ``<dst>.<random>.partial`` in the same folder, are checked (length and hash),
    then ``os.replace``-d into place; on any failure the partial file is removed and a
    :class:`WeightsDownloadError` names the URL, the file, what went wrong and what to do.
    ``timeout`` (default ``$CNNLSTM_DOWNLOAD_TIMEOUT`` or 30 s) bounds the connection and every wait
    for data. ``progress`` (default: when stderr is a terminal) shows a tqdm bar on stderr.
    """
    dst = Path(dst)
    expected = sha256_prefix(dst.name)
    timeout = _timeout(timeout)
    show = sys.stderr.isatty() if progress is None else progress
    print(f"cnnlstm: downloading {url} to {dst}", file=sys.stderr, flush=True)

    def failed(what: str) -> WeightsDownloadError:
        return WeightsDownloadError(
            f"downloading {url} to {dst} failed: {what}. Nothing was saved. Retry; or set {MIRROR_ENV} to "
            f"a mirror that serves {dst.name}; or download the file on a machine with internet access "
            f"and copy it to {dst}."
        )

    partial: Path | None = None
    try:
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            partial = dst.with_name(f"{dst.name}.{uuid.uuid4().hex}.partial")
            # open() rather than mkstemp: the cache is often shared, so keep the umask's permissions
            out = open(partial, "xb")  # noqa: SIM115 - closed below
        except OSError as exc:
            partial = None
            raise failed(f"cannot write to {dst.parent} ({exc}); set TORCH_HOME to a writable folder") from exc
        with out:
            size, total, digest = _copy_url(url, out, timeout=timeout, show=show, desc=dst.name)
        if total is not None and size != total:
            raise failed(f"the connection closed after {size} of {total} bytes")
        if not digest.startswith(expected):
            raise failed(
                f"the file's sha256 is {digest}, but its name says it starts with {expected}: "
                "the server sent a corrupt or different file"
            )
        os.replace(partial, dst)
        partial = None
        return dst
    except WeightsDownloadError:
        raise
    except urllib.error.HTTPError as exc:
        exc.close()
        raise failed(f"the server answered HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:  # connecting failed (refused, DNS, connect timeout)
        if isinstance(exc.reason, TimeoutError):
            raise failed(f"the server sent nothing for {timeout:g} s (set {TIMEOUT_ENV} to wait longer)") from exc
        raise failed(f"cannot reach the server ({exc.reason})") from exc
    except http.client.IncompleteRead as exc:  # a dropped connection, as newer Pythons report it
        raise failed(f"the connection closed before the end of the file ({exc!r})") from exc
    except TimeoutError as exc:  # a stall before the headers or in the middle of the file
        raise failed(f"the server sent nothing for {timeout:g} s (set {TIMEOUT_ENV} to wait longer)") from exc
    except (http.client.HTTPException, OSError) as exc:  # dropped connection, reset, disk full
        raise failed(f"{type(exc).__name__}: {exc}") from exc
    finally:
        if partial is not None:
            partial.unlink(missing_ok=True)


def _copy_url(url: str, out, *, timeout: float, show: bool, desc: str) -> tuple[int, int | None, str]:
    """Stream ``url`` into the open file ``out`` (flushed and fsynced): bytes read, the announced
    length (or None) and the sha256 hex digest."""
    from tqdm import tqdm

    sha, size = hashlib.sha256(), 0
    request = urllib.request.Request(url, headers={"User-Agent": "cnnlstm"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        with tqdm(total=total, disable=not show, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                  file=sys.stderr) as bar:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                sha.update(chunk)
                size += len(chunk)
                bar.update(len(chunk))
    out.flush()
    os.fsync(out.fileno())
    return size, total, sha.hexdigest()


# --- reading them --------------------------------------------------------------------------------
def _read_header(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(16)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from a safetensors file or a ``torch.save`` file (weights only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    head = _read_header(path)
    if not head:
        raise ValueError(f"weights file {path} is empty (0 bytes): damaged or cut short; restore it from a copy, or "
                         "write it again")
    looks_safetensors = len(head) >= 9 and head[8:9] == b"{"
    if path.suffix == ".safetensors" or looks_safetensors:
        if not looks_safetensors:
            raise ValueError(
                f"{path} is named .safetensors but its content is not safetensors "
                f"(starts with {head[:4]!r}); refusing to load it"
            )
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except SafetensorError as exc:
            raise ValueError(f"{path} is damaged: not a readable safetensors file ({exc}); restore it from a copy, "
                             "or write it again (retrain, or re-download)") from None
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
    """Load ``weights`` ("imagenet", downloaded on first use, or a file path) into a torchvision
    ``module`` of ``arch``.

    Keys under ``ignore_prefixes`` (the ImageNet classifier) may be present or absent; every other
    key must match, else a ValueError lists what is missing and what was unexpected.
    """
    path = cached_weights(arch, "ImageNet") if weights == "imagenet" else Path(weights)
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith(ignore_prefixes)}
    own = {k: v for k, v in module.state_dict().items() if not k.startswith(ignore_prefixes)}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
                  for k, v in own.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"weights in {path} do not fit {arch}: {len(missing)} missing keys {missing[:3]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:3]}, {len(mismatched)} shape mismatches "
            f"{mismatched[:3]}. Expected a torchvision {arch} state dict."
        )
    module.load_state_dict(state, strict=False)
