"""Draw synthetic scenes: one object (shape, colour) over a plain, lightly noisy background.

A :class:`Scene` fixes what the object looks like; a :class:`Track` gives, per frame, where it is,
how big it is and how visible it is. :func:`render` turns the two into frames. The synthetic
datasets (classification, and later per-frame labelled and captioned variants) differ only in
how they build the track and how they order the frames.

Letters: T frames, H/W height/width (both ``size``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHAPES = ("circle", "square", "triangle", "diamond")

# saturated object colours; the background is a dark or light grey picked for contrast
PALETTE = np.array(
    [
        (230, 40, 40), (40, 200, 60), (50, 90, 240), (240, 220, 40),
        (40, 220, 230), (220, 50, 220), (250, 140, 20), (245, 245, 245),
    ],
    dtype=np.float32,
)
_MIN_CONTRAST = 90.0  # luma difference between object and background, 0..255


@dataclass(frozen=True)
class Scene:
    """What the object and the background look like (constant over the clip)."""

    shape: str
    color: tuple[float, float, float]  # RGB 0..255
    background: tuple[float, float, float]  # RGB 0..255
    noise: float  # standard deviation of the per-pixel background noise, 0..255 scale


@dataclass(frozen=True)
class Track:
    """Per-frame object state, each an array of shape (T,).

    ``x``/``y`` are the centre and ``r`` the half-size, in units of the frame side (0..1);
    ``alpha`` is the visibility (0 absent, 1 opaque).
    """

    x: np.ndarray
    y: np.ndarray
    r: np.ndarray
    alpha: np.ndarray

    def __post_init__(self):
        lengths = {len(np.atleast_1d(v)) for v in (self.x, self.y, self.r, self.alpha)}
        if len(lengths) != 1:
            raise ValueError(f"Track arrays must have the same length; got lengths {sorted(lengths)}")

    def __len__(self) -> int:
        return len(np.atleast_1d(self.x))

    def __getitem__(self, index) -> Track:
        """Frames of the track in a new order (or a subset), e.g. ``track[::-1]``."""
        return Track(*(np.atleast_1d(v)[index] for v in (self.x, self.y, self.r, self.alpha)))


def luma(rgb: np.ndarray) -> float:
    return float(rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32))


def sample_scene(rng: np.random.Generator, *, max_noise: float = 6.0) -> Scene:
    """Draw a random scene: shape, saturated colour, contrasting plain background, light noise."""
    shape = SHAPES[rng.integers(len(SHAPES))]
    color = PALETTE[rng.integers(len(PALETTE))]
    dark = rng.uniform(0, 55, size=3).astype(np.float32)
    light = rng.uniform(200, 255, size=3).astype(np.float32)
    first, second = (dark, light) if rng.random() < 0.5 else (light, dark)
    background = first if abs(luma(first) - luma(color)) >= _MIN_CONTRAST else second
    if abs(luma(background) - luma(color)) < _MIN_CONTRAST:  # e.g. mid-luma colour: take the farther one
        background = max((dark, light), key=lambda bg: abs(luma(bg) - luma(color)))
    noise = float(rng.uniform(0, max_noise))
    return Scene(shape, tuple(map(float, color)), tuple(map(float, background)), noise)


def _distance(shape: str, dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Signed distance (pixels, negative inside) to a shape that fits the box ``|dx|, |dy| <= r``."""
    if shape == "circle":
        return np.sqrt(dx * dx + dy * dy) - r
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) - 0.85 * r  # same area as the circle, roughly
    if shape == "diamond":
        return (np.abs(dx) + np.abs(dy)) * np.sqrt(0.5) - 0.7 * r
    if shape == "triangle":  # pointing up (image y grows downwards), centred in its box
        up = -dy + 0.275 * r
        return np.maximum(np.abs(dx) * (np.sqrt(3) / 2) + up / 2, -up) - 0.55 * r
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def render(scene: Scene, track: Track, size: int, rng: np.random.Generator) -> np.ndarray:
    """Frames uint8 ``(T, H, W, 3)`` of ``scene`` following ``track``; ``rng`` draws the noise.

    The noise of frame ``t`` is drawn in frame order, so ``render(s, track[p], ...)`` and
    ``render(s, track, ...)[p]`` differ only in the noise; to permute frames exactly, render
    once and index the result.
    """
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels; got {size}")
    t = len(track)
    coords = np.arange(size, dtype=np.float32) + 0.5
    x = np.asarray(track.x, np.float32)[:, None, None] * size  # (T, 1, 1)
    y = np.asarray(track.y, np.float32)[:, None, None] * size
    r = np.asarray(track.r, np.float32)[:, None, None] * size
    dx = coords[None, None, :] - x  # (T, 1, W)
    dy = coords[None, :, None] - y  # (T, H, 1)
    dist = _distance(scene.shape, dx, dy, r)  # (T, H, W)
    cover = np.clip(0.5 - dist, 0.0, 1.0)  # one-pixel anti-aliased edge
    cover *= np.asarray(track.alpha, np.float32)[:, None, None]
    cover = cover[..., None]  # (T, H, W, 1)
    background = np.asarray(scene.background, np.float32)
    color = np.asarray(scene.color, np.float32)
    frames = background + cover * (color - background)  # (T, H, W, 3)
    if scene.noise > 0:
        frames += rng.standard_normal((t, size, size, 1), dtype=np.float32) * scene.noise
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


__all__ = ["SHAPES", "Scene", "Track", "sample_scene", "render"]
