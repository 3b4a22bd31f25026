"""Training-token stream and the baseline's distributed batch loader.

Why this shape: every step consumes one *global* batch from a single sequential stream over
the sorted ``fineweb_train_*.bin`` shards, and each (rank, micro-step) takes a disjoint span
of it. With ``world_size × grad_accum_steps`` held fixed, one process with two micro-steps
and two ranks with one micro-step each read exactly the same tokens in the same places —
that is what makes a torchrun run reproduce a single-process run.

Only training shards are read here; validation tokens never enter this module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from harness.data.shards import find_shards, read_shard
from harness.errors import DataFormatError, UsageError


class TokenStream:
    """Endless sequential reader over the shards of a glob, wrapping around at the end."""

    def __init__(self, pattern: str | Path) -> None:
        self.files = find_shards(pattern)
        self.file_index = 0
        self.tokens = read_shard(self.files[0])
        self.position = 0

    def _advance_file(self) -> None:
        self.file_index = (self.file_index + 1) % len(self.files)
        self.tokens = read_shard(self.files[self.file_index])
        self.position = 0

    def take(self, count: int) -> np.ndarray:
        """The next ``count`` tokens, crossing shard boundaries as needed."""
        chunks: list[np.ndarray] = []
        remaining = count
        empty_files_seen = 0
        while remaining > 0:
            available = self.tokens.size - self.position
            if available <= 0:
                empty_files_seen += 1
                if empty_files_seen > len(self.files):
                    raise DataFormatError(f"training shards {self.files[0].parent} contain no tokens")
                self._advance_file()
                continue
            empty_files_seen = 0
            k = min(remaining, available)
            chunks.append(self.tokens[self.position : self.position + k])
            self.position += k
            remaining -= k
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)


class DistributedTokenLoader:
    """Hands each rank its disjoint span of every global batch, one micro-step at a time."""

    def __init__(self, pattern: str | Path, rank: int, world_size: int, device: torch.device) -> None:
        self.rank = rank
        self.world_size = world_size
        self.device = device
        self.stream = TokenStream(pattern)

    def next_batch(self, global_tokens: int, seq_len: int, grad_accum_steps: int) -> tuple[Tensor, Tensor]:
        """Inputs and next-token targets ``[local_tokens // seq_len, seq_len]`` for this rank.

        Each call consumes ``world_size`` spans of ``local_tokens + 1`` tokens (the extra
        token gives the last input its target); rank r takes span r.
        """
        local_tokens = global_tokens // (self.world_size * grad_accum_steps)
        if local_tokens < seq_len or local_tokens % seq_len:
            raise UsageError(
                f"train batch of {global_tokens} tokens over {self.world_size} ranks × {grad_accum_steps} micro-steps "
                f"gives {local_tokens} tokens per micro-batch, not a positive multiple of seq_len {seq_len}"
            )
        span = local_tokens + 1
        chunk = self.stream.take(span * self.world_size)
        local = torch.from_numpy(chunk[self.rank * span : (self.rank + 1) * span].astype(np.int64))
        inputs = local[:-1].reshape(-1, seq_len)
        targets = local[1:].reshape(-1, seq_len)
        return inputs.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)
