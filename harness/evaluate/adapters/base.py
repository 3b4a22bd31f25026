"""The adapter protocol: how test-time training plugs into the score-first evaluator.

Why so small: the evaluator owns ordering (score, log, then adapt) and data access (the
``ScoredTokens`` view); an adapter only decides how to learn from tokens already scored. A
submission can bring its own through ``golf_entry.make_adapter(model, config)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from harness.evaluate.distributed import DistContext
from harness.evaluate.scored import ChunkInfo, ScoredTokens, UnscoredAccess

__all__ = ["Adapter", "AdapterConfig", "ChunkInfo", "ScoredTokens", "UnscoredAccess"]


@dataclass(frozen=True)
class AdapterConfig:
    """Hyperparameters an adapter may use; defaults are the challenge's accepted SGD recipe (#549)."""

    lr: float = 0.002
    momentum: float = 0.9
    epochs: int = 3
    grad_clip: float = 1.0
    freeze_blocks: int = 0
    batch_seqs: int = 32
    seq_len: int = 1024
    device: str = "cpu"
    dist: DistContext = field(default_factory=DistContext)

    def to_json(self) -> dict:
        return {
            "lr": self.lr,
            "momentum": self.momentum,
            "epochs": self.epochs,
            "grad_clip": self.grad_clip,
            "freeze_blocks": self.freeze_blocks,
            "batch_seqs": self.batch_seqs,
            "seq_len": self.seq_len,
        }


@runtime_checkable
class Adapter(Protocol):
    """Learns from scored tokens between chunks. ``reset()`` is optional (per-document adapters)."""

    name: str

    def adapt(self, model: nn.Module, scored: ScoredTokens, chunk: ChunkInfo) -> None: ...


def forward_logits(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """Full ``[B, T, V]`` logits: ``forward_logits`` when the model has it, else ``model(x)``."""
    method = getattr(model, "forward_logits", None)
    return method(input_ids) if callable(method) else model(input_ids)
