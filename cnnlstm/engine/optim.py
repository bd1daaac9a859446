"""Training schedule pieces: gradual-unfreezing phases, the optimizer, the LR schedule, precision."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..config import TrainConfig


@dataclass(frozen=True)
class Phase:
    name: str
    start_epoch: int  # first epoch (0-based) of the phase
    epochs: int
    trainable: str  # backbone stages that train: "none" | "last" | "all"
    lr: float

    @property
    def end_epoch(self) -> int:
        return self.start_epoch + self.epochs


def plan_phases(cfg: TrainConfig) -> list[Phase]:
    """``frozen``: backbone frozen throughout; ``full``: all trains from the start; ``gradual``
    (the seed's recipe): frozen, then the last stage, then everything, at lr, lr/10, lr/100."""
    if cfg.schedule == "frozen":
        return [Phase("frozen", 0, cfg.epochs, "none", cfg.lr)]
    if cfg.schedule == "full":
        return [Phase("full", 0, cfg.epochs, "all", cfg.lr)]
    epochs = cfg.phase_epochs or [cfg.epochs - 2 * (cfg.epochs // 3), cfg.epochs // 3, cfg.epochs // 3]
    lrs = cfg.phase_lrs or [cfg.lr, cfg.lr / 10, cfg.lr / 100]
    if len(epochs) != 3 or len(lrs) != 3 or sum(epochs) != cfg.epochs or min(epochs) < 0:
        raise ValueError(f"gradual needs 3 phase_epochs summing to epochs={cfg.epochs} and 3 phase_lrs; "
                         f"got phase_epochs={epochs}, phase_lrs={lrs}")
    phases, start = [], 0
    plan = zip(("frozen", "last_stage", "all"), epochs, ("none", "last", "all"), lrs, strict=True)
    for name, n, trainable, lr in plan:
        if n > 0:
            phases.append(Phase(name, start, n, trainable, lr))
        start += n
    return phases


def apply_phase(model: nn.Module, phase: Phase) -> list[str]:
    """Freeze/unfreeze the backbone for ``phase``; returns the names of the trainable parameters."""
    model.encoder.freeze()
    if phase.trainable == "last":
        model.encoder.unfreeze("last")
    elif phase.trainable == "all":
        model.encoder.unfreeze()
    return [n for n, p in model.named_parameters() if p.requires_grad]


NO_DECAY_NAMES = ("pos_embed", "cls_token")  # parameter names (ends) left out of weight decay


def build_optimizer(model: nn.Module, cfg: TrainConfig, lr: float) -> torch.optim.Optimizer:
    """AdamW over trainable parameters: backbone at ``lr * backbone_lr_scale`` (default 0.1 for
    pretrained weights, 1 for random init); no weight decay on biases, norm weights (1-D), position
    tables and CLS tokens (as timm's ``no_weight_decay``)."""
    scale = cfg.backbone_lr_scale if cfg.backbone_lr_scale is not None else (1.0 if cfg.weights == "none" else 0.1)
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            no_decay = p.ndim <= 1 or name.endswith(NO_DECAY_NAMES)
            groups.setdefault((name.startswith("encoder.stages."), no_decay), []).append(p)
    param_groups = [
        {"params": params, "lr": lr * (scale if backbone else 1.0),
         "weight_decay": 0.0 if no_decay else cfg.weight_decay}
        for (backbone, no_decay), params in sorted(groups.items())
    ]
    return torch.optim.AdamW(param_groups, lr=lr)


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int,
                    warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup, then cosine decay to zero over the phase."""
    total_steps, warmup_steps = max(1, total_steps), max(0, min(warmup_steps, total_steps - 1))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def cpu_has_native_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_precision(preference: str, device: torch.device) -> str:
    """``auto``: bf16 on GPUs that support it, else fp16 (with a GradScaler); on CPUs bf16 only with
    native support (AVX512-BF16 / AMX): emulated bf16 ran 7x slower than fp32 on AVX2 CPUs."""
    if preference != "auto":
        if preference == "fp16" and device.type != "cuda":
            raise ValueError("precision fp16 needs a CUDA device (fp16 on CPU is slow and unscaled); use bf16 or fp32")
        return preference
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"
