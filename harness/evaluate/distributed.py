"""Process-group helpers: the evaluator runs unchanged in one process or under ``torchrun``.

Why float64 everywhere in reductions: the audited sums must not depend on how many processes
computed them, so per-rank partial sums travel as float64 and the only difference between 1 and
N processes is the order of a handful of float64 additions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(device: torch.device) -> DistContext:
    """Join the ``torchrun`` process group when launched by it (gloo on CPU, nccl on CUDA)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size())


def sum_float64(values: list[float], ctx: DistContext, device: torch.device) -> list[float]:
    """Element-wise sum of ``values`` over ranks, in float64."""
    if not ctx.enabled:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return [float(v) for v in tensor.tolist()]


def sum_gradients(params: list[torch.nn.Parameter], ctx: DistContext) -> None:
    """All-reduce (sum) every parameter's gradient; a missing gradient counts as zero."""
    for param in params:
        if param.grad is None:
            param.grad = torch.zeros_like(param)
    if not ctx.enabled:
        return
    for param in params:
        dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)


def broadcast_text(text: str | None, ctx: DistContext) -> str:
    """Rank 0's string on every rank (used to agree on a stop reason)."""
    if not ctx.enabled:
        return text or ""
    payload = [text or ""]
    dist.broadcast_object_list(payload, src=0)
    return str(payload[0])


def any_rank(flag: bool, ctx: DistContext) -> bool:
    """True on every rank if ``flag`` is true on any rank."""
    if not ctx.enabled:
        return flag
    tensor = torch.tensor([1 if flag else 0], dtype=torch.int64)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()
