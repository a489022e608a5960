"""torch.distributed helpers: one code path for a single process and for ``torchrun``.

``torchrun`` sets RANK / WORLD_SIZE / LOCAL_RANK; ``init_distributed`` then joins the process
group (gloo on CPU, nccl on GPU). Without those variables everything runs in one process.
"""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return rank() == 0


def init_distributed(device: str) -> bool:
    """Join the process group when launched by torchrun; returns True when distributed."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) <= 1:
        return False
    if not is_distributed():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend=backend)
    return True


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum(value: torch.Tensor) -> torch.Tensor:
    """Sum of ``value`` over processes (``value`` itself when not distributed)."""
    if is_distributed():
        value = value.clone()
        dist.all_reduce(value)
    return value


def gather_to_main(obj: Any) -> list[Any] | None:
    """Every process's ``obj`` on rank 0 (in rank order), None elsewhere."""
    if not is_distributed():
        return [obj]
    gathered = [None] * world_size() if is_main_process() else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every process."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
