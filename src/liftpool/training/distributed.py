"""Process-group set-up for ``torchrun`` (DDP) and small collective helpers.

Under ``torchrun --nproc_per_node=N`` the environment carries ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; we then join the
default process group (``nccl`` on CUDA, ``gloo`` on CPU).  Without them the run is a
single process and every helper here is a no-op.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any, NamedTuple

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "all_gather_objects", "all_reduce_sum", "barrier", "cleanup", "setup"]


class DistInfo(NamedTuple):
    """Where this process runs: ``rank`` of ``world_size``, its ``device``."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    initialized_here: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    v = os.environ.get(name)
    if v is None or v == "":
        return default
    try:
        return int(v)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {v!r}") from None


def _pick_device(device: str, local_rank: int, distributed: bool) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available (use --device cpu)")
        if device == "cuda":
            idx = local_rank if distributed else torch.cuda.current_device()
        else:
            idx = int(device.split(":", 1)[1])
            if distributed:
                raise ValueError(
                    "under torchrun use --device cuda (each process takes cuda:LOCAL_RANK), not a fixed index"
                )
        if idx >= torch.cuda.device_count():
            raise ValueError(f"cuda:{idx} requested but only {torch.cuda.device_count()} GPU(s) are visible")
        return torch.device("cuda", idx)
    if device != "cpu":
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return torch.device("cpu")


def setup(device: str = "auto", timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group when launched by torchrun (``WORLD_SIZE > 1``) and pick the device."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    distributed = world > 1
    if world < 1 or not 0 <= rank < world:
        raise ValueError(
            f"environment RANK={rank} / WORLD_SIZE={world} is inconsistent (expected 0 <= RANK < WORLD_SIZE)"
        )
    dev = _pick_device(device, local_rank, distributed)
    if not distributed:
        return DistInfo(0, 1, 0, dev, False)
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dev, False)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        backend = "gloo"
    kw: dict[str, Any] = {"backend": backend, "timeout": timedelta(seconds=timeout_s)}
    if dev.type == "cuda":
        kw["device_id"] = dev
    dist.init_process_group(**kw)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dev, True)


def cleanup(info: DistInfo) -> None:
    """Leave the process group if :func:`setup` joined it."""
    if info.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over ranks in place (no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` as a list indexed by rank (``[obj]`` in a single process)."""
    if dist.is_available() and dist.is_initialized():
        out: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj)
        return out
    return [obj]
