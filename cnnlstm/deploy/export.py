"""ONNX export of a trained run: the frame encoder, the recurrent step and the whole-clip model.

Letters: N frames, B streams (batch), T frames per clip, C channels, S crop side, D frame-feature
size, K classes.

``cnnlstm export RUN --format onnx`` writes into ``RUN/onnx``:

- ``encoder.onnx``: frames (N, C, S, S) float, already normalised -> ``features`` (N, D).
- ``step.onnx`` (streamable models only): ``feature`` (B, D) plus the named state tensors ->
  ``logits`` (B, K) plus the new state (``<name>_out``). A runtime streams a video by running the
  encoder on each new frame and the step on its feature, feeding each ``<name>_out`` back as
  ``<name>``; the state starts filled with each entry's ``init`` value (``preprocess.json``).
- ``clip.onnx``: ``clips`` (B, T, C, S, S) and ``lengths`` (B,) int64 -> ``logits`` (B, K), or
  (B, T, K) for per-frame models; skipped with a warning when the model does not export.
- ``preprocess.json``: how a uint8 RGB frame becomes the encoder's input, the labels, the state
  spec and the versions. :class:`cnnlstm.deploy.onnx_stream.OnnxStreamer` is the reference reader
  (numpy + onnxruntime only).

Exporter: ``torch.onnx.export(dynamo=True)`` (torch.export + onnxscript). The legacy TorchScript
exporter is deprecated and, for an ``nn.LSTM`` called without an explicit state, bakes the zero
initial state in at the traced batch size, so the graph fails at any other batch size; the dynamo
exporter keeps ``LSTM`` as one ONNX op with dynamic batch and time. It can still silently
specialise a dynamic axis (it does for the bidirectional model's time axis), so every graph is
checked with ``onnx.checker`` and run in onnxruntime at other sizes than the export example.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .._optional import require
from ..engine.io import atomic_write_json
from ..errors import UserError
from .onnx_graphs import graph_modules, state_probe, state_spec

FORMATS = ("onnx",)
PREPROCESS = "preprocess.json"

def _export(module, args: tuple, path: Path, input_names: list[str], output_names: list[str], dynamic_shapes, opset):
    import warnings

    import torch

    onnx = require("onnx", purpose="ONNX export")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's FutureWarnings and internal notices
        torch.onnx.export(module.eval(), args, str(path), input_names=input_names, output_names=output_names,
                          dynamic_shapes=dynamic_shapes, opset_version=opset, dynamo=True, external_data=False,
                          verbose=False)
    onnx.checker.check_model(str(path), full_check=True)


def _max_diff(path: Path, feeds: dict, expected: list) -> float:
    """Run ``path`` in onnxruntime and return the largest |difference| from the PyTorch outputs."""
    got = _session(path).run(None, {k: v.numpy() for k, v in feeds.items()})
    return max(float(abs(g - e.detach().numpy()).max()) for g, e in zip(got, expected, strict=False))


def _session(path: Path):
    """A quiet CPU onnxruntime session (a graph that fails a size check is reported by us, not logged)."""
    ort = require("onnxruntime", purpose="ONNX export")
    options = ort.SessionOptions()
    options.log_severity_level = 4
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _check(path: Path, feeds: dict, expected: list, what: str, atol: float = 1e-3) -> None:
    diff = _max_diff(path, feeds, expected)
    if not diff <= atol:
        raise RuntimeError(f"{path.name}: the exported {what} disagrees with PyTorch (max |diff| {diff:.3g} > {atol}); "
                           "please report this with the model name")


def _opset_of(path: Path) -> int:
    onnx = require("onnx", purpose="ONNX export")
    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def export_model(model, data_cfg, classes: list[str], out_dir: str | os.PathLike, *, cfg=None,
                 opset: int | None = None) -> dict:
    """Export ``model`` (a VideoModel in eval mode, on the CPU) into ``out_dir``; see the module docstring.

    ``data_cfg`` is its :class:`~cnnlstm.data.transforms.DataConfig`, ``cfg`` the run's TrainConfig
    (frames per clip, sampler) when known. Returns the files written, warnings, and the metadata.
    """
    import torch

    from ..models.video_model import VideoModel

    for name in ("onnx", "onnxscript", "onnxruntime"):
        require(name, purpose="ONNX export")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    EncoderGraph, StepGraph, ClipGraph, PlainClipGraph = graph_modules()
    B, N, T = torch.export.Dim("B"), torch.export.Dim("N"), torch.export.Dim("T")
    C, S = len(data_cfg.mean), data_cfg.input_size
    frames_per_clip = cfg.frames if cfg is not None else 16
    files: dict[str, str | None] = {"encoder": None, "step": None, "clip": None}
    warnings_: list[str] = []
    staged = isinstance(model, VideoModel)
    streamable = staged and model.streamable
    spec = state_spec(model) if streamable else []

    with torch.no_grad():
        if staged:  # encoder.onnx
            path, graph = out / "encoder.onnx", EncoderGraph(model.encoder)
            _export(graph, (torch.randn(2, C, S, S),), path, ["frames"], ["features"], {"frames": {0: N}}, opset)
            probe = torch.randn(3, C, S, S)
            _check(path, {"frames": probe}, [graph(probe)], "encoder")
            files["encoder"] = path.name
        else:
            warnings_.append(f"encoder.onnx not written: {type(model).__name__} has no per-frame encoder")

        # clip.onnx before step.onnx: after a T=1 step export the exporter specialises the clip's time axis
        files["clip"], clip_warning, dynamic_t = _export_clip(model, ClipGraph if staged else PlainClipGraph, staged,
                                                             out / "clip.onnx", (C, S), frames_per_clip, (B, T), opset)
        if clip_warning:
            warnings_.append(clip_warning)

        if streamable:  # step.onnx
            path = out / "step.onnx"
            num_temporal = sum(s["part"] == "temporal" for s in spec)
            graph = StepGraph(model, num_temporal)
            names = [s["name"] for s in spec]
            dyn = ({0: B}, tuple({s["batch_axis"]: B} for s in spec))  # (feature, *state)
            state = [t for part in model.init_state(2) for t in part]
            _export(graph, (torch.randn(2, model.num_features), *state), path, ["feature", *names],
                    ["logits", *(s["output"] for s in spec)], dyn, opset)
            probe = (torch.randn(3, model.num_features), *(state_probe(s) for s in spec))
            _check(path, dict(zip(["feature", *names], probe, strict=True)), list(graph(*probe)), "step")
            files["step"] = path.name
        else:
            why = "it is not a VideoModel" if not staged else f"{type(model.temporal).__name__} is not causal"
            warnings_.append(f"step.onnx not written: this model cannot stream ({why}); use clip.onnx on whole clips")

    first = files["encoder"] or files["clip"]
    opset_used = _opset_of(out / first) if first else opset
    meta = _metadata(model, data_cfg, classes, cfg, files, spec, opset_used, staged, dynamic_t)
    atomic_write_json(out / PREPROCESS, meta)
    return {"out_dir": str(out),
            "files": {k: str(out / v) for k, v in files.items() if v} | {"preprocess": str(out / PREPROCESS)},
            "warnings": warnings_, "streamable": streamable, "metadata": meta}


def _export_clip(model, graph_cls, staged: bool, path: Path, cs: tuple[int, int], frames: int, dims, opset):
    """Export clip.onnx with dynamic B and T; fall back to a fixed T = frames; else skip.

    Returns (file, warning, dynamic_T)."""
    import torch

    C, S = cs
    B, T = dims
    graph = graph_cls(model).eval()

    def feeds(b: int, t: int) -> dict:
        clips = torch.randn(b, t, C, S, S)
        if not staged:
            return {"clips": clips}
        return {"clips": clips,
                "lengths": torch.tensor([t] + [max(1, t - 1 - i) for i in range(b - 1)], dtype=torch.long)}

    def expected(f: dict):
        if not staged:
            return [graph(**f)]
        logits = model(f["clips"], f["lengths"]).logits  # (B, K) or (B, T, K)
        if logits.dim() == 3:  # per-frame: padding positions are garbage in both; compare real frames only
            mask = torch.arange(logits.shape[1])[None, :] < f["lengths"][:, None]
            logits = logits * mask[..., None]
        return [logits]

    def agrees(f: dict) -> bool:
        want = expected(f)
        if want[0].dim() == 3:
            got = _session(path).run(None, {k: v.numpy() for k, v in f.items()})[0]
            mask = (torch.arange(got.shape[1])[None, :] < f["lengths"][:, None]).numpy()
            return float(abs(got * mask[..., None] - want[0].numpy()).max()) <= 1e-3
        return _max_diff(path, f, want) <= 1e-3

    names = list(feeds(1, 1))
    errors = []
    for t_axis in (True, False):  # dynamic T first, then T fixed at the run's clip length
        t0 = 3 if t_axis else frames
        dyn = {"clips": {0: B, 1: T} if t_axis else {0: B}}
        if staged:
            dyn["lengths"] = {0: B}
        try:
            _export(graph, tuple(feeds(2, t0).values()), path, names, ["logits"], dyn, opset)
            if t_axis and getattr(model, "per_frame", False):
                _name_output_axis(path, 1, "T")
            checks = [feeds(3, t0 + 2), feeds(1, t0)] if t_axis else [feeds(3, t0)]
            if all(agrees(f) for f in checks):
                fixed = "" if t_axis else (f"clip.onnx has a fixed T={frames} (the run's frames per clip): "
                                           "the exporter could not keep the time axis dynamic for this model")
                return path.name, fixed, t_axis
            errors.append(f"{'dynamic' if t_axis else 'fixed'} T: outputs disagree with PyTorch at other sizes")
        except Exception as exc:  # noqa: BLE001 - any exporter failure means: skip this optional file
            errors.append(f"{'dynamic' if t_axis else 'fixed'} T: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:200]}")
    path.unlink(missing_ok=True)
    return None, f"clip.onnx not written: {type(model).__name__} did not export ({'; '.join(errors)})", False


def _name_output_axis(path: Path, axis: int, name: str) -> None:
    """Declare ``axis`` of the first output dynamic (the exporter leaves the per-frame logits' T at the example's)."""
    onnx = require("onnx", purpose="ONNX export")
    model = onnx.load(str(path))
    model.graph.output[0].type.tensor_type.shape.dim[axis].dim_param = name
    onnx.save(model, str(path))
    onnx.checker.check_model(str(path), full_check=True)


def _metadata(model, data_cfg, classes, cfg, files, spec, opset, staged: bool, dynamic_t: bool) -> dict:
    import onnx
    import torch

    return {
        "format": "cnnlstm-onnx",
        "version": 1,
        "model": cfg.model if cfg is not None else type(model).__name__,
        "backbone": cfg.backbone if cfg is not None else None,
        "files": files,
        "input": {
            "channel_order": "RGB",
            "dtype": "uint8",
            "value_range": [0, 255],
            "resize_shorter": data_cfg.resize_size,
            "resize_rule": "shorter side -> resize_shorter, longer side -> int(resize_shorter * long / short)",
            "interpolation": data_cfg.interpolation,
            "antialias": True,
            "crop": data_cfg.input_size,
            "crop_rule": "centre crop: top = round((H' - crop) / 2), left = round((W' - crop) / 2)",
            "scale": 1 / 255,
            "mean": list(data_cfg.mean),
            "std": list(data_cfg.std),
            "layout": "(N, C, S, S) float32",
            "steps": [
                "decode the frame as RGB uint8 (H, W, 3)",
                f"resize the shorter side to {data_cfg.resize_size} ({data_cfg.interpolation}, antialiased)",
                f"centre crop {data_cfg.input_size} x {data_cfg.input_size}",
                "x = x / 255, then (x - mean) / std per channel",
                "transpose to (C, S, S) and stack frames into (N, C, S, S)",
            ],
        },
        "labels": list(classes),
        "num_classes": len(classes),
        "feature_dim": model.num_features if staged else None,
        "frames_per_clip": cfg.frames if cfg is not None else None,
        "sampler": cfg.sampler if cfg is not None else None,
        "stride": cfg.stride if cfg is not None else None,
        "fps": None,  # the training frame rate is not recorded in a run (uniform sampling spans the whole video)
        "per_frame": bool(getattr(model, "per_frame", False)),
        "streamable": bool(files["step"]),
        "state": spec,
        "clip_inputs": (["clips", "lengths"] if staged else ["clips"]) if files["clip"] else [],
        "clip_dynamic_T": dynamic_t if files["clip"] else None,
        "opset": opset,
        "torch_version": torch.__version__,
        "onnx_version": onnx.__version__,
    }


def export_onnx(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None, *,
                opset: int | None = None) -> dict:
    """Export the trained model of ``run_dir`` to ONNX in ``out_dir`` (default ``RUN_DIR/onnx``)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"run directory {run} does not exist; pass the folder `cnnlstm train` wrote "
                                "(config.yaml, labels.json, model.safetensors)")
    from ..run import load_run
    from ..tasks import get_task, list_tasks

    loaded = load_run(run, device="cpu")
    refusal = loaded.task.export_refusal
    if refusal is not None:
        supported = [name for name in list_tasks() if get_task(name).export_refusal is None]
        raise ValueError(f"{run} is {refusal}; export supports {' and '.join(supported)} runs")
    return export_model(loaded.model, loaded.data_cfg, loaded.classes, out_dir if out_dir is not None else run / "onnx",
                        cfg=loaded.cfg, opset=opset)


def cmd_export(args: argparse.Namespace) -> int:
    """Export a trained run for other runtimes."""
    if args.format not in FORMATS:
        raise UserError(f"unsupported --format {args.format!r}; supported: {', '.join(FORMATS)}")
    result = export_onnx(args.run, args.out, opset=args.opset)  # errors: the CLI's one error path (cnnlstm.errors)
    for path in result["files"].values():
        print(f"wrote {path}")
    for warning in result["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    out = result["out_dir"]
    if result["streamable"]:
        print('stream with: python -c "from cnnlstm.deploy.onnx_stream import OnnxStreamer; '
              f's = OnnxStreamer({out!r}); print(s.step(rgb_uint8_frame))"  '
              f"(encoder.onnx then step.onnx per frame, state carried; see {PREPROCESS})")
    elif "clip" in result["files"]:
        print(f"not streamable: run clip.onnx on whole clips (B, T, C, S, S) preprocessed as in {out}/{PREPROCESS}")
    return 0


def add_parser(sub) -> None:
    """Register the ``cnnlstm export`` subcommand on the CLI's subparsers (stdlib imports only here)."""
    p = sub.add_parser("export", help="export a trained run to ONNX (encoder, streaming step, whole clip)")
    p.add_argument("run", metavar="RUN_DIR", help="run directory (config.yaml, labels.json, model.safetensors)")
    p.add_argument("--format", default="onnx", help="export format (only 'onnx')")
    p.add_argument("--out", default=None, help="output folder (default: RUN_DIR/onnx)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    p.set_defaults(func=cmd_export)
