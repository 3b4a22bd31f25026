"""Score-first SGD test-time training: the recipe the challenge accepted (#461 framework, #549).

After chunk c has been scored and logged, the model trains on chunk c's tokens in ``seq_len``
windows for ``epochs`` epochs with SGD (momentum) at a learning rate that decays along a cosine
across chunks, clipping the global gradient norm. Under ``torchrun`` every global batch of
sequences is split across ranks and the gradients are summed, so N processes take the same step
as one.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from harness.evaluate.adapters.base import AdapterConfig, forward_logits
from harness.evaluate.distributed import DistContext, sum_gradients
from harness.evaluate.scored import ChunkInfo, ScoredTokens
from harness.evaluate.windows import split_for_rank

_BLOCK_NAME = re.compile(r"(?:^|\.)blocks\.(\d+)\.")


def trainable_parameters(model: nn.Module, freeze_blocks: int) -> list[nn.Parameter]:
    """Every parameter except those of the first ``freeze_blocks`` transformer blocks."""
    chosen = []
    for name, param in model.named_parameters():
        match = _BLOCK_NAME.search(name)
        if match and int(match.group(1)) < freeze_blocks:
            continue
        chosen.append(param)
    return chosen


def cosine_lr(base_lr: float, chunk_index: int, num_chunks: int) -> float:
    """The learning rate for training on chunk ``chunk_index`` (decays to 0 at the last chunk)."""
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * chunk_index / max(num_chunks - 1, 1)))


class SgdAdapter:
    name = "sgd"

    def __init__(self, model: nn.Module, config: AdapterConfig) -> None:
        self.config = config
        self.params = trainable_parameters(model, config.freeze_blocks)
        self.optimizer = torch.optim.SGD(self.params, lr=config.lr, momentum=config.momentum)
        self.steps = 0

    def adapt(self, model: nn.Module, scored: ScoredTokens, chunk: ChunkInfo) -> None:
        seq_len = chunk.seq_len
        sequences = (chunk.target_end - chunk.target_start) // seq_len
        if sequences == 0 or not self.params:
            return
        tokens = scored.read(chunk.token_start, chunk.token_start + sequences * seq_len + 1)
        device = torch.device(self.config.device)
        tokens = tokens.to(device)
        lr = cosine_lr(self.config.lr, chunk.index, chunk.num_chunks)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        dist_ctx = self.config.dist
        model.train()
        try:
            for _epoch in range(self.config.epochs):
                for batch_start in range(0, sequences, self.config.batch_seqs):
                    batch_end = min(batch_start + self.config.batch_seqs, sequences)
                    self._step(model, tokens, batch_start, batch_end, seq_len, dist_ctx)
        finally:
            model.eval()

    def _step(
        self,
        model: nn.Module,
        tokens: torch.Tensor,
        batch_start: int,
        batch_end: int,
        seq_len: int,
        dist_ctx: DistContext,
    ) -> None:
        """One SGD step on sequences ``[batch_start, batch_end)``; this rank computes its share."""
        global_count = (batch_end - batch_start) * seq_len
        local_begin, local_end = split_for_rank(batch_end - batch_start, dist_ctx.rank, dist_ctx.world_size)
        self.optimizer.zero_grad(set_to_none=True)
        if local_end > local_begin:
            first = (batch_start + local_begin) * seq_len
            last = (batch_start + local_end) * seq_len
            inputs = tokens[first:last].reshape(-1, seq_len)
            targets = tokens[first + 1 : last + 1].reshape(-1, seq_len)
            logits = forward_logits(model, inputs)
            loss = (
                F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum")
                / global_count
            )
            loss.backward()
        sum_gradients(self.params, dist_ctx)
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.config.grad_clip)
        self.optimizer.step()
        self.steps += 1
