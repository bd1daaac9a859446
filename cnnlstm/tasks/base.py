"""What a task is: the :class:`Task` protocol every task implements, and the helpers tasks share.

A task decides what a run learns and everything that follows from it: which annotation files it
reads and what targets they give, which models fit, the loss, the validation metrics and the score
that picks the best epoch, the evaluation report, the prediction row of one video, the plots, the
command line's text and the synthetic dataset. The engine, :func:`cnnlstm.inference.evaluate` and
``predict``, the CLI, the demo, ``synth``, ``export``, ``stream`` and ``serve`` ask the run's task
and never compare task names. Tasks do not inherit from each other; what they share lives here as
plain functions.

Letters: B batch, T frames, K classes, L caption tokens.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, runtime_checkable

import torch

from ..data.annotations.formats import VideoList

if TYPE_CHECKING:
    from ..data.synth import SynthConfig
    from ..engine.health import LabelStatistics
    from ..run import LoadedRun


@dataclass
class TaskData:
    """A task's training data: the videos, the label names and how a sampled clip gets its target."""

    train: VideoList
    val: VideoList | None
    labels: list[str]  # what labels.json holds: class names (background first for segment) or caption tokens
    train_targets: Callable | None = None  # (item, frame_indices, fps, generator) -> target, see VideoDataset
    val_targets: Callable | None = None
    dataset_classes: list[str] | None = None  # clip labels come from the videos' own labels (VideoItem.label)
    state: Any = None  # what else the task keeps for validation and saving (captions: vocabulary, references)


@runtime_checkable
class Task(Protocol):
    """The protocol of a task (see the module docstring); implementations are registered in
    :mod:`cnnlstm.tasks`. Methods get the run's :class:`~cnnlstm.config.TrainConfig` as ``cfg``."""

    name: str  # the registry key and the value of --task
    default_model: str  # the registered model this task reaches for first
    default_frames: int  # frames per clip when --frames is not given
    scratch_min_crop_scale: float  # the train crop's smallest side with random init when --min-crop-scale is not given
    feature_diff: bool  # LSTM models read each frame's feature change when --feature-diff is not given
    temporal_jitter: bool  # uniform training samples: a random frame per segment when --temporal-jitter is not given
    score_name: str  # the validation key (higher is better) that picks model.safetensors
    output_kind: str  # what `cnnlstm models` calls the output of a model for this task
    model_does: str  # what a model of this task does, for error messages ("labels every frame")
    labels_are_classes: bool  # labels.json names classes (False: a caption vocabulary)
    export_refusal: str | None  # why `cnnlstm export` cannot export this task's runs (None: it can)

    # --- models ---------------------------------------------------------------------------------
    def fits(self, model: torch.nn.Module) -> bool:
        """True when ``model`` produces this task's output."""

    def check_model(self, model: torch.nn.Module) -> None:
        """Raise ValueError, naming a model that fits, when ``model`` does not."""

    # --- training -------------------------------------------------------------------------------
    def load(self, cfg, say: Callable[[str], None]) -> TaskData:
        """Read ``cfg.data`` (and ``cfg.val``) and make the targets."""

    def save(self, run: Path, data: TaskData) -> None:
        """Write what a run directory needs beyond config.yaml and labels.json."""

    def load_state(self, run: Path) -> Any:
        """Read back what :meth:`save` wrote (None when nothing)."""

    def loss(self, model: torch.nn.Module, batch, device: torch.device, cfg, progress: float,
             data: TaskData) -> torch.Tensor:
        """The loss of one batch; ``progress`` in [0, 1] is how far training is (scheduled sampling);
        ``data`` is what :meth:`load` made (e.g. class weights from the training labels)."""

    def label_counts(self, data: TaskData) -> LabelStatistics:
        """An empty accumulator of training targets for the learning-health check
        (:mod:`cnnlstm.engine.health`): it knows what predicting the label prior costs in this task's loss."""

    def validate(self, model, loader, device, autocast, data: TaskData, cfg, info) -> tuple[dict, float, Any]:
        """Validation metrics (keys ``val_*``), the selection score, and what :meth:`final_plot` needs."""

    def picks_on_training(self, cfg) -> bool:
        """True when validation picks something beside the epoch that ``cfg`` leaves open (segment: the
        label cleaning): without a val split, training then validates the kept weights once on its own
        videos and saves the row in best.json."""

    def final_plot(self, last: Any, labels: list[str], run: Path) -> None:
        """Plots of the last validation, under ``run/plots``."""

    # --- evaluate and predict -------------------------------------------------------------------
    def evaluate(self, loaded: LoadedRun, data, *, root, views: int, batch_size: int, workers: int,
                 plot: bool) -> dict:
        """The evaluation report of a trained run on an annotation file (JSON-ready)."""

    def predict_row(self, loaded: LoadedRun, clip: torch.Tensor, times: torch.Tensor, facts: dict, *,
                    topk: int, threshold: float = 0.5) -> dict:
        """The task's part of one video's prediction: ``clip`` (1, T, C, S, S), ``times`` (T,) seconds.
        ``threshold`` is the score above which a class counts as present, for tasks that score every
        class on its own (others ignore it)."""

    def label_scores(self, loaded: LoadedRun, logits: torch.Tensor, *, topk: int, threshold: float = 0.5) -> dict:
        """One output's logits (K,) (a clip so far, or one frame, as ``stream`` sees them) as the task's
        answer: ``label`` and ``score`` (the best class), ``topk`` ([[label, score], ...]) and, for tasks
        that score every class on its own, ``labels`` (every class at or above ``threshold``) and
        ``threshold``. Scores are rounded to 6 decimals."""

    def plot_prediction(self, loaded: LoadedRun, frames: torch.Tensor, row: dict, path: Path) -> str:
        """A PNG of one prediction over its frames uint8 (T, C, H, W); returns the path."""

    def window_rows(self, loaded: LoadedRun, x: torch.Tensor, times: torch.Tensor, *,
                    topk: int, threshold: float = 0.5) -> tuple[list[dict], torch.Tensor | None]:
        """Windowed prediction (:mod:`cnnlstm.windows`): one row per window (``label``, ``score`` and
        the task's details) for clips (N, T, C, S, S) or frame features (N, T, D) with frame times
        (N, T) in seconds, and what :meth:`summarize_windows` needs of them (probabilities or None)."""

    def summarize_windows(self, loaded: LoadedRun, windows: list[dict], probs: torch.Tensor | None,
                          times: torch.Tensor, *, topk: int, threshold: float = 0.5) -> dict:
        """The video-level part of a windowed prediction from every window (rows with ``start`` and
        ``end``), their concatenated ``probs`` and ``times`` (N, T): ``label``, ``score``, ``segments``."""

    def format_evaluation(self, report: dict) -> list[str]:
        """The lines ``cnnlstm evaluate`` prints for ``report``."""

    def format_prediction(self, row: dict) -> list[str]:
        """The lines ``cnnlstm predict`` prints for one video (its path first)."""

    # --- synthetic data -------------------------------------------------------------------------
    def synthesize(self, out_dir, config: SynthConfig, *, progress: bool = False) -> dict:
        """Write this task's synthetic dataset as real video files; returns a summary."""

    def describe_synth(self, summary: dict) -> tuple[str, str]:
        """What ``cnnlstm synth`` says it wrote: what the videos hold, and the files."""


def softmax_scores(logits: torch.Tensor, classes: list[str], *, topk: int) -> dict:
    """:meth:`Task.label_scores` of the tasks that pick one class per output: softmax over logits (K,)."""
    top = logits.float().softmax(-1).topk(min(topk, len(classes)))
    ranked = [[classes[int(c)], round(float(p), 6)] for p, c in zip(top.values, top.indices, strict=True)]
    return {"label": ranked[0][0], "score": ranked[0][1], "topk": ranked}


def merge_windows(windows: list[dict]) -> list[dict]:
    """Consecutive windows with the same ``label`` as one segment ``{label, start, end, score,
    windows}``: from the first window's start to the last one's end, ``score`` the mean of the
    windows' scores, ``windows`` how many. Overlapping windows (stride < window) give segments
    that overlap their neighbours by the overlap."""
    segments: list[dict] = []
    for w in windows:
        last = segments[-1] if segments else None
        if last is not None and last["label"] == w["label"]:
            last["end"], last["score"], last["windows"] = w["end"], last["score"] + w["score"], last["windows"] + 1
        else:
            segments.append({"label": w["label"], "start": w["start"], "end": w["end"], "score": w["score"],
                             "windows": 1})
    for seg in segments:
        seg["score"] = seg["score"] / seg["windows"]
    return segments


def is_clip_classifier(model) -> bool:
    """A model with one set of logits (B, K) per clip: neither per-frame nor a caption decoder
    (what the classify and multi-label tasks train)."""
    return not getattr(model, "per_frame", False) and not callable(getattr(model, "decode_step", None))


def collect_views(loaded, videos, *, views: int, rows_of: Callable[[Any, Any], list], batch_size: int = 8,
                  workers: int = 0, **dataset_kwargs) -> tuple[list[dict[int, Any]], list[dict]]:
    """The run's model over ``views`` temporal views of every video of ``videos`` (a spec or a VideoList).

    View v samples at position (v + 0.5) / views (:class:`~cnnlstm.data.sampling.SamplerConfig`).
    ``rows_of(batch, output)`` returns ``[(dataset index, row), ...]`` for one batch; ``dataset_kwargs``
    go to :class:`~cnnlstm.data.datasets.VideoDataset` (``root``, ``classes``, ``targets``). Returns, per
    view, ``{dataset index: row}``, and the videos that failed to decode (each listed once).
    """
    from ..data.datasets import VideoDataset, make_loader
    from ..data.transforms import eval_transform
    from ..engine.loop import run_model

    per_view: list[dict[int, Any]] = []
    skipped: list[dict] = []
    for v in range(views):
        dataset = VideoDataset(videos, sampler=loaded.sampler((v + 0.5) / views),
                               transform=eval_transform(loaded.data_cfg), on_error="skip", **dataset_kwargs)
        rows, bad = run_model(loaded.model, make_loader(dataset, batch_size=batch_size, workers=workers),
                              loaded.device, rows_of)
        per_view.append(dict(rows))
        skipped += [b for b in bad if b["path"] not in {s["path"] for s in skipped}]
    return per_view, skipped


def logits_in_every_view(per_view: list[dict[int, Any]], num_classes: int) -> tuple[list[int], torch.Tensor]:
    """The videos of :func:`collect_views`'s output that decoded in every view (dataset indices, in
    order) and their logits (N, V, K), taken from the first item of each row."""
    common = sorted(set.intersection(*(set(v) for v in per_view)))
    if not common:
        return common, torch.empty(0, len(per_view), num_classes)
    return common, torch.stack([torch.stack([v[i][0] for v in per_view]) for i in common])


def teacher_forcing_ratio(cfg, progress: float) -> float:
    """Scheduled sampling: ``teacher_forcing`` at the start of training, linearly to
    ``teacher_forcing_end`` (when set) at the end; ``progress`` in [0, 1]."""
    if cfg.teacher_forcing_end is None:
        return cfg.teacher_forcing
    return cfg.teacher_forcing + (cfg.teacher_forcing_end - cfg.teacher_forcing) * min(max(progress, 0.0), 1.0)


__all__ = ["Task", "TaskData", "softmax_scores", "teacher_forcing_ratio", "merge_windows", "is_clip_classifier"]
