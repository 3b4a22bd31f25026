"""Scoring one chunk's windows: the evaluator, not the model, turns logits into a score.

Why: condition C2 of #1017 requires a full normalized distribution over the official vocabulary
computed without knowing the target. The model only returns raw logits ``[B, T, V]``; this module
checks the shape against the tokenizer's vocabulary, applies ``log_softmax`` in float32 itself
(normalized by construction), spot-checks that the normalizer is ~0, and gathers the NLL of the
scored targets, summed in float64.

Batches are formed over a chunk's windows in a fixed way and whole batches are given to ranks,
so (when a chunk holds at least one full batch per rank) every batch is computed with the same
shapes however many processes run: that is what makes 1 and N processes agree to float64
rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import HarnessError
from harness.evaluate.adapters.base import forward_logits
from harness.evaluate.distributed import DistContext
from harness.evaluate.windows import WindowBatchPlan, split_for_rank

NORMALIZATION_TOLERANCE = 1e-4


class ScoringError(HarnessError):
    """The model's output cannot be scored (wrong shape, non-finite values)."""


@dataclass
class ScoreSums:
    nll_sum: float = 0.0
    max_norm_error: float = 0.0


def _check_logits(logits: torch.Tensor, batch: int, length: int, vocab_size: int) -> None:
    if logits.dim() != 3 or tuple(logits.shape) != (batch, length, vocab_size):
        raise ScoringError(
            f"model returned logits of shape {tuple(logits.shape)}; expected [{batch}, {length}, "
            f"{vocab_size}] (full distributions over the tokenizer's vocabulary)"
        )


def score_windows(
    model: nn.Module,
    tokens: torch.Tensor,
    windows: WindowBatchPlan,
    vocab_size: int,
    batch_windows: int,
    dist_ctx: DistContext,
    autocast: bool = False,
) -> ScoreSums:
    """This rank's share of the NLL (nats, float64) over the windows' scored targets.

    ``tokens`` is the int64 validation stream on the model's device. The caller has put the
    model in eval mode and holds ``torch.inference_mode()``.
    """
    sums = ScoreSums()
    length = windows.length
    device = tokens.device
    # Never fewer batches than ranks, so every rank gets work; batch shapes stay those of one
    # process whenever a chunk has at least world_size full batches.
    batch_windows = max(1, min(batch_windows, -(-windows.count // dist_ctx.world_size)))
    num_batches = -(-windows.count // batch_windows)
    first_batch, last_batch = split_for_rank(num_batches, dist_ctx.rank, dist_ctx.world_size)
    positions = torch.arange(length, device=device)
    for batch_index in range(first_batch, last_batch):
        begin = batch_index * batch_windows
        end = min(begin + batch_windows, windows.count)
        starts = torch.from_numpy(windows.input_start[begin:end]).to(device)
        offsets = torch.from_numpy(windows.score_offset[begin:end]).to(device)
        index = starts[:, None] + positions[None, :]
        inputs = tokens[index]
        targets = tokens[index + 1]
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = forward_logits(model, inputs)
        _check_logits(logits, end - begin, length, vocab_size)
        scored = positions[None, :] >= offsets[:, None]
        if bool(scored.all()):
            flat_logits = logits.reshape(-1, vocab_size)
            flat_targets = targets.reshape(-1)
        else:
            flat_logits = logits[scored]
            flat_targets = targets[scored]
        log_probs = F.log_softmax(flat_logits.float(), dim=-1)
        nll = -log_probs.gather(1, flat_targets[:, None]).squeeze(1)
        batch_sum = float(nll.double().sum().item())
        if batch_sum != batch_sum or batch_sum in (float("inf"), float("-inf")):
            raise ScoringError(f"model produced non-finite log-probabilities in windows {begin}..{end - 1}")
        sums.nll_sum += batch_sum
        # Spot-check normalization on the first scored row of the batch (cheap, catches a broken
        # softmax replacement should anyone patch this path).
        normalizer = torch.logsumexp(log_probs[:1], dim=-1).abs().max()
        sums.max_norm_error = max(sums.max_norm_error, float(normalizer.item()))
    return sums
