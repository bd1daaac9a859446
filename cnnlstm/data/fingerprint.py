"""A training set's fingerprint: what a resumed run checks it still trains on.

Cheap on purpose (one ``stat`` per video, no file contents read): each video counts by its path
relative to the folder all the videos share (so moving the dataset as a whole keeps it), its size
in bytes, its label and its clip bounds; a digest covers them all, in order. A checkpoint keeps
the digest and one 64-bit hash per video, so a refused resume can say which videos changed.

Letters: N videos.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

import torch

from .annotations.formats import VideoItem


def _root(items: Sequence[VideoItem]) -> str:
    """The folder every video lies under."""
    return os.path.commonpath([os.path.dirname(os.path.abspath(item.path)) for item in items]) if items else ""


def _entry(item: VideoItem, root: str) -> tuple:
    """(path relative to ``root``, size in bytes (-1: missing), label, clip start, clip end)."""
    path = os.path.abspath(item.path)
    try:
        size = os.stat(path).st_size
    except OSError:
        size = -1
    return os.path.relpath(path, root), size, item.label, item.start, item.end


def _hash64(line: str) -> int:
    return int.from_bytes(hashlib.blake2b(line.encode(), digest_size=8).digest(), "little", signed=True)


def dataset_fingerprint(items: Sequence[VideoItem], classes: Sequence[str]) -> dict:
    """``{"num_videos", "classes", "digest", "videos"}``: ``videos`` is a LongTensor (N,) of per-video
    hashes (storable with ``torch.save`` and loadable with ``weights_only=True``)."""
    root = _root(items)
    lines = ["\t".join(map(str, _entry(item, root))) for item in items]
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    return {"num_videos": len(lines), "classes": list(classes), "digest": digest,
            "videos": torch.tensor([_hash64(line) for line in lines], dtype=torch.long)}


def fingerprint_changes(saved: dict, now: dict, items: Sequence[VideoItem], limit: int = 5) -> str | None:
    """What differs between a checkpoint's fingerprint and the current one (None: the same data).

    Names the class list change, the video count change and the first ``limit`` videos (by
    position) whose path, size or label changed, as they are now. A fingerprint saved before
    per-video digests existed (no ``digest``) is compared by count and classes only.
    """
    changes = []
    if list(saved["classes"]) != list(now["classes"]):
        changes.append(f"classes {list(saved['classes'])} -> {list(now['classes'])}")
    if saved["num_videos"] != now["num_videos"]:
        changes.append(f"{saved['num_videos']} videos -> {now['num_videos']}")
    if "digest" in saved and saved["digest"] != now["digest"] and saved["num_videos"] == now["num_videos"]:
        differ = torch.nonzero(torch.as_tensor(saved["videos"]) != now["videos"]).flatten().tolist()
        root = _root(items)
        shown = ", ".join(f"#{i} now {path} ({size} bytes, label {label!r})"
                          for i in differ[:limit] for path, size, label, *_ in [_entry(items[i], root)])
        more = f" and {len(differ) - limit} more" if len(differ) > limit else ""
        changes.append(f"{len(differ)} of {now['num_videos']} videos differ in path, size or label: {shown}{more}")
    return "; ".join(changes) or None


__all__ = ["dataset_fingerprint", "fingerprint_changes"]
