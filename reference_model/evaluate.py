"""The trainer's own validation pass, in the baseline's shape, with exact raw sums.

Why it exposes the sums: golf-eval recomputes the same score with its audited evaluator; to
compare the two exactly we need the float64 NLL sum, the target count and the byte count,
not only the rounded loss. Per-token NLLs are computed in float32 from the soft-capped
logits (as golf-eval does) and summed in float64, so the batch size does not change the
score beyond float64 rounding.

Scoring only: the model is put in eval mode and run under ``torch.inference_mode()``;
nothing here computes a gradient or updates state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from harness.data.byte_accounting import ByteLuts, bits_per_byte, target_bytes
from harness.errors import DataFormatError
from reference_model.model import GPT


@dataclass(frozen=True)
class ValSums:
    """Raw validation totals: NLL in nats (float64), scored targets, and their UTF-8 bytes."""

    nll_sum: float
    tokens: int
    bytes: int

    @property
    def val_loss(self) -> float:
        return self.nll_sum / self.tokens

    @property
    def val_bpb(self) -> float:
        return bits_per_byte(self.nll_sum, self.bytes)


def _as_numpy_tokens(val_tokens: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(val_tokens, torch.Tensor):
        return val_tokens.detach().cpu().numpy()
    return np.asarray(val_tokens)


def eval_val_sums(
    model: GPT,
    val_tokens: np.ndarray | torch.Tensor,
    luts: ByteLuts,
    seq_len: int,
    batch_seqs: int,
    rank: int = 0,
    world_size: int = 1,
    device: torch.device | str = "cpu",
) -> ValSums:
    """Score non-overlapping ``seq_len`` windows; this rank takes sequences
    ``[total·rank//world, total·(rank+1)//world)``; sums are all-reduced when distributed.

    Pass the unwrapped model, not a DDP wrapper: scoring calls its ``forward_logits``.
    """
    tokens = _as_numpy_tokens(val_tokens)
    total_seqs = (tokens.size - 1) // seq_len
    if total_seqs <= 0:
        raise DataFormatError(f"validation stream of {tokens.size} tokens is shorter than one sequence of {seq_len}")
    device = torch.device(device)
    seq_start = total_seqs * rank // world_size
    seq_end = total_seqs * (rank + 1) // world_size
    nll_sum = 0.0
    byte_count = 0
    use_autocast = device.type == "cuda"
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for batch_start in range(seq_start, seq_end, max(1, batch_seqs)):
            batch_end = min(batch_start + max(1, batch_seqs), seq_end)
            window = tokens[batch_start * seq_len : batch_end * seq_len + 1].astype(np.int64)
            inputs = torch.from_numpy(window[:-1].reshape(-1, seq_len)).to(device)
            targets = torch.from_numpy(window[1:].reshape(-1, seq_len)).to(device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_autocast):
                logits = model.forward_logits(inputs)
            nll = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none")
            nll_sum += float(nll.double().sum().item())
            byte_count += int(target_bytes(window[:-1], window[1:], luts).sum())
    model.train(was_training)
    token_count = (seq_end - seq_start) * seq_len
    if dist.is_available() and dist.is_initialized():
        totals = torch.tensor([nll_sum, float(token_count), float(byte_count)], dtype=torch.float64, device=device)
        dist.all_reduce(totals, op=dist.ReduceOp.SUM)
        nll_sum, token_count, byte_count = float(totals[0].item()), int(totals[1].item()), int(totals[2].item())
    return ValSums(nll_sum=nll_sum, tokens=token_count, bytes=byte_count)


def eval_val(
    model: GPT,
    val_tokens: np.ndarray | torch.Tensor,
    luts: ByteLuts,
    seq_len: int,
    batch_seqs: int,
    rank: int = 0,
    world_size: int = 1,
    device: torch.device | str = "cpu",
) -> tuple[float, float]:
    """``(val_loss in nats/token, val_bpb)`` as the baseline's ``eval_val`` reports them."""
    sums = eval_val_sums(model, val_tokens, luts, seq_len, batch_seqs, rank, world_size, device)
    return sums.val_loss, sums.val_bpb
