"""Multi-process training under ``torchrun``: PyTorch's own DistributedDataParallel, nothing home-made.

``torchrun --nproc_per_node N -m cnnlstm.cli train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK; the
process group uses NCCL on GPUs and gloo on CPUs. Rank 0 writes logs and checkpoints.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def pick_device(preference: str = "auto", local_rank: int = 0) -> torch.device:
    if preference == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(preference)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device {preference!r} is not a device; expected auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {preference!r} was asked for but CUDA is not available on this machine; use "
                         "--device cpu (or auto)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {preference!r} was asked for but MPS is not available; use --device cpu (or auto)")
    return device


def _process_gpu(device: torch.device, local_rank: int, world: int) -> torch.device:
    """This process's GPU under torchrun: ``cuda`` means ``cuda:LOCAL_RANK`` (one GPU per process); a
    process without a GPU of its own gets an error that says how to start the right number."""
    if device.index is None:
        device = torch.device("cuda", local_rank)
    count = torch.cuda.device_count()
    if device.index >= count:
        raise ValueError(
            f"torchrun started this process as LOCAL_RANK {local_rank} of {world} on device {device}, but this "
            f"machine has {count} GPU(s) (cuda:0..cuda:{count - 1}). Start one process per GPU "
            f"(torchrun --nproc_per_node {count}), or train the processes on the CPU with --device cpu")
    return device


def setup(preference: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(device=pick_device(preference))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(preference, local_rank)
    if device.type == "cuda":
        device = _process_gpu(device, local_rank, world)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world, local_rank, device)


def sync_batchnorm(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """``--sync-bn``: every BatchNorm becomes a SyncBatchNorm, so training normalises with the
    statistics of the global batch instead of each process's slice (torchvision's reference
    ``--sync-bn``). One process: nothing to do. PyTorch's SyncBatchNorm runs on GPUs only, so CPU
    processes (gloo) get a ValueError that says what to do instead."""
    if not info.enabled:
        return model
    if info.device.type == "cpu":
        raise ValueError(
            f"--sync-bn: PyTorch's SyncBatchNorm runs only on GPUs, and these {info.world_size} processes run on the "
            "CPU (gloo). Without it, each process's BatchNorm layers use the statistics of its own slice of the "
            "batch. Drop --sync-bn, or train in one process, or freeze the backbone (--schedule frozen: BatchNorm "
            "in eval mode) for results that do not depend on the number of processes")
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def fetch_weights_first(cfg, info: DistInfo) -> None:
    """Under torchrun, rank 0 fetches the pretrained weights into the torch cache while the other
    ranks wait, so N processes never download one file at once (each then finds it cached)."""
    if not info.enabled or cfg.weights not in ("imagenet", "kinetics"):
        return
    if info.is_main:
        from ..models.weights import cached_weights

        arch = cfg.model if cfg.weights == "kinetics" else cfg.backbone
        try:
            cached_weights(arch, cfg.weights)
        except ValueError:
            pass  # not a torchvision architecture (test_tiny): building the model says why
    barrier(info)


def gather_objects(info: DistInfo, obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (just ``[obj]`` in one process)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def shard(n: int, info: DistInfo) -> list[int] | None:
    """The indices of ``n`` items this rank handles (every world_size-th); None in one process (all)."""
    if not info.enabled:
        return None
    return list(range(info.rank, n, info.world_size))


def cleanup(info: DistInfo) -> None:
    """Leave the process group. A process that exits without this can abort in interpreter
    finalization, gloo's threads still holding work (pytorch/pytorch#179291): call it on every way out."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
