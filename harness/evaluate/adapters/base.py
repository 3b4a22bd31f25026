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
from harness.evaluate.ttt_settings import LORA_DEFAULT_LR, LORA_DEFAULT_RANK, LORA_DEFAULT_TARGETS

__all__ = ["Adapter", "AdapterConfig", "ChunkInfo", "ScoredTokens", "UnscoredAccess"]


_SGD_SETTINGS = ("lr", "momentum", "epochs", "grad_clip", "freeze_blocks", "batch_seqs", "seq_len")
_LORA_SETTINGS = ("lora_rank", "lora_lr", "lora_targets", "epochs", "grad_clip", "seq_len")
_ALL_SETTINGS = _SGD_SETTINGS + ("lora_rank", "lora_lr", "lora_targets")


@dataclass(frozen=True)
class AdapterConfig:
    """Hyperparameters an adapter may use.

    ``lr``/``momentum``/``freeze_blocks``/``batch_seqs`` are the SGD recipe the challenge accepted
    (#549); ``lora_*`` belong to the per-document LoRA adapter; ``epochs``, ``grad_clip`` and
    ``seq_len`` are shared. One config carries all of them so a submission's own adapter
    (``golf_entry.make_adapter``) sees every setting the command line was given.
    """

    lr: float = 0.002
    momentum: float = 0.9
    epochs: int = 3
    grad_clip: float = 1.0
    freeze_blocks: int = 0
    batch_seqs: int = 32
    seq_len: int = 1024
    lora_rank: int = LORA_DEFAULT_RANK
    lora_lr: float = LORA_DEFAULT_LR
    lora_targets: str = LORA_DEFAULT_TARGETS
    device: str = "cpu"
    dist: DistContext = field(default_factory=DistContext)

    def to_json(self, adapter: str | None = None) -> dict:
        """The settings ``adapter`` actually uses (``sgd``, ``lora``); all of them for any other.

        Why per adapter: a report that shows the SGD learning rate for a LoRA run misleads the
        reader about what was trained.
        """
        names = {"sgd": _SGD_SETTINGS, "lora": _LORA_SETTINGS}.get(adapter or "", _ALL_SETTINGS)
        return {name: getattr(self, name) for name in names}


@runtime_checkable
class Adapter(Protocol):
    """Learns from scored tokens between chunks. ``reset()`` is optional (per-document adapters)."""

    name: str

    def adapt(self, model: nn.Module, scored: ScoredTokens, chunk: ChunkInfo) -> None: ...


def forward_logits(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """Full ``[B, T, V]`` logits: ``forward_logits`` when the model has it, else ``model(x)``."""
    method = getattr(model, "forward_logits", None)
    return method(input_ids) if callable(method) else model(input_ids)
