"""Training configuration: dataclass defaults, then the model family's recipe, then an optional
flat YAML file (``--config``), then ``--key=value`` overrides. Unknown keys are errors; the
resolved config is saved in the run directory and checked on ``--resume``.

Keys whose default is ``None`` are filled by :func:`resolve_defaults` when training starts:
``model`` and ``frames`` from the task, ``schedule="auto"`` from the weights, and the optimisation keys from the
model's recipe, ``cnnlstm/configs/<recipe>.yaml`` (each registered model names its recipe). A
value set by the user (in Python, a YAML file or a flag) always wins over the recipe.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import io
import os
import re
import tokenize
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from ._optional import require


@dataclass
class TrainConfig:
    # data
    data: str = ""  # SPEC: folder-per-class, CSV/list, UCF split file, Kinetics CSV
    val: str | None = None  # SPEC of the validation set (none: no validation)
    root: str | None = None  # folder relative video paths start from
    out: str = "runs/train"  # run directory
    task: str = "classify"  # a registered task (cnnlstm.tasks): classify | segment (per-frame labels) | caption
    # model
    model: str | None = None  # None: the task's default model (classify: cnn_lstm, segment: seq2seq_cnn_lstm, ...)
    backbone: str = "resnet18"
    weights: str = "none"  # none | imagenet | /path/to/file
    pool: str | None = None  # avg | attention | grid (2x2 cells: keeps position); None: the backbone's default
    hidden_size: int | None = None  # None: the model's default
    dropout: float | None = None  # None: the model's recipe, else the model's default
    bidirectional: bool | None = None  # None: the model's default; True reads the whole clip (offline, cannot stream)
    num_layers: int | None = None  # LSTM layers (None: the model's default)
    # LSTM models: also read each frame's feature change f_t - f_(t-1); None: the task's default (segment: on)
    feature_diff: bool | None = None
    # clips
    frames: int | None = None  # frames sampled per clip (T); None: the task's (16; 32 for --task segment)
    size: int = 112  # input size (square crop side, pixels)
    sampler: str = "uniform"  # uniform | random_clip | fps
    stride: int = 1
    short: str = "pad"  # short videos: pad | loop | keep
    # train: random frame per uniform segment, random random_clip start (off: centred); None: on; segment+uniform: off
    temporal_jitter: bool | None = None
    flip: bool = False  # horizontal flip augmentation (changes direction labels!)
    # train crop side >= this share of the shorter side; None: 1 (no crop) for clip labels from scratch, else 0.66
    min_crop_scale: float | None = None
    fps: float | None = None  # sampler fps: frames per second to sample at, up to --frames (thinned evenly beyond)
    # optimisation
    epochs: int = 10
    batch_size: int = 8  # global batch (split across processes under torchrun)
    lr: float | None = None  # peak learning rate (None: the model's recipe)
    # backbone lr = lr * this (None: 0.1 with pretrained weights, 1 with random init)
    backbone_lr_scale: float | None = None
    weight_decay: float | None = None  # AdamW weight decay, not on biases and norms (None: the model's recipe)
    warmup_epochs: float | None = None  # linear warmup, then cosine decay to 0 (None: the model's recipe)
    grad_clip: float | None = None  # max gradient norm, 0: off (None: the model's recipe)
    schedule: str = "auto"  # auto (gradual with pretrained weights, full with random init) | gradual | frozen | full
    phase_epochs: list[int] | None = None  # gradual: epochs per phase (default: thirds)
    phase_lrs: list[float] | None = None  # gradual: lr per phase (default: lr, lr/10, lr/100)
    early_stop: int = 0  # stop after this many epochs without a better val top-1 (0: off)
    # data loading and speed
    workers: int = 2
    cache: str = "auto"  # auto (RUN/cache while the backbone is frozen) | off | a folder
    cache_views: int = 1  # 1: cache eval-style clips (exact, no augmentation); K: K augmented views, cycled by epoch
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    channels_last: bool = True
    compile: bool = False  # torch.compile the frame CNN (the temporal model stays eager)
    threads: int = 0  # torch threads (0: torch's default)
    device: str = "auto"
    sync_bn: bool = False  # torchrun on GPUs: BatchNorm statistics over the global batch (SyncBatchNorm; not on CPU)
    # run control
    seed: int = 0
    resume: bool = False
    checkpoint_every: int = 50  # also save a resumable checkpoint every N steps (0: epoch ends only)
    limit_batches: int = 0  # at most N training batches per epoch (0: all)
    dry_run: bool = False  # one batch of training and validation, then stop
    on_error: str = "skip"  # bad videos: skip (and count) | raise
    log_every: int = 10
    progress: bool = True  # tqdm progress bars (batches, loss, clips/s)
    # dense tasks
    background: str = "background"  # segment: the class of frames outside every segment (index 0)
    teacher_forcing: float = 1.0  # caption / autoregressive labels: share of ground-truth tokens fed to the decoder
    # scheduled sampling: decay linearly to this by the last epoch (None: constant)
    teacher_forcing_end: float | None = None
    min_word_freq: int = 1  # caption: words seen fewer times in the training captions become <unk>
    max_caption_len: int = 20  # caption: generation stops after this many words
    beam_size: int = 3  # caption: beam width for evaluate/predict (1: greedy)
    length_penalty: float = 1.0  # caption: beam score = log-prob / length ** length_penalty
    # segment: majority filter over this many sampled frames (odd; 1: off); none: picked on --val (or train), 1-15
    smooth: int | None = None
    # segment: shorter runs (in sampled frames) merge into a neighbour, after smooth; none: picked with smooth
    min_segment: int | None = None
    # segment: weight of MS-TCN's smoothing loss (neighbouring frames' log-probabilities held close; 0: off)
    tmse: float = 0.15
    pos_weight: str | None = None  # multilabel: none | auto (negatives/positives per class, capped at 10) | a number

    def __post_init__(self) -> None:
        from .tasks import list_tasks  # the registry imports the task modules: only when a config is made

        choices = {"task": tuple(list_tasks()), "schedule": ("auto", "gradual", "frozen", "full"),
                   "pool": (None, "avg", "attention", "grid"),
                   "precision": ("auto", "fp32", "bf16", "fp16"), "on_error": ("skip", "raise"),
                   "sampler": ("uniform", "random_clip", "fps"), "short": ("pad", "loop", "keep")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} must be one of {list(allowed)}; got {getattr(self, key)!r}")
        if self.min_crop_scale is not None and not 0 < self.min_crop_scale <= 1:
            raise ValueError(f"min_crop_scale must be in (0, 1]; got {self.min_crop_scale}")
        for key in ("teacher_forcing", "teacher_forcing_end"):
            value = getattr(self, key)
            if value is not None and not 0 <= value <= 1:
                raise ValueError(f"{key} must be in [0, 1]; got {value}")
        for key in ("frames", "size", "epochs", "batch_size", "min_word_freq", "max_caption_len", "beam_size", "smooth",
                    "min_segment"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1; got {getattr(self, key)}")
        if self.tmse < 0:
            raise ValueError(f"tmse must be >= 0 (0: off); got {self.tmse}")
        if self.smooth is not None and self.smooth % 2 == 0:
            raise ValueError(f"smooth must be an odd number of frames (a centred window; 1: off); got {self.smooth}")


# what a recipe may set: the keys whose default is None ("not chosen by the user")
RECIPE_KEYS = ("lr", "weight_decay", "warmup_epochs", "grad_clip", "dropout", "hidden_size", "num_layers")
# the values of RECIPE_KEYS for models registered without a recipe (None: the model builder's default)
GENERIC_RECIPE = {"lr": 1e-3, "weight_decay": 0.05, "warmup_epochs": 1.0, "grad_clip": 5.0}
RECIPES_DIR = Path(__file__).resolve().parent / "configs"
# the smallest side of MMAction2's TSN multi-scale crop (1 to 0.66): the train crop with pretrained weights, and from
# random init where the task says so (Task.scratch_min_crop_scale: no crop for clip labels, docs/training.md)
TSN_MIN_CROP_SCALE = 0.66

# fields that define the model and the data it expects: resuming with a different value is an error
ARCHITECTURE_KEYS = ("task", "min_word_freq", "background", "model", "backbone", "pool", "hidden_size", "dropout",
                     "bidirectional", "num_layers", "feature_diff", "frames", "size", "sampler", "stride", "short",
                     "fps")


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(the non-None type, whether None is allowed)."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return tp, False


def _expected(tp: Any) -> str:
    """What a value of type ``tp`` looks like, for error messages."""
    if typing.get_origin(tp) is list:
        item = typing.get_args(tp)[0]
        return f"a comma-separated list of {({int: 'integers', float: 'numbers'}).get(item, item.__name__)}"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def coerce(key: str, value: Any) -> Any:
    """Convert ``value`` (from YAML or a command line string) to the type of field ``key``."""
    tp, optional = _base_type(_field_types()[key])
    flag = "--" + key.replace("_", "-")
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
        if optional:
            return None
        if tp is str:
            return "none" if isinstance(value, str) and value.lower() == "none" else value
        raise ValueError(f"config key {key} ({flag}) cannot be empty; expected {_expected(tp)}")
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typing.get_origin(tp) is list:
            item = typing.get_args(tp)[0]
            items = value if isinstance(value, list) else [v for v in str(value).replace(",", " ").split()]
            return [item(v) for v in items]
        if tp is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        return tp(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"config key {key} ({flag}) expects {_expected(tp)}; got {value!r}") from None


def check_keys(keys, where: str) -> None:
    names = [f.name for f in fields(TrainConfig)]
    unknown = [k for k in keys if k not in names]
    if unknown:
        hints = [f"{k} (did you mean {', '.join(difflib.get_close_matches(k, names, n=2))}?)"
                 if difflib.get_close_matches(k, names, n=2) else k for k in unknown]
        raise ValueError(f"unknown config key(s) in {where}: {', '.join(hints)}; `cnnlstm train --help` lists "
                         "every key")


def read_yaml(path: str | os.PathLike) -> dict:
    """A flat mapping of config keys from a YAML file; errors name the file (and the line)."""
    yaml = require("yaml", purpose="YAML recipes")
    if not os.path.isfile(path):
        what = "is a folder" if os.path.isdir(path) else "does not exist"
        raise FileNotFoundError(f"config file {path} {what}; expected a YAML file of `key: value` lines "
                                "(see cnnlstm/configs/ for examples)")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ValueError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', None) or exc}); a recipe is "
                         "`key: value` lines") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); expected a YAML file") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a recipe is a flat mapping of config keys (`key: value` lines); got a "
                         f"{type(data).__name__}")
    nested = [k for k, v in data.items() if isinstance(v, dict)]
    if nested:
        raise ValueError(f"{path}: recipes are flat (key: value); nested sections {nested} are not supported")
    return data


def resolve_config(recipe: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Defaults, then the YAML ``recipe``, then ``overrides`` (already parsed or strings)."""
    values: dict[str, Any] = {}
    if recipe:
        data = read_yaml(recipe)
        check_keys(data, str(recipe))
        for key, value in data.items():
            try:
                values[key] = coerce(key, value)
            except ValueError as exc:
                raise ValueError(f"{recipe}: {exc}") from None
    overrides = dict(overrides or {})
    check_keys(overrides, "the overrides")
    values.update({k: coerce(k, v) for k, v in overrides.items()})
    return TrainConfig(**values)


def config_to_dict(cfg: TrainConfig) -> dict:
    return dataclasses.asdict(cfg)


def dump_yaml(cfg: TrainConfig) -> str:
    yaml = require("yaml", purpose="saving the config")
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def load_saved_config(path: str | os.PathLike) -> TrainConfig:
    """Read a run directory's ``config.yaml`` (unknown keys from another version are errors)."""
    return resolve_config(Path(path))


def diff_configs(saved: TrainConfig, new: TrainConfig) -> dict[str, tuple[Any, Any]]:
    a, b = config_to_dict(saved), config_to_dict(new)
    # feature_diff None (a run saved before the key, or a model without it) trained without it: as False
    return {k: (a[k], b[k]) for k in a if a[k] != b[k] and not (k == "feature_diff" and not a[k] and not b[k])}


def recipe_path(name: str) -> Path | None:
    """``cnnlstm/configs/<name>.yaml``, or None for the generic recipe."""
    path = RECIPES_DIR / f"{name}.yaml"
    return path if path.is_file() else None


def read_recipe(name: str) -> dict[str, Any]:
    """The values of recipe ``name`` (typed), over :data:`GENERIC_RECIPE`."""
    values: dict[str, Any] = dict(GENERIC_RECIPE)
    path = recipe_path(name)
    if path is not None:
        data = read_yaml(path)
        wrong = [k for k in data if k not in RECIPE_KEYS]
        if wrong:
            raise ValueError(f"{path}: a model recipe sets only {list(RECIPE_KEYS)}; got {wrong}")
        values.update({k: coerce(k, v) for k, v in data.items()})
    return values


def resolve_defaults(cfg: TrainConfig) -> TrainConfig:
    """Fill what the user left to the project: the task's default model and clip length, ``schedule="auto"``
    (gradual unfreezing only makes sense with pretrained weights; random init trains everything), the train
    crop from the weights and the task, and every ``None`` of :data:`RECIPE_KEYS` from the model's
    recipe. Idempotent."""
    from .models import get_model_builder, model_recipe
    from .tasks import get_task

    task = get_task(cfg.task)
    model = cfg.model or task.default_model
    recipe = read_recipe(model_recipe(model))
    changes: dict[str, Any] = {"model": model, "frames": cfg.frames or task.default_frames}
    changes.update({k: recipe[k] for k in RECIPE_KEYS if getattr(cfg, k) is None and k in recipe})
    if cfg.schedule == "auto":
        changes["schedule"] = "full" if cfg.weights == "none" else "gradual"
    if cfg.min_crop_scale is None:
        changes["min_crop_scale"] = task.scratch_min_crop_scale if cfg.weights == "none" else TSN_MIN_CROP_SCALE
    if cfg.temporal_jitter is None:  # the task's choice is about uniform samples; a random_clip window moves
        changes["temporal_jitter"] = task.temporal_jitter or cfg.sampler != "uniform"
    if cfg.feature_diff is None and "feature_diff" in inspect.signature(get_model_builder(model)).parameters:
        changes["feature_diff"] = task.feature_diff  # recorded only for the models that take it
    return dataclasses.replace(cfg, **changes)


def config_overrides(args) -> dict[str, str]:
    """The config keys given on the command line (the options :func:`add_config_options` added)."""
    return {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}


_SECTION = re.compile(r"[a-z ]+")  # a section header comment in TrainConfig: "# data loading and speed"


def field_help() -> dict[str, tuple[str, str]]:
    """``{field: (section, meaning)}`` read from the comments of :class:`TrainConfig`'s source, the one
    place each key is documented: a field's trailing comment (or a comment line just above a field
    without one), under the last section header (``# optimisation``). Empty when the source is not
    available (a zipped install)."""
    try:
        source = inspect.getsource(TrainConfig)
    except (OSError, TypeError):
        return {}
    comments: dict[int, tuple[str, bool]] = {}  # line -> (text, a line of its own)
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                own_line = not tok.line[:tok.start[1]].strip()
                comments[tok.start[0]] = (tok.string.lstrip("#").strip(), own_line)
    except (tokenize.TokenError, SyntaxError):
        return {}
    out, section, pending = {}, "", ""
    names = {f.name for f in fields(TrainConfig)}
    for number, line in enumerate(source.splitlines(), start=1):
        text, own_line = comments.get(number, ("", False))
        if own_line:
            header = _SECTION.fullmatch(text) is not None and len(text.split()) <= 4
            section, pending = (text, "") if header else (section, text)
            continue
        match = re.match(r"    (\w+)\s*:", line)
        if match and match.group(1) in names:
            out[match.group(1)] = (section, text or pending)
            pending = ""
    return out


def add_config_options(parser) -> None:
    """One option per TrainConfig field (``--hidden-size 256``), in the sections of TrainConfig, with
    the meaning its comment gives; values stay strings here and are typed by :func:`resolve_config`."""
    from .models import list_backbones, list_models

    hints = typing.get_type_hints(TrainConfig)
    docs = field_help()
    choices = {"model": list_models(), "backbone": list_backbones()}
    groups: dict[str, Any] = {}
    for f in dataclasses.fields(TrainConfig):
        section, meaning = docs.get(f.name, ("", ""))
        if section not in groups:
            groups[section] = parser.add_argument_group(f"config: {section}" if section else "config")
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        text = f"{meaning} (default: {default})" if meaning else f"(default: {default})"
        if f.name in choices:
            text += f"; one of {', '.join(choices[f.name])}"
        text = text.replace("%", "%%")
        if _base_type(hints[f.name])[0] is bool:  # --flip alone means true; --bidirectional false too
            groups[section].add_argument(flag, dest="cfg_" + f.name, nargs="?", const="true", default=None,
                                         metavar="BOOL", help=text)
        else:
            groups[section].add_argument(flag, dest="cfg_" + f.name, default=None, metavar=f.name.upper(), help=text)


__all__ = ["TrainConfig", "ARCHITECTURE_KEYS", "RECIPE_KEYS", "GENERIC_RECIPE", "TSN_MIN_CROP_SCALE",
           "resolve_config", "resolve_defaults", "read_recipe", "recipe_path", "coerce", "check_keys", "dump_yaml",
           "load_saved_config", "diff_configs", "config_to_dict", "add_config_options", "config_overrides",
           "field_help"]
