"""Muon for the block matrices, Adam for everything else — the baseline's optimizer split.

Why Muon: orthogonalised momentum updates train the square-ish block matrices much faster
per step than Adam at this scale, which is what the 10-minute budget rewards. Embeddings and
per-channel control vectors are not matrices in that sense and keep Adam.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import overload

import torch
import torch.distributed as dist
from torch import Tensor

from reference_model.model import CONTROL_TENSOR_NAME_PATTERNS, GPT

NEWTON_SCHULZ_COEFFICIENTS: tuple[float, float, float] = (3.4445, -4.7750, 2.0315)


def zeropower_via_newtonschulz5(grad: Tensor, steps: int = 5, eps: float = 1e-7) -> Tensor:
    """Approximately orthogonalise ``grad`` (push its singular values towards 1) in bf16.

    The quintic coefficients trade exactness for speed: singular values land roughly in
    [0.7, 1.2], which is all Muon needs.
    """
    a, b, c = NEWTON_SCHULZ_COEFFICIENTS
    x = grad.bfloat16()
    x = x / (x.norm() + eps)
    transposed = grad.size(0) > grad.size(1)
    if transposed:
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        poly = b * gram + c * gram @ gram
        x = a * x + poly @ x
    return x.T if transposed else x


class Muon(torch.optim.Optimizer):
    """Nesterov momentum followed by Newton–Schulz orthogonalisation, scaled by √max(1, rows/cols).

    Under DDP, parameter i is processed by rank ``i % world_size`` only and the flat update
    vector is all-reduced (a sum in which every entry is non-zero on exactly one rank), so every
    rank applies bit-identical updates and the work of orthogonalisation is shared.
    """

    def __init__(
        self, params: Sequence[Tensor], lr: float, momentum: float, backend_steps: int = 5, nesterov: bool = True
    ):
        super().__init__(params, dict(lr=lr, momentum=momentum, backend_steps=backend_steps, nesterov=nesterov))

    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], float]) -> float: ...

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One update; ``closure`` (torch's optimizer protocol) re-evaluates the loss first."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        distributed = dist.is_available() and dist.is_initialized()
        world_size = dist.get_world_size() if distributed else 1
        rank = dist.get_rank() if distributed else 0
        for group in self.param_groups:
            params: list[Tensor] = group["params"]
            if not params:
                continue
            total = sum(int(p.numel()) for p in params)
            # fp32 rather than the baseline's bf16 buffer: gloo cannot all-reduce bf16 on every
            # build, and widening a bf16 value to fp32 is exact, so the update is unchanged.
            updates = torch.zeros(total, device=params[0].device, dtype=torch.float32)
            offset = 0
            for index, param in enumerate(params):
                if index % world_size == rank and param.grad is not None:
                    grad = param.grad
                    state = self.state[param]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = torch.zeros_like(grad)
                    buffer: Tensor = state["momentum_buffer"]
                    buffer.mul_(group["momentum"]).add_(grad)
                    if group["nesterov"]:
                        grad = grad.add(buffer, alpha=group["momentum"])
                    update = zeropower_via_newtonschulz5(grad, steps=group["backend_steps"])
                    update = update * max(1.0, update.size(0) / update.size(1)) ** 0.5
                    updates[offset : offset + param.numel()] = update.reshape(-1).float()
                offset += param.numel()
            if distributed:
                dist.all_reduce(updates, op=dist.ReduceOp.SUM)
            offset = 0
            for param in params:
                update = updates[offset : offset + param.numel()].view_as(param).to(dtype=param.dtype)
                param.add_(update, alpha=-group["lr"])
                offset += param.numel()
        return loss


@dataclass(frozen=True)
class OptimizerSettings:
    """Learning rates and constants of the optimizer split (baseline defaults)."""

    tied_embed_lr: float = 0.05
    embed_lr: float = 0.6
    head_lr: float = 0.008
    matrix_lr: float = 0.04
    scalar_lr: float = 0.04
    beta1: float = 0.9
    beta2: float = 0.95
    adam_eps: float = 1e-8
    muon_momentum: float = 0.95
    muon_backend_steps: int = 5
    muon_momentum_warmup_start: float = 0.85
    muon_momentum_warmup_steps: int = 500


def is_control_tensor(name: str) -> bool:
    return any(pattern in name for pattern in CONTROL_TENSOR_NAME_PATTERNS)


def build_optimizers(
    model: GPT, settings: OptimizerSettings, fused: bool = False
) -> tuple[list[torch.optim.Optimizer], Muon]:
    """Split parameters: block matrices → Muon; embedding, head, vectors, control tensors → Adam.

    Every optimizer's groups carry ``base_lr`` so the schedule can rescale ``lr`` each step.
    Returns all optimizers (in step order) and the Muon instance (for momentum warm-up).
    """
    block_params = list(model.blocks.named_parameters())
    matrix_params = [p for name, p in block_params if p.ndim == 2 and not is_control_tensor(name)]
    scalar_params = [p for name, p in block_params if p.ndim < 2 or is_control_tensor(name)]
    if model.skip_weights.numel() > 0:
        scalar_params.append(model.skip_weights)
    betas = (settings.beta1, settings.beta2)
    token_lr = settings.tied_embed_lr if model.config.tie_embeddings else settings.embed_lr

    def adam(params: Sequence[Tensor], lr: float) -> torch.optim.Adam:
        return torch.optim.Adam(
            [{"params": params, "lr": lr, "base_lr": lr}], betas=betas, eps=settings.adam_eps, fused=fused
        )

    muon = Muon(
        matrix_params, lr=settings.matrix_lr, momentum=settings.muon_momentum, backend_steps=settings.muon_backend_steps
    )
    for group in muon.param_groups:
        group["base_lr"] = settings.matrix_lr
    optimizers: list[torch.optim.Optimizer] = [adam([model.tok_emb.weight], token_lr)]
    if model.lm_head is not None:
        optimizers.append(adam([model.lm_head.weight], settings.head_lr))
    optimizers += [muon, adam(scalar_params, settings.scalar_lr)]
    return optimizers, muon


def muon_momentum_at(step: int, settings: OptimizerSettings) -> float:
    """Linear warm-up of Muon's momentum from the start value to the final one."""
    if settings.muon_momentum_warmup_steps <= 0:
        return settings.muon_momentum
    frac = min(step / settings.muon_momentum_warmup_steps, 1.0)
    return (1.0 - frac) * settings.muon_momentum_warmup_start + frac * settings.muon_momentum


def set_schedule(
    optimizers: list[torch.optim.Optimizer], muon: Muon, step: int, lr_scale: float, settings: OptimizerSettings
) -> None:
    """Apply this step's learning-rate multiplier and Muon momentum to every group."""
    momentum = muon_momentum_at(step, settings)
    for group in muon.param_groups:
        group["momentum"] = momentum
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * lr_scale
