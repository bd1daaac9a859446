"""Temporal-order classification clips: the classes differ ONLY in the order of the frames.

Every clip starts from one *canonical* clip: an object sliding from left to right along a
horizontal line, frame ``k`` showing it at position ``k / (T - 1)`` of the way. A class is a
permutation of those frames:

==================  ==========================================  ==================
class               frame order (canonical indices)             motion
==================  ==========================================  ==================
moving_right        0, 1, 2, ..., T-1                           →
moving_left         T-1, ..., 1, 0 (time reversal)              ←
right_and_back      evens ascending, then odds descending       → ←
left_and_back       the mirror image k -> T-1-k of the above    ← →
zigzag_right        k%3==0 up, k%3==1 down, k%3==2 up           → ← →
zigzag_left         time reversal of zigzag_right               ← → ←
==================  ==========================================  ==================

So for one random draw (scene, line, speed, noise), the clips of all six classes hold exactly the
same *set* of frames, only ordered differently: any order-blind model (mean of per-frame
features, bag of frames) sees identical inputs for every class and sits at chance (1/6), while
a temporal model can reach 100%. ``moving_left`` is exactly ``moving_right`` reversed in time,
and ``zigzag_left`` exactly ``zigzag_right`` reversed.

Letters: T frames, H/W height/width.
"""
from __future__ import annotations

import numpy as np

from ._draw import Track, render, sample_scene

CLASSES = ("left_and_back", "moving_left", "moving_right", "right_and_back", "zigzag_left", "zigzag_right")
DESCRIPTIONS = {
    "moving_right": "the object slides from left to right",
    "moving_left": "the object slides from right to left (moving_right reversed in time)",
    "right_and_back": "the object goes right, then comes back left",
    "left_and_back": "the object goes left, then comes back right",
    "zigzag_right": "the object goes right, back left, then right again (three times faster)",
    "zigzag_left": "the object goes left, back right, then left again (zigzag_right reversed in time)",
}
MIN_FRAMES = 6  # a zigzag needs at least two frames per pass

# class -> the class whose clips are its exact time reversal (same rng seed)
REVERSE_OF = {
    "moving_right": "moving_left",
    "moving_left": "moving_right",
    "zigzag_right": "zigzag_left",
    "zigzag_left": "zigzag_right",
    "right_and_back": "right_and_back",  # reversed, it still goes right and comes back
    "left_and_back": "left_and_back",
}


def class_order(cls: str, num_frames: int) -> np.ndarray:
    """Canonical frame indices, shape (T,), in the order that class ``cls`` shows them."""
    if cls not in DESCRIPTIONS:
        raise ValueError(f"unknown synthetic class {cls!r}; expected one of {list(CLASSES)}")
    k = np.arange(num_frames)
    if cls == "moving_right":
        return k
    if cls == "moving_left":
        return k[::-1].copy()
    if cls in ("right_and_back", "left_and_back"):
        order = np.concatenate([k[0::2], k[1::2][::-1]])
        return order if cls == "right_and_back" else num_frames - 1 - order
    zigzag = np.concatenate([k[0::3], k[1::3][::-1], k[2::3]])
    return zigzag if cls == "zigzag_right" else zigzag[::-1].copy()


def canonical_track(rng: np.random.Generator, num_frames: int) -> Track:
    """The object's left-to-right slide: random size, height, start and end, shape (T,) each."""
    r = rng.uniform(0.15, 0.22)  # half-size, fraction of the frame side
    y = rng.uniform(0.3, 0.7)
    lo = rng.uniform(r + 0.02, 0.35)
    hi = rng.uniform(0.65, 1.0 - r - 0.02)
    x = np.linspace(lo, hi, num_frames)
    return Track(x=x, y=np.full(num_frames, y), r=np.full(num_frames, r), alpha=np.ones(num_frames))


def render_clip(
    cls: str, rng: np.random.Generator | int, num_frames: int, size: int = 64
) -> np.ndarray:
    """One clip of class ``cls``: uint8 (T, H, W, 3) with ``T = num_frames`` and ``H = W = size``.

    The random draws do not depend on ``cls``: the same ``rng`` state gives clips of every class
    that are permutations of the same frames (see the module docstring).
    """
    if cls not in DESCRIPTIONS:
        raise ValueError(f"unknown synthetic class {cls!r}; expected one of {list(CLASSES)}")
    if num_frames < MIN_FRAMES:
        raise ValueError(f"num_frames must be at least {MIN_FRAMES} for the temporal classes; got {num_frames}")
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    scene = sample_scene(rng)
    track = canonical_track(rng, num_frames)
    frames = render(scene, track, size, rng)  # (T, H, W, 3), canonical order
    return frames[class_order(cls, num_frames)]  # same frames, class order


__all__ = ["CLASSES", "DESCRIPTIONS", "REVERSE_OF", "MIN_FRAMES", "class_order", "canonical_track", "render_clip"]
