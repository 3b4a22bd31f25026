"""The window plan: which targets each scoring window owns, and which chunk each window belongs to.

Why a pure plan, computed before any model runs: coverage (every validation target scored exactly
once) is then a property of plain integers that can be tested exhaustively and re-checked by
``verify`` from the log alone, instead of a side effect of batching code.

Indexing. The validation stream has ``N`` tokens; target ``t`` (0 ≤ t < N−1) is token ``t+1``
predicted from tokens ``0..t``. A window with input start ``s`` and length ``L`` reads tokens
``s..s+L−1`` and predicts targets ``s..s+L−1``. Every window has ``L = min(seq_len, N−1)``.

Scored ranges: the first window scores targets ``[0, L)``; after that, consecutive ranges of
``stride`` targets, the last one possibly shorter. Each window ends exactly where its scored
range ends and so scores only its last ``stride`` (or fewer) targets with the longest possible
context; with ``stride == seq_len`` this is the baseline's non-overlapping evaluation.

Chunks partition the targets in blocks of ``chunk_tokens``; a window belongs to the chunk of its
first scored target, so a chunk's scored range can run past its nominal end. Chunks that own no
window are dropped and the rest renumbered, so chunk ranges are contiguous and cover ``[0, N−1)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.errors import UsageError


@dataclass(frozen=True)
class WindowBatchPlan:
    """Windows as parallel arrays (one entry per window), cheap to slice per chunk and per rank.

    ``input_start[i]``: first input token of window i; ``score_offset[i]``: first scored position
    inside the window; the window scores targets ``input_start+score_offset .. input_start+length−1``.
    """

    input_start: np.ndarray  # int64 [W]
    score_offset: np.ndarray  # int64 [W]
    length: int

    @property
    def count(self) -> int:
        return int(self.input_start.shape[0])

    def scored_start(self) -> np.ndarray:
        return self.input_start + self.score_offset

    def scored_end(self) -> np.ndarray:
        return self.input_start + self.length

    def select(self, begin: int, end: int) -> WindowBatchPlan:
        return WindowBatchPlan(self.input_start[begin:end], self.score_offset[begin:end], self.length)


@dataclass(frozen=True)
class ChunkPlan:
    """One chunk: its windows and the half-open target range ``[target_start, target_end)`` they score."""

    index: int
    target_start: int
    target_end: int
    windows: WindowBatchPlan

    @property
    def targets(self) -> int:
        return self.target_end - self.target_start


@dataclass(frozen=True)
class EvalPlan:
    total_tokens: int  # N, tokens in the validation stream
    seq_len: int
    stride: int
    chunk_tokens: int
    chunks: tuple[ChunkPlan, ...]

    @property
    def total_targets(self) -> int:
        return self.total_tokens - 1


def plan_windows(total_tokens: int, seq_len: int, stride: int) -> WindowBatchPlan:
    """All windows for a stream of ``total_tokens`` tokens (see the module docstring)."""
    if seq_len < 1 or stride < 1:
        raise UsageError(f"seq_len and stride must be positive (got {seq_len}, {stride})")
    if stride > seq_len:
        raise UsageError(f"stride {stride} is larger than seq_len {seq_len}: targets would go unscored")
    targets = total_tokens - 1
    if targets < 1:
        raise UsageError(f"validation stream has {total_tokens} tokens: nothing to score")
    length = min(seq_len, targets)
    # Scored range ends: first window ends at `length`, then every `stride`, the last at `targets`.
    ends = np.arange(length, targets, stride, dtype=np.int64)
    ends = np.append(ends, np.int64(targets)) if ends.size == 0 or ends[-1] != targets else ends
    starts_scored = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    input_start = ends - length
    score_offset = starts_scored - input_start
    return WindowBatchPlan(input_start=input_start, score_offset=score_offset, length=length)


def plan_evaluation(total_tokens: int, seq_len: int, stride: int, chunk_tokens: int) -> EvalPlan:
    """Windows grouped into chunks by their first scored target; empty chunks dropped."""
    if chunk_tokens < 1:
        raise UsageError(f"chunk_tokens must be positive (got {chunk_tokens})")
    windows = plan_windows(total_tokens, seq_len, stride)
    first_scored = windows.scored_start()
    chunk_of_window = first_scored // chunk_tokens
    # Windows are sorted by first scored target, so chunk ids are non-decreasing: split at changes.
    boundaries = np.flatnonzero(np.diff(chunk_of_window)) + 1
    edges = np.concatenate([[0], boundaries, [windows.count]]).astype(np.int64)
    scored_end = windows.scored_end()
    chunks = []
    for index in range(edges.size - 1):
        begin, end = int(edges[index]), int(edges[index + 1])
        chunks.append(
            ChunkPlan(
                index=index,
                target_start=int(first_scored[begin]),
                target_end=int(scored_end[end - 1]),
                windows=windows.select(begin, end),
            )
        )
    return EvalPlan(
        total_tokens=total_tokens,
        seq_len=seq_len,
        stride=stride,
        chunk_tokens=chunk_tokens,
        chunks=tuple(chunks),
    )


def split_for_rank(count: int, rank: int, world_size: int) -> tuple[int, int]:
    """The contiguous slice ``[begin, end)`` of ``count`` items that ``rank`` handles."""
    return count * rank // world_size, count * (rank + 1) // world_size
