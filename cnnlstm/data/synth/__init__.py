"""Synthetic datasets as real video files, one generator per task.

``synthesize(out, SynthConfig(task=...))`` writes encoded videos in several containers and codecs
plus the task's annotation files, so the whole pipeline (decode, sample, transform, train,
evaluate) runs on them exactly as on a real dataset. The generators live with their tasks
(``cnnlstm.tasks.<task>.synth``): the temporal-order classes (the default), actions in sequence
for segmentation, and captioned actions. This package holds what they share: the configuration,
the drawing of scenes (:mod:`.draw`) and the output folder (:mod:`.output`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

MIN_FRAMES = 6  # a clip needs at least this many frames (a zigzag needs two frames per pass)


@dataclass(frozen=True)
class SynthConfig:
    """What :func:`synthesize` generates. The defaults take a few seconds on one CPU core."""

    task: str = "classify"  # a registered task: cnnlstm.tasks.list_tasks()
    videos_per_class: int = 24  # train videos per class
    test_per_class: int = 8
    val_per_class: int = 0  # 0: no val split; else val.csv too, to pick the epoch on (cnnlstm train --val)
    size: int = 64  # frame side, pixels (even: yuv420p)
    min_frames: int = 24  # lengths vary uniformly in [min_frames, max_frames]
    max_frames: int = 48
    fps: float = 12.0
    seed: int = 0
    # (extension, codec) pairs, cycled over videos: several containers and codecs on purpose
    formats: tuple[tuple[str, str], ...] = (
        (".mp4", "libx264"),
        (".avi", "mpeg4"),
        (".mkv", "ffv1"),
        (".webm", "libvpx-vp9"),
    )

    def __post_init__(self):
        from ...tasks import list_tasks

        if self.task not in list_tasks():
            raise ValueError(f"unknown synthetic task {self.task!r}; expected one of {list_tasks()}")
        if self.videos_per_class < 1 or self.test_per_class < 0:
            raise ValueError(
                f"videos_per_class must be >= 1 and test_per_class >= 0; "
                f"got {self.videos_per_class} and {self.test_per_class}"
            )
        if self.val_per_class < 0:
            raise ValueError(f"val_per_class must be >= 0 (0: no val split); got {self.val_per_class}")
        if self.size < 16 or self.size % 2:
            raise ValueError(f"size must be an even number >= 16 (yuv420p video); got {self.size}")
        if not MIN_FRAMES <= self.min_frames <= self.max_frames:
            raise ValueError(
                f"need {MIN_FRAMES} <= min_frames <= max_frames; got {self.min_frames} and {self.max_frames}"
            )
        if self.fps <= 0:
            raise ValueError(f"fps must be positive; got {self.fps}")
        if not self.formats or any(len(f) != 2 or not str(f[0]).startswith(".") for f in self.formats):
            raise ValueError(f"formats must be (extension, codec) pairs like ('.mp4', 'libx264'); got {self.formats}")


def synthesize(out_dir: str | os.PathLike, config: SynthConfig = SynthConfig(), *, progress: bool = False) -> dict:
    """Write the synthetic dataset of ``config.task`` into ``out_dir``; returns a summary dict.

    The summary has ``train`` and ``test`` (video counts), ``out`` (absolute folder),
    ``train_csv``, ``test_csv``, ``seconds`` and what the task adds (``classes``, ``vocabulary``);
    with ``config.val_per_class`` also ``val`` and ``val_csv``. The val split is drawn apart from
    the others: adding it leaves the train and test videos as they were.
    An earlier synthesize() output in the same folder is replaced; a folder holding other files
    with the same names is refused.
    """
    from ...tasks import get_task

    return get_task(config.task).synthesize(out_dir, config, progress=progress)


def add_parser(sub) -> None:
    """Register ``cnnlstm synth`` on the CLI's subparsers."""
    from ...tasks import list_tasks

    p = sub.add_parser("synth", help="write a synthetic video dataset (classify: classes differ only in frame order; "
                       "segment: actions in sequence; caption: time-dependent captions)")
    p.add_argument("out", help="output folder: OUT/videos/, OUT/train.csv, OUT/test.csv (and OUT/val.csv)")
    p.add_argument("--task", default=SynthConfig.task, choices=list_tasks())
    p.add_argument("--videos-per-class", type=int, default=24,
                   help="training videos per class (segment/caption: x6 videos)")
    p.add_argument("--test-per-class", type=int, default=8, help="test videos per class (segment/caption: x6 videos)")
    p.add_argument("--val-per-class", type=int, default=0,
                   help="val videos per class, written to OUT/val.csv for `cnnlstm train --val` to pick the epoch "
                        "on, so test stays unseen (default 0: no val split)")
    p.add_argument("--size", type=int, default=64, help="frame side in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_synth)


def cmd_synth(args) -> int:
    """Write a synthetic dataset of real video files for a task (see ``cnnlstm synth --help``)."""
    from ...tasks import get_task
    from .output import split_list

    cfg = SynthConfig(task=args.task, videos_per_class=args.videos_per_class, test_per_class=args.test_per_class,
                      val_per_class=args.val_per_class, size=args.size, seed=args.seed)
    summary = synthesize(args.out, cfg, progress=not args.quiet)
    what, layout = get_task(cfg.task).describe_synth(summary)
    print(f"wrote {split_list(summary, counts=True)} videos {what} to {summary['out']} "
          f"({summary['seconds']:.1f} s): {layout}")
    return 0


__all__ = ["SynthConfig", "synthesize", "MIN_FRAMES", "add_parser"]
