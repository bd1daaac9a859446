"""The demo: on the synthetic temporal-order dataset, a CNN-LSTM learns what an order-blind model
cannot. Synthesize real video files, decode them, train ``cnn_lstm`` and ``mean_pool`` the same
way, evaluate both, predict on held-out videos, write a summary.

Every class of the dataset holds exactly the same frames in a different order, so ``mean_pool``
(the mean of frame features) is at chance (1/6) while the CNN-LSTM approaches 100%.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from . import create_model
from .data.datasets import VideoDataset, make_loader
from .data.sampling import SamplerConfig
from .data.synth import SynthConfig, synthesize
from .data.transforms import DataConfig, eval_transform


@dataclass(frozen=True)
class DemoConfig:
    frames: int = 12
    size: int = 32
    epochs: int = 40
    batch_size: int = 16
    lr: float = 3e-3
    hidden_size: int = 64
    seed: int = 0
    models: tuple[str, ...] = ("cnn_lstm", "mean_pool")


def _load_split(csv: Path, cfg: DemoConfig, classes=None):
    """Decode every clip once into memory: (N, T, C, S, S), labels (N,), the dataset."""
    data_cfg = DataConfig(input_size=cfg.size, resize=cfg.size)
    dataset = VideoDataset(csv, sampler=SamplerConfig(num_frames=cfg.frames), transform=eval_transform(data_cfg), classes=classes)
    clips, labels, skipped = [], [], []
    for batch in make_loader(dataset, batch_size=32):
        skipped += batch.skipped
        if len(batch):
            clips.append(batch.clips)
            labels.append(batch.labels)
    return torch.cat(clips), torch.cat(labels), dataset, skipped


def _accuracy(model, clips, labels) -> float:
    model.eval()
    with torch.inference_mode():
        return (model(clips).logits.argmax(1) == labels).float().mean().item()


def _train(name: str, train, test, num_classes: int, cfg: DemoConfig, log) -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(cfg.seed)
    kwargs = {} if name == "mean_pool" else {"hidden_size": cfg.hidden_size, "dropout": 0.1}
    model = create_model(name, num_classes=num_classes, backbone="test_tiny", **kwargs)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    (x, y), generator = train, torch.Generator().manual_seed(cfg.seed)
    history, start = [], time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order, total = torch.randperm(len(x), generator=generator), 0.0
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            loss = torch.nn.functional.cross_entropy(model(x[idx]).logits, y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        history.append({"epoch": epoch, "loss": total / len(x)})
        if epoch % 10 == 0 or epoch == cfg.epochs:
            history[-1]["test_top1"] = _accuracy(model, *test)
            log(f"  {name:<10} epoch {epoch:3d}  loss {history[-1]['loss']:.3f}  test top-1 {history[-1]['test_top1']:.1%}")
    return model, {"model": name, "test_top1": _accuracy(model, *test), "train_top1": _accuracy(model, x, y),
                   "params": sum(p.numel() for p in model.parameters()), "train_s": time.perf_counter() - start,
                   "history": history}


def run_demo(out: str | Path = "runs/demo", cfg: DemoConfig = DemoConfig(), log=print) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    log(f"1/4 synthesizing the temporal-order dataset into {out / 'data'}")
    summary = synthesize(out / "data", SynthConfig(seed=cfg.seed))
    log(f"    {summary['train']} train / {summary['test']} test videos, classes: {', '.join(summary['classes'])}")
    log(f"2/4 decoding {cfg.frames} frames per video at {cfg.size}px")
    x_train, y_train, train_ds, skipped = _load_split(Path(summary["train_csv"]), cfg)
    x_test, y_test, test_ds, skipped_test = _load_split(Path(summary["test_csv"]), cfg, classes=train_ds.classes)
    log("3/4 training the same way: " + ", ".join(cfg.models))
    results, models = [], {}
    for name in cfg.models:
        models[name], row = _train(name, (x_train, y_train), (x_test, y_test), len(train_ds.classes), cfg, log)
        results.append(row)
    log("4/4 predicting held-out videos")
    predictions = []
    for i in range(min(3, len(x_test))):
        path = test_ds.videos.items[i].path
        row = {"video": str(Path(path).relative_to(out)), "truth": test_ds.classes[int(y_test[i])]}
        for name, model in models.items():
            with torch.inference_mode():
                probs = model(x_test[i : i + 1]).logits.softmax(-1)[0]
            row[name] = f"{test_ds.classes[int(probs.argmax())]} ({probs.max():.0%})"
        predictions.append(row)
    report = {"config": asdict(cfg), "results": results, "predictions": predictions,
              "skipped": skipped + skipped_test, "classes": train_ds.classes}
    (out / "demo.json").write_text(json.dumps(report, indent=2))
    log("\nmodel       test top-1  train top-1  params   train time")
    for r in results:
        log(f"{r['model']:<11} {r['test_top1']:>9.1%}  {r['train_top1']:>10.1%}  {r['params']:>7,}  {r['train_s']:6.1f} s")
    log(f"chance is {1 / len(train_ds.classes):.1%}: every class has the same frames, only their order differs.")
    for p in predictions:
        log("  " + "  ".join(f"{k}: {v}" for k, v in p.items()))
    log(f"wrote {out / 'demo.json'}")
    return report
