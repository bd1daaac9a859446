"""``cnnlstm compare``: several models on the same data, loop, budget and metrics.

Every model is trained with the same ``TrainConfig`` (only ``model`` differs) and its own family's
recipe for what the config leaves unset (lr, warmup, weight decay, dropout, clipping:
``cnnlstm/configs/``), optionally at three learning rates (``--lr-sweep``: the recipe's lr x 1/3, 1,
3; the best on the validation set is kept), evaluated on the same validation set, then measured:
parameters, GFLOPs per clip (counted with ``torch.utils.flop_counter``, LSTMs included), training
time per epoch, inference latency and peak memory per clip, how latency and memory scale with clip
length, and the cost of one new frame when streaming (a recurrent step for causal models, re-running
a window for the others). Latency and memory are measured in a fresh process per model (peak RSS on
CPU, peak allocated memory on GPU).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import gc
import io
import json
import os
import shutil
import statistics
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..config import (
    RECIPE_KEYS,
    TrainConfig,
    add_config_options,
    config_overrides,
    load_saved_config,
    read_recipe,
    resolve_config,
)
from ..data.video.isolate import run_isolated
from ..engine.runlog import read_metrics
from ..errors import UserError
from ..inference import evaluate
from ..models import get_model_builder, model_recipe
from ..models.weights import OFFLINE_ENV
from ..run import load_run
from ..train import add_offline_option, fit

COLUMNS = ("model", "top1", "params", "gflops_per_clip", "train_s_per_epoch", "latency_ms_per_clip", "peak_mem_mb",
           "stream_ms_per_frame", "stream_mode", "recipe")
LR_SWEEP = (1 / 3, 1.0, 3.0)  # --lr-sweep: these multiples of the recipe's (or the given) learning rate


def _rnn_flops(input_shape, w_ih, w_hh, *args, out_shape=None, **kwargs) -> int:
    """One LSTM layer and direction: 2 * T * B * (4H * I + 4H * H) (input is time-major)."""
    steps, batch, inputs = input_shape[:3]
    gates, hidden = w_ih[0], w_hh[1]
    return 2 * steps * batch * (gates * inputs + gates * hidden)


def count_flops(model: torch.nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one forward pass on ``x`` (a multiply-add counts 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    custom = {aten.mkldnn_rnn_layer: _rnn_flops}
    if hasattr(aten, "_cudnn_rnn"):
        custom[aten._cudnn_rnn] = lambda input_shape, weight, *a, **k: 0  # noqa: E731 - GPU: counted on CPU instead
    model.eval()
    with torch.inference_mode(), FlopCounterMode(display=False, custom_mapping=custom) as counter:
        model(x)
    return int(counter.get_total_flops())


def _rss_mb() -> float:
    """Resident memory of this process now (Linux /proc), in MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_during(fn) -> float:
    """Peak growth of resident memory (MB) while ``fn`` runs, sampled every 0.2 ms by a thread
    (torch kernels release the GIL)."""
    gc.collect()
    before, peak, done = _rss_mb(), [0.0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.0002)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    try:
        fn()
    finally:
        done.set()
        watcher.join()
    return max(0.0, max(peak[0], _rss_mb()) - before)


def measure_inference(run_dir: str, size: int, lengths: Sequence[int], repeats: int = 3, device: str = "cpu",
                      threads: int = 1) -> dict:
    """In a fresh process: latency (median ms) and peak memory growth (MB) of one clip of each
    length, and the per-frame cost of streaming. ``threads`` torch threads on CPU: on a shared
    machine, OpenMP threads spinning against another job made a 2 ms forward take 400 ms."""
    torch.manual_seed(0)
    if threads:
        torch.set_num_threads(threads)
    loaded = load_run(run_dir, device=device)
    model, dev = loaded.model, loaded.device
    cuda = dev.type == "cuda"
    out: dict = {"lengths": {}, "threads": torch.get_num_threads()}

    def timed(fn) -> float:
        times = []
        for _ in range(repeats + 1):
            start = time.perf_counter()
            fn()
            if cuda:
                torch.cuda.synchronize(dev)
            times.append(time.perf_counter() - start)
        return statistics.median(times[1:]) * 1000

    with torch.inference_mode():
        for t in sorted(set(lengths)):
            clip = torch.rand(1, t, 3, size, size, device=dev)
            if cuda:
                torch.cuda.reset_peak_memory_stats(dev)
                base = torch.cuda.memory_allocated(dev)
                model(clip)
                peak = (torch.cuda.max_memory_allocated(dev) - base) / 2**20
            else:
                peak = _peak_rss_during(lambda clip=clip: model(clip))
            out["lengths"][t] = {"latency_ms": timed(lambda clip=clip: model(clip)), "peak_mem_mb": peak}
        frame = torch.rand(1, 3, size, size, device=dev)
        if getattr(model, "streamable", False):
            state = model.init_state(1)

            def step():
                nonlocal state
                _, state = model.step(frame, state)

            out["stream"] = {"mode": "step", "ms_per_frame": timed(step)}
        else:
            window = torch.rand(1, loaded.cfg.frames, 3, size, size, device=dev)
            out["stream"] = {"mode": f"window of {loaded.cfg.frames}", "ms_per_frame": timed(lambda: model(window))}
    return out


def _train_one(base: TrainConfig, name: str, run: Path, log, lr: float | None = None) -> tuple[float, dict]:
    """Train ``name`` into ``run`` (its recipe fills what ``base`` leaves unset); returns the mean
    seconds per epoch and the validation report."""
    if run.exists():
        shutil.rmtree(run)  # a comparison always trains from scratch
    cfg = dataclasses.replace(base, model=name, out=str(run), **({"lr": lr} if lr is not None else {}))
    summary = fit(cfg, log=lambda line: log(f"  [{name}] {line}") if "[" in line or "warning" in line else None)
    if summary.get("stopped"):  # SIGTERM / Ctrl-C stop the whole comparison, not just this model
        raise KeyboardInterrupt(f"stopped while training {name}")
    epochs = [r["epoch_s"] for r in read_metrics(run) if "epoch_s" in r]
    report = evaluate(run, base.val, root=base.root, workers=base.workers, plot=False)
    return (sum(epochs) / len(epochs)) if epochs else float("nan"), report


def _train_best(base: TrainConfig, name: str, out: Path, log, lr_sweep: bool) -> tuple[Path, float, dict, list]:
    """Train ``name`` once, or at each learning rate of the sweep keeping the best validation top-1;
    returns its run directory, seconds per epoch, report and the sweep's (lr, top-1) pairs."""
    if not lr_sweep:
        run = out / "runs" / name
        return (run, *_train_one(base, name, run, log), [])
    center = base.lr if base.lr is not None else read_recipe(model_recipe(name))["lr"]
    tried = []
    for factor in LR_SWEEP:
        lr = float(f"{center * factor:.3g}")
        run = out / "runs" / name / f"lr_{lr:g}"
        log(f"{name}: lr {lr:g}")
        epoch_s, report = _train_one(base, name, run, log, lr=lr)
        tried.append((report["top1"], -abs(factor - 1.0), lr, run, epoch_s, report))
    best = max(tried, key=lambda t: t[:2])  # ties go to the rate closest to the recipe's
    return best[3], best[4], best[5], [{"lr": t[2], "top1": t[0]} for t in tried]


def recipe_used(run: Path) -> dict:
    """The resolved recipe keys a run trained with, from its config.yaml."""
    cfg = load_saved_config(run / "config.yaml")
    return {"name": model_recipe(cfg.model), **{k: getattr(cfg, k) for k in RECIPE_KEYS}}


def _recipe_text(recipe: dict) -> str:
    short = {"lr": "lr", "weight_decay": "wd", "warmup_epochs": "warmup", "grad_clip": "clip", "dropout": "dropout"}
    return f"{recipe['name']}: " + ", ".join(f"{short[k]} {recipe[k]:g}" for k in short if recipe.get(k) is not None)


def compare(base: TrainConfig, models: Sequence[str], out: str | Path, *, lengths: Sequence[int] = (16, 64, 256, 1024),
            timeout: float = 1800.0, lr_sweep: bool = False, log: Callable[[str], None] = print) -> dict:
    """Train, evaluate and measure each of ``models`` with ``base`` and its own recipe (``lr_sweep``:
    at three learning rates, keeping the best); write compare.{md,csv,json} and plots."""
    if not base.val:
        raise ValueError("compare needs --val SPEC: models are ranked on the same held-out set")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows, scaling = [], {}
    for name in models:
        log(f"{name}: training {base.epochs} epoch(s)")
        try:
            run, epoch_s, report, sweep = _train_best(base, name, out, log, lr_sweep)
        except (FloatingPointError, RuntimeError, ValueError) as exc:  # one model failing must not lose the others
            log(f"{name}: FAILED: {exc}")
            rows.append({**{k: float("nan") for k in COLUMNS}, "model": name, "stream_mode": "", "recipe": "",
                         "error": str(exc)})
            continue
        loaded = load_run(run, device="cpu")
        frames = loaded.cfg.frames  # resolved: --frames or the task's clip length
        clip = torch.rand(1, frames, 3, base.size, base.size)
        flops = count_flops(loaded.model, clip)
        measured = run_isolated(measure_inference, str(run), base.size, [frames, *lengths],
                                device=str(loaded.device),
                                threads=base.threads or 1, timeout=timeout, path=str(run))
        at_t = measured["lengths"][frames]
        rows.append({
            "model": name, "top1": report["top1"], "params": sum(p.numel() for p in loaded.model.parameters()),
            "gflops_per_clip": flops / 1e9, "train_s_per_epoch": epoch_s, "latency_ms_per_clip": at_t["latency_ms"],
            "peak_mem_mb": at_t["peak_mem_mb"], "stream_ms_per_frame": measured["stream"]["ms_per_frame"],
            "stream_mode": measured["stream"]["mode"], "recipe": _recipe_text(recipe_used(run)),
            "recipe_values": recipe_used(run), "lr_sweep": sweep,
        })
        scaling[name] = {int(t): v for t, v in measured["lengths"].items() if t in lengths}
        rows[-1]["nonfinite_steps"] = sum(r.get("nonfinite_steps", 0) for r in read_metrics(run))
        log(f"{name}: top-1 {report['top1']:.1%}, {rows[-1]['params']:,} params, {rows[-1]['gflops_per_clip']:.3f} "
            "GFLOPs/clip")
    result = {"config": dataclasses.asdict(base), "rows": rows, "scaling": scaling, "lengths": list(lengths)}
    _write_outputs(out, result)
    return result


def _fmt(key: str, value) -> str:
    if isinstance(value, float):
        return f"{value:.1%}" if key == "top1" else f"{value:.4g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _write_outputs(out: Path, result: dict) -> None:
    from ..engine.io import atomic_write_text

    rows = result["rows"]
    atomic_write_text(out / "compare.json", json.dumps(result, indent=2))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "compare.csv", buffer.getvalue())
    cfg = result["config"]
    lines = [f"Same data ({cfg['data']}), loop and budget ({cfg['epochs']} epochs, {cfg['frames']} frames at "
             f"{cfg['size']}px, "
             f"backbone {cfg['backbone']}); only the model and its recipe (last column) differ. Latency: median of 3, "
             "batch 1, "
             f"{cfg['threads'] or 1} torch thread(s); memory: peak resident growth during one forward.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(k, r[k]) for k in COLUMNS) + " |" for r in rows]
    lines += ["", "Latency (ms) and peak memory (MB) per clip by clip length T:", "",
              "| model | " + " | ".join(f"T={t}" for t in result["lengths"]) + " |",
              "|---|" + "---|" * len(result["lengths"])]
    failed = [r for r in rows if r.get("error")]
    for name, by_t in result["scaling"].items():
        cells = [f"{by_t[t]['latency_ms']:.1f} ms / {by_t[t]['peak_mem_mb']:.0f} MB" for t in result["lengths"]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [f"\n{r['model']} failed: {r['error']}" for r in failed]
    atomic_write_text(out / "compare.md", "\n".join(lines) + "\n")
    from .._optional import available

    if not available("matplotlib"):
        return
    from ..viz import plot_bars, plot_lines

    plots = out / "plots"
    for key, title, fmt in (("top1", "Validation top-1", "{:.1%}"), ("params", "Parameters", "{:,.0f}"),
                            ("gflops_per_clip", "GFLOPs per clip", "{:.3g}"),
                            ("train_s_per_epoch", "Training s per epoch", "{:.3g}"),
                            ("latency_ms_per_clip", "Inference latency ms per clip", "{:.3g}"),
                            ("peak_mem_mb", "Peak memory MB", "{:.3g}"),
                            ("stream_ms_per_frame", "Streaming: ms per new frame", "{:.3g}")):
        plot_bars({r["model"]: float(r[key]) for r in rows if not r.get("error")}, plots / f"{key}.png", title=title,
                  ylabel=key, fmt=fmt)
    for key, title in (("latency_ms", "Latency per clip vs clip length"),
                       ("peak_mem_mb", "Peak memory vs clip length")):
        series = {name: ([t for t in result["lengths"]], [by_t[t][key] for t in result["lengths"]])
                  for name, by_t in result["scaling"].items()}
        plot_lines(series, plots / f"scaling_{key}.png", title=title, xlabel="frames T", ylabel=key, logx=True,
                   logy=True)


# --- command line -----------------------------------------------------------------------------

def add_parser(sub) -> None:
    """Register ``cnnlstm compare`` on the CLI's subparsers."""
    p = sub.add_parser("compare", help="train several models the same way and measure them side by side",
                       description="Same data, loop, budget and metrics for every model; only the model differs.")
    p.add_argument("--models", default="cnn_lstm,cnn_lstm_attention,r3d_18,temporal_transformer,mean_pool",
                   help="comma-separated registered model names")
    p.add_argument("--lengths", default="16,64,256,1024", help="clip lengths for the latency/memory scaling curves")
    p.add_argument("--lr-sweep", action="store_true",
                   help="train each model at its recipe's lr x 1/3, 1 and 3 and keep the best on --val")
    p.add_argument("--config", default=None, help="flat YAML recipe of config keys")
    add_offline_option(p)
    add_config_options(p)
    p.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    """Train and measure several models with one recipe; write compare.md/.csv/.json and plots."""
    if args.offline:
        os.environ[OFFLINE_ENV] = "1"
    overrides = config_overrides(args)
    out = overrides.pop("out", None) or "runs/compare"
    base = resolve_config(args.config, {**overrides, "out": out})
    if not base.data or not base.val:
        raise UserError("--data SPEC and --val SPEC are required: compare trains on --data and measures on --val")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for name in models:
        get_model_builder(name)  # a typo fails now, not after the first models have trained
    try:
        lengths = [int(t) for t in args.lengths.split(",")]
    except ValueError:
        raise UserError(f"--lengths expects comma-separated clip lengths such as 16,64,256; got {args.lengths!r}") \
            from None
    result = compare(base, models, out, lengths=lengths, lr_sweep=args.lr_sweep)
    print((Path(out) / "compare.md").read_text())
    return 0 if result["rows"] else 1
