"""The identity adapter: no test-time training (a fixed predictor, #1017 "Track A")."""

from __future__ import annotations

from torch import nn

from harness.evaluate.scored import ChunkInfo, ScoredTokens


class NoAdapter:
    name = "none"

    def adapt(self, model: nn.Module, scored: ScoredTokens, chunk: ChunkInfo) -> None:
        return None
