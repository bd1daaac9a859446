"""Datasets for choosing training defaults, built differently from the demo's (``cnnlstm synth``).

Each family is written as real video files (four containers and codecs) with train/test CSVs, so
``cnnlstm train`` reads them exactly as a user's data. They vary what the demo keeps fixed: the
number of classes, frame size and aspect, clip length, fps, motion speed, textured and lit
backgrounds, distractors, camera shake, classes that mix appearance and motion.

- ``pairs8``: 8 classes = 4 paths (horizontal, vertical, diagonal, arc) x {forward, reversed}.
  A class and its reverse hold the same frames in the opposite order; a moving distractor and a
  textured background. Order-blind models could at best tell the pairs apart (50%), not the direction
  (`mean_pool` from scratch: 25-28%, docs/training.md).
- ``pairs8s``: pairs8 where each path has its own shape (horizontal circle, vertical square,
  diagonal triangle, arc ring): the pair is cued by appearance, so what is left is the direction.
  Its distractor can still look like a path's shape (circle, square, ring).
- ``pairs8e``: pairs8s whose distractor is a diamond, like none of the paths' shapes: the pair is told by
  appearance alone, as the issue describes its held-out set (where an order-blind model can tell the
  pairs apart and the seed's plain loop reaches 94%); the other draws are pairs8s's.
- ``pairs8i``: pairs8 whose videos are all drawn apart: a reversed class holds other videos reversed,
  not the reverse of its forward class's videos (pairs8 has 72 distinct renderings in 144 training
  videos, pairs8i 144).
- ``rhythm5``: 96x72 frames, 40-120 frames at 25 fps, camera shake, two distractors: grow,
  shrink, orbit clockwise, orbit counter-clockwise, blink.
- ``shapes12``: 12 classes = 3 shapes x 4 directions, 10 training videos per class, 48x48
  frames, short clips (16-32 frames): appearance and motion together.
- ``seg6``: per-frame labels: one object does 2-4 of six motions (left, right, up, down, grow,
  shrink) with still gaps, textured background and a distractor; 48-128 frames; segments CSV.
- ``seg6fast``: seg6 with motions 2.5x as fast (2.25 px a frame at 64 px; with 40-56 frames about
  every frame is sampled at 48) and a slightly larger object: is the size of the motion what holds
  seg6 back?

``python benchmarks/learning_data.py OUT`` writes all of them under OUT/<family>/.
Letters: T frames, H/W height/width.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlstm.data.video.encode import write_video

FORMATS = ((".mp4", "libx264", {"crf": "20", "preset": "veryfast", "threads": "1"}),
           (".avi", "mpeg4", {"qscale": "4", "threads": "1"}),
           (".mkv", "ffv1", {"threads": "1"}),
           (".webm", "libvpx-vp9", {"deadline": "realtime", "cpu-used": "8", "crf": "32", "b": "0", "threads": "1"}))


# --- drawing ---------------------------------------------------------------------------------

def texture(rng: np.random.Generator, h: int, w: int, *, grain: int = 6, contrast: float = 45.0) -> np.ndarray:
    """A smooth coloured texture (H, W, 3) float: low-frequency noise around a random base colour."""
    base = rng.uniform(40, 215, size=3)
    coarse = rng.standard_normal((h // grain + 2, w // grain + 2, 3))
    ys, xs = np.linspace(0, coarse.shape[0] - 1.001, h), np.linspace(0, coarse.shape[1] - 1.001, w)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    a, b = coarse[y0][:, x0], coarse[y0][:, x0 + 1]
    c, d = coarse[y0 + 1][:, x0], coarse[y0 + 1][:, x0 + 1]
    smooth = (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy  # (H, W, 3)
    return base + contrast * smooth


def shape_cover(shape: str, h: int, w: int, x, y, r) -> np.ndarray:
    """Anti-aliased coverage (T, H, W) of a shape centred at (x, y) with half-size r (pixels, (T,) each)."""
    ys, xs = np.arange(h, dtype=np.float32) + 0.5, np.arange(w, dtype=np.float32) + 0.5
    dx = xs[None, None, :] - np.asarray(x, np.float32)[:, None, None]
    dy = ys[None, :, None] - np.asarray(y, np.float32)[:, None, None]
    r = np.asarray(r, np.float32)[:, None, None]
    if shape == "circle":
        dist = np.sqrt(dx * dx + dy * dy) - r
    elif shape == "square":
        dist = np.maximum(np.abs(dx), np.abs(dy)) - 0.85 * r
    elif shape == "triangle":
        up = -dy + 0.275 * r
        dist = np.maximum(np.abs(dx) * 0.866 + up / 2, -up) - 0.55 * r
    elif shape == "diamond":
        dist = (np.abs(dx) + np.abs(dy)) * 0.7071 - 0.7 * r
    else:  # ring
        dist = np.abs(np.sqrt(dx * dx + dy * dy) - 0.8 * r) - 0.25 * r
    return np.clip(0.5 - dist, 0.0, 1.0)


def composite(background: np.ndarray, layers, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Frames uint8 (T, H, W, 3): ``background`` (T, H, W, 3) with (cover (T, H, W), colour) layers on top."""
    frames = background.astype(np.float32).copy()
    for cover, colour in layers:
        frames += cover[..., None] * (np.asarray(colour, np.float32) - frames)
    if noise:
        frames += rng.standard_normal(frames.shape[:3] + (1,)).astype(np.float32) * noise
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def bright_colour(rng: np.random.Generator) -> np.ndarray:
    c = rng.uniform(0, 80, size=3)
    c[rng.integers(3)] = rng.uniform(200, 255)
    return c if rng.random() < 0.7 else 255 - c


def distractor(rng: np.random.Generator, t: int, h: int, w: int, shape: str | None = None):
    """A small shape drifting in a random straight line: (cover (T, H, W), colour). ``shape`` replaces the
    drawn one (after the draw, so the other draws stay the same)."""
    x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
    vx, vy = rng.uniform(-1, 1, size=2) * min(h, w) / max(t, 1) * rng.uniform(0.3, 1.0)
    k = np.arange(t)
    x, y = (x0 + vx * k) % w, (y0 + vy * k) % h
    r = np.full(t, min(h, w) * rng.uniform(0.05, 0.09))
    drawn = ("circle", "square", "ring")[rng.integers(3)]
    return shape_cover(shape or drawn, h, w, x, y, r), bright_colour(rng)


# --- classification families -----------------------------------------------------------------

@dataclass(frozen=True)
class Family:
    name: str
    classes: tuple[str, ...]
    train_per_class: int
    test_per_class: int
    size: tuple[int, int]  # (H, W)
    frames: tuple[int, int]  # min, max length
    fps: float
    pairs: bool = False  # classes come as (forward, reversed) neighbours that share their draws


PAIRS8 = Family("pairs8",
                tuple(f"{p}_{d}" for p in ("horizontal", "vertical", "diagonal", "arc") for d in ("fwd", "rev")),
                18, 6, (64, 64), (24, 64), 15.0, pairs=True)
RHYTHM5 = Family("rhythm5", ("grow", "shrink", "orbit_cw", "orbit_ccw", "blink"), 20, 6, (72, 96), (40, 120), 25.0)
SHAPES12 = Family("shapes12",
                  tuple(f"{s}_{d}" for s in ("circle", "square", "triangle") for d in ("left", "right", "up", "down")),
                  10, 4, (48, 48), (16, 32), 10.0)
PAIRS8S = dataclasses.replace(PAIRS8, name="pairs8s")
PAIRS8E = dataclasses.replace(PAIRS8, name="pairs8e")
PAIRS8I = dataclasses.replace(PAIRS8, name="pairs8i", pairs=False)  # every video its own draws
FAMILIES = {f.name: f for f in (PAIRS8, PAIRS8S, PAIRS8E, PAIRS8I, RHYTHM5, SHAPES12)}


PATH_SHAPES = {"horizontal": "circle", "vertical": "square", "diagonal": "triangle", "arc": "ring"}  # pairs8s


def _pairs8(cls: str, rng, t: int, h: int, w: int, shape_by_path: bool = False,
            distractor_shape: str | None = None) -> np.ndarray:
    path, direction = cls.rsplit("_", 1)
    r = min(h, w) * rng.uniform(0.11, 0.16)
    u = np.linspace(0, 1, t) ** rng.uniform(0.8, 1.25)  # slightly uneven speed
    a, b = rng.uniform(r + 2, 0.4 * w), rng.uniform(0.6 * w, w - r - 2)
    if path == "horizontal":
        x, y = a + (b - a) * u, np.full(t, rng.uniform(0.3, 0.7) * h)
    elif path == "vertical":
        x, y = np.full(t, rng.uniform(0.3, 0.7) * w), (a + (b - a) * u) * h / w
    elif path == "diagonal":
        x, y = a + (b - a) * u, (a + (b - a) * u) * h / w
    else:  # arc: half an ellipse
        ang = np.pi * (1 - u)
        x, y = w / 2 + 0.33 * w * np.cos(ang), h * 0.62 - 0.38 * h * np.sin(ang)
    shape = ("circle", "square", "triangle")[rng.integers(3)]  # drawn either way: pairs8s keeps pairs8's draws
    shape = PATH_SHAPES[path] if shape_by_path else shape
    layers = [distractor(rng, t, h, w, distractor_shape),
              (shape_cover(shape, h, w, x, y, np.full(t, r)), bright_colour(rng))]
    frames = composite(np.broadcast_to(texture(rng, h, w), (t, h, w, 3)), layers, rng.uniform(0, 5), rng)
    return frames if direction == "fwd" else frames[::-1].copy()  # the reverse class: same frames, reversed


def _rhythm5(cls: str, rng, t: int, h: int, w: int) -> np.ndarray:
    k = np.arange(t)
    cx, cy = w * rng.uniform(0.4, 0.6), h * rng.uniform(0.4, 0.6)
    r0 = min(h, w) * rng.uniform(0.1, 0.14)
    x, y, r, alpha = np.full(t, cx), np.full(t, cy), np.full(t, r0), np.ones(t)
    if cls in ("grow", "shrink"):
        g = np.linspace(0.6, 1.9, t) if cls == "grow" else np.linspace(1.9, 0.6, t)
        r = r0 * g
    elif cls.startswith("orbit"):
        turns = rng.uniform(0.6, 1.4) * (1 if cls == "orbit_cw" else -1)
        ang = rng.uniform(0, 2 * np.pi) + 2 * np.pi * turns * k / t
        rad = min(h, w) * 0.28
        x, y = cx + rad * np.cos(ang), cy + rad * np.sin(ang)
    else:  # blink: on/off with a random period
        period = rng.integers(6, 14)
        alpha = ((k // (period // 2)) % 2 == 0).astype(float) * 0.85 + 0.15
    shake = rng.normal(0, 1.2, size=(t, 2)).cumsum(0) * 0.3  # a hand-held camera
    x, y = x + shake[:, 0], y + shake[:, 1]
    shape = ("circle", "square", "triangle", "ring")[rng.integers(4)]
    cover = shape_cover(shape, h, w, x, y, r) * alpha[:, None, None]
    layers = [distractor(rng, t, h, w), distractor(rng, t, h, w), (cover, bright_colour(rng))]
    light = np.linspace(0.7, 1.2, w)[None, :, None] * rng.uniform(0.8, 1.1)  # uneven lighting
    background = np.broadcast_to(texture(rng, h, w, grain=10, contrast=30) * light, (t, h, w, 3))
    return composite(background, layers, rng.uniform(1, 6), rng)


def _shapes12(cls: str, rng, t: int, h: int, w: int) -> np.ndarray:
    shape, direction = cls.split("_")
    r = min(h, w) * rng.uniform(0.13, 0.2)
    u = np.linspace(0, 1, t)
    lo, hi = r + 1, (w if direction in ("left", "right") else h) - r - 1
    span = rng.uniform(0.5, 1.0) * (hi - lo)
    start = rng.uniform(lo, hi - span)
    pos = start + span * (u if direction in ("right", "down") else 1 - u)
    other = np.full(t, rng.uniform(0.3, 0.7) * (h if direction in ("left", "right") else w))
    x, y = (pos, other) if direction in ("left", "right") else (other, pos)
    background = np.broadcast_to(texture(rng, h, w, grain=4, contrast=25), (t, h, w, 3))
    layer = (shape_cover(shape, h, w, x, y, np.full(t, r)), bright_colour(rng))
    return composite(background, [layer], rng.uniform(0, 8), rng)


_RENDER = {"pairs8": _pairs8, "pairs8i": _pairs8, "pairs8s": functools.partial(_pairs8, shape_by_path=True),
           "pairs8e": functools.partial(_pairs8, shape_by_path=True, distractor_shape="diamond"),
           "rhythm5": _rhythm5, "shapes12": _shapes12}


def write_family(out: Path, family: Family, seed: int = 0, test_per_class: int | None = None,
                 val_per_class: int = 0) -> Path:
    """Write one classification family into ``out``: videos/<class>/..., train.csv, test.csv and,
    with ``val_per_class``, val.csv (drawn apart from test: pick epochs on val, report test)."""
    out.mkdir(parents=True, exist_ok=True)
    sizes = (("train", family.train_per_class, 0), ("test", test_per_class or family.test_per_class, 1),
             ("val", val_per_class, 2))
    splits: dict[str, list] = {name: [] for name, count, _ in sizes if count}
    for split, per_class, split_seed in sizes:
        for i in range(per_class):
            for c, cls in enumerate(family.classes):
                # a class and its reverse share the draws (same frames, opposite order)
                key = c // 2 if family.pairs else c
                rng = np.random.default_rng([seed, split_seed, i, key, 17])
                t = int(rng.integers(family.frames[0], family.frames[1] + 1))
                frames = _RENDER[family.name](cls, rng, t, *family.size)
                ext, codec, options = FORMATS[(i + c) % len(FORMATS)]
                path = f"videos/{cls}/{split}_{i:03d}{ext}"
                (out / path).parent.mkdir(parents=True, exist_ok=True)
                write_video(out / path, frames, fps=family.fps, codec=codec, options=options)
                splits[split].append((path, cls))
    for split, rows in splits.items():
        with open(out / f"{split}.csv", "w", newline="") as f:
            csv.writer(f).writerows([("path", "label"), *rows])
    return out


# --- segmentation family ---------------------------------------------------------------------

SEG_ACTIONS = ("move_left", "move_right", "move_up", "move_down", "grow", "shrink")


def _seg_video(rng, t: int, h: int, w: int, *, speed_scale: float = 1.0,
               radius: tuple[float, float] = (0.09, 0.13)) -> tuple[np.ndarray, list[tuple[int, int, str]]]:
    """One untrimmed video: 2-4 actions with still gaps; returns frames and (start, end, label) in frames.
    ``speed_scale`` multiplies every motion's speed, ``radius`` is the object's size range (share of the side)."""
    n = int(rng.integers(2, 5))
    still = int(t * rng.uniform(0.2, 0.4))
    lengths = rng.multinomial(t - still - 6 * n, np.ones(n) / n) + 6
    gaps = rng.multinomial(still, np.ones(n + 1) / (n + 1))
    x, y, r = w * rng.uniform(0.35, 0.65), h * rng.uniform(0.35, 0.65), min(h, w) * rng.uniform(*radius)
    xs, ys, rs, segments, frame = [], [], [], [], 0
    previous = None

    def hold(n_frames):
        xs.extend([x] * n_frames), ys.extend([y] * n_frames), rs.extend([r] * n_frames)

    hold(int(gaps[0]))
    frame += int(gaps[0])
    for i, length in enumerate(lengths):
        length = int(length)
        room = {"move_left": x - r - 2, "move_right": w - r - 2 - x, "move_up": y - r - 2, "move_down": h - r - 2 - y,
                "grow": min(x, w - x, y, h - y, 0.3 * min(h, w)) - r - 1, "shrink": r - 0.05 * min(h, w)}
        speed = {a: (0.18 if a in ("grow", "shrink") else 0.9) * speed_scale * rng.uniform(0.7, 1.4)
                 for a in SEG_ACTIONS}
        options = [a for a in SEG_ACTIONS if a != previous and room[a] >= speed[a] * length]
        action = options[rng.integers(len(options))] if options else None
        for _ in range(length):
            if action == "move_left":
                x -= speed[action]
            elif action == "move_right":
                x += speed[action]
            elif action == "move_up":
                y -= speed[action]
            elif action == "move_down":
                y += speed[action]
            elif action == "grow":
                r += speed[action]
            elif action == "shrink":
                r -= speed[action]
            hold(1)
        if action:
            segments.append((frame, frame + length, action))
        frame += length
        hold(int(gaps[i + 1]))
        frame += int(gaps[i + 1])
        previous = action
    shape = ("circle", "square", "triangle")[rng.integers(3)]
    layers = [distractor(rng, t, h, w), (shape_cover(shape, h, w, xs, ys, rs), bright_colour(rng))]
    frames = composite(np.broadcast_to(texture(rng, h, w), (t, h, w, 3)), layers, rng.uniform(0, 5), rng)
    return frames, segments


def write_segment_family(out: Path, *, train: int = 120, test: int = 40, val: int = 0, size=(64, 64),
                         frames=(48, 128), fps=15.0, seed: int = 0, **motion) -> Path:
    """Write the untrimmed-action family: videos/, train.csv and test.csv (video,start,end,label in seconds),
    and val.csv with ``val`` > 0 videos (drawn apart from both); ``motion``: :func:`_seg_video`'s speed_scale
    and radius."""
    (out / "videos").mkdir(parents=True, exist_ok=True)
    splits = (("train", train, 0), ("test", test, 1)) + ((("val", val, 2),) if val else ())
    for split, count, split_seed in splits:
        rows = []
        for i in range(count):
            rng = np.random.default_rng([seed, split_seed, i, 29])
            t = int(rng.integers(frames[0], frames[1] + 1))
            video, segments = _seg_video(rng, t, *size, **motion)
            ext, codec, options = FORMATS[i % len(FORMATS)]
            path = f"videos/{split}_{i:03d}{ext}"
            write_video(out / path, video, fps=fps, codec=codec, options=options)
            rows += [(path, f"{s / fps:.4f}", f"{e / fps:.4f}", label) for s, e, label in segments]
        with open(out / f"{split}.csv", "w", newline="") as f:
            csv.writer(f).writerows([("video", "start", "end", "label"), *rows])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out")
    parser.add_argument("--families", default="pairs8,pairs8s,rhythm5,shapes12,seg6")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-per-class", type=int, default=None,
                        help="a larger test split than the family's (pairs8: 6 per class, 48 videos)")
    parser.add_argument("--val-per-class", type=int, default=0,
                        help="also write val.csv; benchmarks/learning.py then picks the epoch on it, not on test")
    parser.add_argument("--val-videos", type=int, default=0,
                        help="seg6, seg6fast: also write val.csv with this many videos (the epoch, and the majority "
                             "filter's window when --smooth is not given, are then picked on it, not on test)")
    args = parser.parse_args()
    for name in args.families.split(","):
        target = Path(args.out) / name
        if name == "seg6":
            write_segment_family(target, seed=args.seed, val=args.val_videos)
        elif name == "seg6fast":  # seg6 with 2.5x the speed, a larger object and shorter videos
            write_segment_family(target, seed=args.seed, val=args.val_videos, frames=(40, 56), speed_scale=2.5,
                                 radius=(0.11, 0.14))
        else:
            write_family(target, FAMILIES[name], seed=args.seed, test_per_class=args.test_per_class,
                         val_per_class=args.val_per_class)
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
