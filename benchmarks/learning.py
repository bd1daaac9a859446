"""Do the shipped training defaults learn on data they were not tuned on? Train + evaluate variants.

Each row trains ``cnn_lstm`` (or ``--model``) on one dataset family of ``learning_data.py`` with
the shipped defaults plus one variant's overrides, evaluates the test split and appends a JSON line
to ``benchmarks/results/learning.jsonl``; ``learning.md`` is rendered from every line of it.

    python benchmarks/learning_data.py /tmp/ld                      # the datasets (minutes)
    python benchmarks/learning.py --data /tmp/ld --families pairs8 --variants shipped,fp32,plain
    python benchmarks/learning.py --data /tmp/ld --families seg6 --set backbone=test_tiny --set size=32
    python benchmarks/learning.py --render                          # learning.md from learning.jsonl
    # a machine with many cores or a GPU: rows side by side, each in its own process
    python benchmarks/learning.py --data /tmp/ld --model cnn_lstm,r3d_18 --seeds 0,1 --parallel 5 \
        --set workers=2 --deadline 450 --tag gpu

A row at the settings of the issue (resnet18 from scratch, 64 px, 16 frames, 15 epochs, batch 8)
takes 10-30 minutes on 2 CPU cores. Seed variance on 48 test videos is large (+-10-15 points):
compare variants over seeds (``--seeds 0,1``), not single rows.
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import shutil
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
BASE = dict(model="cnn_lstm", backbone="resnet18", size="64", frames="16", epochs="15", threads="1", workers="1")
VARIANTS = {  # overrides on top of the shipped defaults (each a TrainConfig key, i.e. a train flag)
    "shipped": {},
    "fp32": {"precision": "fp32"},
    "no_weight_decay": {"weight_decay": "0"},
    "lr_x3": {"lr": "3e-3"},
    "grid_pool": {"pool": "grid"},
    "dropout_0.5": {"dropout": "0.5"},
    "small_crops": {"min_crop_scale": "0.5"},  # crops down to half the side: about the old 25%-area crop
    "batch4": {"batch_size": "4"},  # twice the optimizer steps per epoch
    "layers1": {"num_layers": "1"},
    "batch4_layers1": {"batch_size": "4", "num_layers": "1"},
    "plain": {"min_crop_scale": "1", "temporal_jitter": "false", "weight_decay": "0", "warmup_epochs": "0",
              "grad_clip": "0", "precision": "fp32"},  # the seed's loop, but with the cosine schedule
}
METRICS = ("top1", "f1@50", "map", "bleu4", "frame_accuracy", "edit", "cider")  # the first one a row has is its score


def count_videos(spec: Path) -> int:
    """Distinct videos (first column) of a CSV: one row per video for labels, one per segment for seg6."""
    with spec.open(newline="") as f:
        return len({row[0] for row in list(csv.reader(f))[1:] if row})


def pair_scores(report: dict) -> dict:
    """For forward/reversed pair classes (``<path>_fwd`` / ``<path>_rev``): how often the pair (path) is right,
    and how often the direction is right once the pair is. Empty for other class sets."""
    classes, cm = report.get("classes") or [], report.get("confusion_matrix")
    pairs = [c.rsplit("_", 1)[0] for c in classes]
    if cm is None or not classes or not all(c.rsplit("_", 1)[-1] in ("fwd", "rev") for c in classes):
        return {}
    total = sum(map(sum, cm))
    same_pair = sum(cm[i][j] for i in range(len(classes)) for j in range(len(classes)) if pairs[i] == pairs[j])
    right = sum(cm[i][i] for i in range(len(classes)))
    return {"pair_top1": round(same_pair / max(total, 1), 4),
            "direction_given_pair": round(right / max(same_pair, 1), 4)}


def run(root: Path, family: str, variant: str, seed: int, out: Path, extra: dict, tag: str = "") -> dict:
    from cnnlstm.config import resolve_config
    from cnnlstm.inference import evaluate
    from cnnlstm.train import fit

    name = "-".join(x for x in (family, variant, tag, *(f"{k}{v}" for k, v in extra.items())) if x)
    run_dir = out / f"{name}-s{seed}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    data = root / family
    task = "segment" if family.startswith("seg") else "classify"
    overrides = {**BASE, **({"model": "seq2seq_cnn_lstm", "frames": "48"} if task == "segment" else {}),
                 **VARIANTS[variant], **extra, "task": task, "seed": str(seed)}
    val = data / "val.csv" if (data / "val.csv").exists() else data / "test.csv"  # the epoch is picked on val
    cfg = resolve_config(None, {**overrides, "data": str(data / "train.csv"), "val": str(val),
                                "out": str(run_dir), "progress": "false", "log_every": "1000000",
                                "checkpoint_every": "0"})
    tick = time.perf_counter()
    summary = fit(cfg, log=lambda line: None)
    seconds = time.perf_counter() - tick
    report = evaluate(run_dir, str(data / "test.csv"), workers=1, plot=False)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    epochs = [m for m in metrics if "train_loss" in m and "epoch_s" in m]
    return {"family": family, "tag": f"{overrides['model']}-{variant}{'-' + tag if tag else ''}-s{seed}",
            "settings": f"{variant}: {VARIANTS[variant] or 'shipped'}" + (f" + {extra}" if extra else "")
            + (f" + {tag}" if tag else ""),
            "overrides": overrides, "val_split": val.name,
            "test_videos": count_videos(data / "test.csv"), "train_s": round(seconds, 1),
            **{k: report[k] for k in METRICS if k in report}, **pair_scores(report),
            **{k: report[k] for k in ("smooth", "min_segment") if k in report},  # how labels were cleaned
            "best_epoch": summary["best_epoch"], "train_loss": [round(m["train_loss"], 3) for m in epochs],
            "val": [round(m.get(summary["best_score_name"], float("nan")), 3) for m in epochs],
            "machine": f"{platform.processor() or platform.machine()}, {platform.system()}"}


def render(jsonl: Path) -> str:
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    lines = ["# Training defaults on data they were not tuned on", "",
             f"Rendered by `python benchmarks/learning.py --render` from `{jsonl.name}` ({len(rows)} runs). "
             "Datasets: `benchmarks/learning_data.py` (pairs8: 8 classes in forward/reversed pairs, 144 train / 48 "
             "test videos, textured backgrounds, a distractor, four codecs; pairs8s: the same with one shape per "
             "path: the pair is cued by appearance, only the direction is left; pairs8e: pairs8s with a distractor "
             "shaped like no path (the pair told by appearance alone); pairs8i: pairs8 with every video drawn apart "
             "(a reversed class is not the reverse of its forward class's videos: 144 distinct training videos, not "
             "72); perm6: the demo's synthetic set; "
             "rhythm5: grow, shrink, orbit clockwise or not, blink, under a shaking camera with two distractors "
             "and uneven light, 100 train / 20 val / 60 test videos of 40-120 frames at 72x96 (rows that say so: "
             "40 val / 120 test); shapes12: 3 shapes x "
             "4 directions, 10 training videos a class, 120 train / 48 val / 144 test videos of 16-32 frames at "
             "48x48). pairs8(s/e/i), rhythm5 and shapes12 rows: resnet18 from scratch, 64 px, 16 frames, 15 epochs, "
             "batch 8, 2 shared CPU cores "
             "(rows tagged 'gpu': an NVIDIA H200, torch 2.11, bf16 autocast, the same recipe and batches); "
             "perm6 rows: test_tiny, 32 px, 12 frames. seg6 rows: per-frame labels (six motions with still gaps, 120 "
             "train / 40 test untrimmed videos; seg6fast: the same with 2.5x faster motions, a slightly larger object "
             "and 40-56 frames), the causal `seq2seq_cnn_lstm`, 48 frames, resnet18 at 64 px unless "
             "the settings say otherwise; their F1@50 is scored before the majority filter (`--smooth`) unless the "
             "settings say so or the row names its window; rows with 'val.csv' pick their epoch on 40 val videos of "
             "their own (`learning_data.py --val-videos 40`; the others on test). Score: the test split's top-1 "
             "(per-frame labels: F1@50; captions: BLEU-4); "
             "'best epoch' is the epoch of the best validation score (how soon it learns). Rows 'stopped after N "
             "epochs' were cut short once their outcome was plain; their score is the best validation score so far. "
             "Validation is the test split (48 videos for pairs8: optimistic, and one video is 2.1 points) unless the "
             "dataset says 'val.csv': then the epoch is picked on a separate val split (pairs8: 48 videos) and the "
             "score is on a larger test split (`learning_data.py --test-per-class 24 --val-per-class 6`). For the "
             "forward/reversed pairs, 'pair' is the share of test videos whose predicted class has the right path "
             "(either direction), 'direction' the share of those whose direction is right too.", "",
             "| dataset | run | settings | test score | best epoch | train s |", "|---|---|---|---|---|---|"]
    for r in rows:
        score = next((f"{k} {r[k]:.3f}" for k in METRICS if k in r), "-")
        if "pair_top1" in r:
            score += f" (pair {r['pair_top1']:.3f}, direction {r['direction_given_pair']:.3f})"
        if "smooth" in r:
            score += (f" (edit {r['edit']:.3f}, frame accuracy {r['frame_accuracy']:.3f}; majority filter {r['smooth']}"
                      f"{', shortest run ' + str(r['min_segment']) if 'min_segment' in r else ''})")
        family = r["family"] + {"val.csv": f" (val.csv; {r.get('test_videos')} test)", "none": " (no val)"}.get(
            r.get("val_split"), "")
        lines.append(f"| {family} | {r['tag']} | {r['settings']} | {score} | {r.get('best_epoch', '-')} | "
                     f"{r.get('train_s', '-')} |")
    return "\n".join(lines) + "\n"


def run_parallel(args: argparse.Namespace, jobs: list[tuple]) -> None:
    """Each row in its own process of this script, ``args.parallel`` at a time, each pinned to one thread
    (``--set threads=1`` is in BASE; the decoding workers are ``--set workers=N``)."""
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    start = time.monotonic()
    base = [sys.executable, str(Path(__file__).resolve()), "--data", str(args.data), "--out", str(args.out),
            "--tag", args.tag, *(["--epochs", args.epochs] if args.epochs else []),
            *(x for kv in args.set for x in ("--set", kv))]

    def one(job: tuple) -> str:
        family, variant, seed, model = job
        name = f"{family} {variant} s{seed} {model or ''}".strip()
        if args.deadline is not None and time.monotonic() - start > args.deadline:
            return f"{name}: not started (deadline {args.deadline:g} s)"
        cmd = [*base, "--families", family, "--variants", variant, "--seeds", str(seed),
               *(["--model", model] if model else [])]
        done = subprocess.run(cmd, capture_output=True, text=True)
        rows = [line for line in done.stdout.splitlines() if line.startswith("{")]
        return f"{name}: {rows[-1] if done.returncode == 0 and rows else 'FAILED ' + done.stderr[-2000:]}"

    with ThreadPoolExecutor(args.parallel) as pool:
        for line in pool.map(one, jobs):
            print(line, flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, help="the folder learning_data.py wrote")
    p.add_argument("--families", default="pairs8", help="comma-separated families under --data")
    p.add_argument("--variants", default="shipped", help=f"comma-separated, of: {', '.join(VARIANTS)}")
    p.add_argument("--seeds", default="0")
    p.add_argument("--epochs", default=None, help="override the 15 epochs (quick checks)")
    p.add_argument("--model", default=None,
                   help="instead of cnn_lstm (segment families: seq2seq_cnn_lstm); comma-separated: one row each")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="one more override for every row (a TrainConfig key), e.g. --set batch_size=4")
    p.add_argument("--tag", default="", help="a name for what differs beyond the variant (code, environment)")
    p.add_argument("--out", type=Path, default=Path("runs/learning"))
    p.add_argument("--render", action="store_true", help="only rewrite learning.md from learning.jsonl")
    p.add_argument("--parallel", type=int, default=1,
                   help="rows at a time, each in its own process (many cores or a GPU; give each --set workers=N)")
    p.add_argument("--deadline", type=float, default=None,
                   help="seconds after which no new row starts (a time-boxed machine); running rows finish")
    args = p.parse_args()
    jsonl = RESULTS / "learning.jsonl"
    if not args.render:
        if args.data is None:
            p.error("--data DIR is required (python benchmarks/learning_data.py DIR writes it)")
        if bad := [kv for kv in args.set if "=" not in kv]:
            p.error(f"--set takes KEY=VALUE (a train option without the dashes, e.g. batch_size=4); got {bad}")
        sets = dict(kv.split("=", 1) for kv in args.set)
        # seed-major order: with a deadline, every model and variant gets its first seed before any its second
        jobs = [(family, variant, int(seed), model) for seed in args.seeds.split(",")
                for family in args.families.split(",") for variant in args.variants.split(",")
                for model in (args.model.split(",") if args.model else [None])]
        if args.parallel > 1:
            run_parallel(args, jobs)
        else:
            start = time.monotonic()
            for family, variant, seed, model in jobs:
                if args.deadline is not None and time.monotonic() - start > args.deadline:
                    print(f"deadline: {args.deadline:g} s passed, rows not started: {family} {variant} s{seed} {model}")
                    continue
                extra = {**({"epochs": args.epochs} if args.epochs else {}), **({"model": model} if model else {}),
                         **sets}
                row = run(args.data, family, variant, seed, args.out, extra, args.tag)
                print(json.dumps({k: v for k, v in row.items() if k not in ("train_loss", "val")}))
                with jsonl.open("a") as f:  # one write per row: rows of parallel processes do not interleave
                    f.write(json.dumps(row) + "\n")
    (RESULTS / "learning.md").write_text(render(jsonl))
    print(f"wrote {RESULTS / 'learning.md'}")


if __name__ == "__main__":
    main()
