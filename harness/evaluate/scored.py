"""The adapter's only window onto validation data: tokens that have already been scored.

Why a view object instead of a tensor slice: score-first TTT is legal only if adaptation never
sees a token before its score is fixed. The evaluator keeps the validation tensor to itself and
hands adapters this view, whose frontier advances only after a chunk's log line is on disk. Any
read past the frontier raises ``UnscoredAccess`` *and* is remembered, so an adapter that catches
the exception is still reported.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np
import torch


class RuntimeViolation(Exception):
    """Submission code did something the audited evaluation forbids; evaluation stops cleanly.

    ``rule`` names the catalog rule the finding is filed under. Guards and probes (written
    against this module) raise subclasses so the evaluator handles every violation one way.
    """

    rule: str = "PG101"
    recorded: bool = False  # a guard's session already holds this violation's finding

    def __init__(self, message: str, rule: str | None = None) -> None:
        super().__init__(message)
        if rule is not None:
            self.rule = rule


class UnscoredAccess(RuntimeViolation):
    """An adapter asked for a validation token that has not been scored yet."""

    rule = "PG101"


@dataclass(frozen=True)
class ChunkInfo:
    """What an adapter is told about the chunk it may now learn from.

    ``token_start``/``token_end`` bound the tokens of this chunk's scored targets plus the token
    that precedes the first one (its context): ``[target_start, target_end]`` inclusive in token
    positions, i.e. the half-open token range ``[target_start, target_end + 1)``.
    """

    index: int
    num_chunks: int
    target_start: int
    target_end: int
    seq_len: int

    @property
    def token_start(self) -> int:
        return self.target_start

    @property
    def token_end(self) -> int:
        return self.target_end + 1

    @property
    def is_last(self) -> bool:
        return self.index == self.num_chunks - 1


class ScoredTokens:
    """Read-only access to validation tokens ``[0, frontier)``; see the module docstring.

    Why pieces and copies: the view must not hold one token past the frontier, not even through
    the ``base`` of a numpy view, since an adapter can walk its attributes. Each ``_grow`` keeps a
    private copy of the newly scored tokens; reads concatenate the pieces they overlap, so growth
    stays linear in the stream.
    """

    def __init__(self) -> None:
        self._pieces: list[np.ndarray] = []
        self._starts: list[int] = []
        self._frontier = 0
        self.violations: list[str] = []

    @property
    def frontier(self) -> int:
        """Number of tokens readable: every target below ``frontier - 1`` has been scored."""
        return self._frontier

    def __len__(self) -> int:
        return self._frontier

    def _grow(self, fresh: np.ndarray) -> None:
        """Evaluator-only: ``fresh`` are tokens ``[frontier, frontier + len(fresh))``, now scored."""
        if fresh.size:
            self._pieces.append(np.array(fresh.reshape(-1), copy=True))
            self._starts.append(self._frontier)
            self._frontier += int(fresh.size)

    def _check(self, start: int, stop: int) -> None:
        if start < 0 or stop < start:
            message = f"invalid token range [{start}, {stop})"
        elif stop > self._frontier:
            message = (
                f"adapter tried to read unscored tokens: asked for [{start}, {stop}) "
                f"but only [0, {self._frontier}) are scored"
            )
        else:
            return
        self.violations.append(message)
        raise UnscoredAccess(message)

    def read(self, start: int, stop: int) -> torch.Tensor:
        """A fresh int64 CPU tensor copy of tokens ``[start, stop)``; raises past the frontier."""
        self._check(start, stop)
        first = max(bisect.bisect_right(self._starts, start) - 1, 0)
        parts = []
        for piece, offset in zip(self._pieces[first:], self._starts[first:]):
            if offset >= stop:
                break
            parts.append(piece[max(start - offset, 0) : stop - offset])
        joined = parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        return torch.from_numpy(joined.astype(np.int64))

    def __getitem__(self, key: slice | int) -> torch.Tensor:
        if isinstance(key, slice):
            if key.step not in (None, 1):
                raise TypeError("ScoredTokens supports contiguous slices only")
            start = 0 if key.start is None else int(key.start)
            stop = self._frontier if key.stop is None else int(key.stop)
            if start < 0 or stop < 0:
                raise TypeError("ScoredTokens does not support negative indexes")
            return self.read(start, stop)
        index = int(key)
        return self.read(index, index + 1)[0]


def newly_scored(tokens: np.ndarray, frontier: int, scored_targets_end: int) -> np.ndarray:
    """The tokens that become readable once targets ``[0, scored_targets_end)`` are scored.

    Target ``t`` is token ``t + 1``, so the frontier moves to ``scored_targets_end + 1`` (the
    stream's end at most); the slice starts at the current ``frontier``.
    """
    return tokens[frontier : min(scored_targets_end + 1, int(tokens.shape[0]))]
