"""Per-document LoRA test-time training, reset at every document boundary (BOS).

Why this shape: the merged per-document LoRA records (#77, #1530) adapt small low-rank deltas to
the document being read and throw them away when the next document starts, so nothing learned
from one document helps (or leaks into) another. Inside the evaluator's score-first protocol the
adapter only ever runs between chunks, on tokens already scored and logged, so the learnable
state at any moment belongs to the one document that is still *open* at the scored frontier.

How the delta reaches the right positions without knowing where a window sits in the stream: a
pre-hook on the token embedding marks, per window, the positions before the window's first BOS
(``cumsum(input_ids == BOS) == 0``); the LoRA delta is added there only. Those positions belong to
the document the window started in, which for the windows that continue past the frontier is the
open document the adapter trained on. The mask reads only the current and earlier tokens, so the
adapted model stays causal (the causality probe checks it like any other model). A window that
starts inside a document which began in the not-yet-scored part of the chunk also gets the delta
on its leading segment: telling those windows apart would need the unscored tokens, which the
adapter may not read. Documents that end inside a chunk are never trained on: their adapter
would be discarded before it could score anything.

Training uses only targets of the open document that are already scored: a target ``t`` (token
``t+1`` after token ``t``) is trained on once it lies below the frontier, with context from the
document's own tokens (at most ``seq_len``), for ``epochs`` passes of Adam per chunk. Under
``torchrun`` every rank trains on the same tokens and rank 0's weights are broadcast, so all
ranks score with identical adapters.
"""

from __future__ import annotations

import functools

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from harness.errors import UsageError
from harness.evaluate.adapters.base import AdapterConfig, forward_logits
from harness.evaluate.scored import ChunkInfo, ScoredTokens
from harness.evaluate.ttt_settings import LORA_TARGET_CHOICES

BOS_ID = 1
INIT_SEED = 0
QUERY_VALUE_NAMES = ("c_q", "c_v", "q_proj", "v_proj", "wq", "wv", "query", "value")
HEAD_NAMES = ("lm_head", "head", "output")


class LoraDelta(nn.Module):
    """``B @ A`` added to one linear's output; ``B`` starts at zero so the delta starts at zero."""

    lora_a: nn.Parameter
    lora_b: nn.Parameter

    def __init__(
        self, in_features: int, out_features: int, rank: int, generator: torch.Generator, device: torch.device
    ) -> None:
        super().__init__()
        initial = torch.randn(rank, in_features, generator=generator) / in_features**0.5
        self.register_parameter("lora_a", nn.Parameter(initial.to(device, copy=True)))
        self.register_parameter("lora_b", nn.Parameter(torch.zeros(out_features, rank, device=device)))
        self._initial_a = initial.to(device, copy=True)  # not state, never trained: the reset target

    @torch.no_grad()
    def reset(self) -> None:
        self.lora_a.copy_(self._initial_a)
        self.lora_b.zero_()

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(x, self.lora_a.to(x.dtype)), self.lora_b.to(x.dtype))


def _target_linears(model: nn.Module, targets: str) -> list[tuple[str, nn.Linear]]:
    chosen = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        leaf = name.rsplit(".", 1)[-1]
        if (targets == "all" and leaf not in HEAD_NAMES) or (targets == "qv" and leaf in QUERY_VALUE_NAMES):
            chosen.append((name, module))
    return chosen


class LoraAdapter:
    """The ``lora`` adapter (see the module docstring). ``reset()`` restores the initial deltas."""

    name = "lora"

    def __init__(self, model: nn.Module, config: AdapterConfig) -> None:
        self.config = config
        self.rank = int(config.lora_rank)
        self.lr = float(config.lora_lr)
        self.bos_id = int(getattr(config, "bos_id", BOS_ID))
        targets = str(config.lora_targets)
        if targets not in LORA_TARGET_CHOICES:
            raise UsageError(f"lora_targets must be 'qv' or 'all' (got {targets!r})")
        if self.rank < 1 or not self.lr > 0:
            raise UsageError(f"lora_rank must be ≥ 1 and lora_lr > 0 (got {self.rank}, {self.lr})")
        embedding = next((m for m in model.modules() if isinstance(m, nn.Embedding)), None)
        linears = _target_linears(model, targets)
        if embedding is None or not linears:
            raise UsageError(
                "the lora adapter needs a model with a token embedding (nn.Embedding) and "
                f"{'query/value' if targets == 'qv' else ''} nn.Linear projections to adapt"
            )
        generator = torch.Generator().manual_seed(INIT_SEED)
        self.deltas: list[LoraDelta] = []
        for _name, linear in linears:
            delta = LoraDelta(linear.in_features, linear.out_features, self.rank, generator, linear.weight.device)
            linear.add_module("lora", delta)  # a child module: its weights are in the fingerprinted state
            linear.register_forward_hook(functools.partial(self._add_delta, delta))
            self.deltas.append(delta)
        embedding.register_forward_pre_hook(self._mark_open_document)
        self.params = [p for delta in self.deltas for p in delta.parameters()]
        self._mask: torch.Tensor | None = None
        self.active = False  # any delta non-zero (skips the hook's work for a fresh adapter)
        self.doc_start = -1  # BOS position of the open document (-1: the stream's first document)
        self.trained_to = 0  # targets below this one have been trained on (or skipped)
        self.seen = 0  # tokens below this one have been searched for BOS
        self.resets = 0
        self.steps = 0
        self.optimizer = self._new_optimizer()

    def _new_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.params, lr=self.lr)

    # ---------------------------------------------------------------- forward hooks

    def _mark_open_document(self, _module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        input_ids = args[0]
        self._mask = torch.cumsum(input_ids == self.bos_id, dim=-1) == 0

    def _add_delta(
        self, lora: LoraDelta, _module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor
    ) -> torch.Tensor | None:
        if not self.active:
            return None
        x = args[0]
        mask = self._mask
        if mask is None or mask.numel() != x[..., 0].numel():
            raise UsageError(
                "lora adapter: a projection ran on input that does not match the token ids seen by the embedding"
            )
        delta = lora.delta(x) * mask.reshape(x.shape[:-1]).unsqueeze(-1).to(x.dtype)
        return output + delta.to(output.dtype)

    # ---------------------------------------------------------------- adaptation

    def reset(self) -> None:
        """Back to the initial deltas and a fresh optimizer: a new document starts."""
        for delta in self.deltas:
            delta.reset()
        self.optimizer = self._new_optimizer()
        self.active = False
        self.resets += 1

    def adapt(self, model: nn.Module, scored: ScoredTokens, chunk: ChunkInfo) -> None:
        frontier = scored.frontier
        if frontier <= self.seen:
            return
        fresh = scored.read(self.seen, frontier)
        boundaries = torch.nonzero(fresh == self.bos_id).flatten()
        if boundaries.numel():
            self.doc_start = self.seen + int(boundaries[-1])
            self.trained_to = self.doc_start + 1
            self.reset()
        self.seen = frontier
        first, end = max(self.trained_to, self.doc_start + 1), frontier - 1
        if end > first:
            self._train(model, scored, first, end, chunk.seq_len)
        self.trained_to = max(self.trained_to, end)
        self._share_rank0_weights()

    def _train(self, model: nn.Module, scored: ScoredTokens, first: int, end: int, seq_len: int) -> None:
        """``epochs`` passes over targets ``[first, end)`` in pieces of at most ``seq_len`` targets."""
        device = self.params[0].device
        pieces = []
        for piece_start in range(first, end, seq_len):
            piece_end = min(piece_start + seq_len, end)
            input_start = max(self.doc_start + 1, piece_end - seq_len)
            window = scored.read(input_start, piece_end + 1).to(device)
            pieces.append((window, piece_start - input_start))
        own = {id(p) for p in self.params}
        frozen = [p for p in model.parameters() if p.requires_grad and id(p) not in own]
        for param in frozen:
            param.requires_grad_(False)
        self.active = True
        try:
            with torch.enable_grad():
                for _epoch in range(max(self.config.epochs, 1)):
                    for window, scored_from in pieces:
                        self._step(model, window, scored_from)
        finally:
            for param in frozen:
                param.requires_grad_(True)

    def _step(self, model: nn.Module, window: torch.Tensor, scored_from: int) -> None:
        inputs, targets = window[None, :-1], window[None, 1:]
        logits = forward_logits(model, inputs)[:, scored_from:]
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets[:, scored_from:].reshape(-1))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.config.grad_clip)
        self.optimizer.step()
        self.steps += 1

    def _share_rank0_weights(self) -> None:
        if self.config.dist.enabled and dist.is_initialized():
            with torch.no_grad():
                for param in self.params:
                    dist.broadcast(param.data, src=0)
