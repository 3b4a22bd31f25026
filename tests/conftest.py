"""Shared pytest fixtures: the embedded default data set and a tiny hand-checkable tokenizer.

Both are session-scoped because they are expensive relative to a unit test (the embedded
data is built once per cache key and then reused across sessions; the tiny tokenizer takes
a fraction of a second but many tests want it).
"""

from __future__ import annotations

import os
from pathlib import Path

# Tiny models spend their time in thread hand-offs, not arithmetic: one intra-op thread per
# process is several times faster on a 2-core machine, and torchrun tests start two
# processes that would otherwise oversubscribe the cores. Set before torch is imported, so
# subprocesses (torchrun, CLI runs) inherit it too; an explicit value from the caller wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest

from harness.data.embedded import DataPaths, embedded_data
from harness.data.tokenizer_training import train_bpe_tokenizer

# Small fixed text whose learned pieces are easy to check by hand: frequent "the"/"cat"
# give '▁'-prefixed merges, "café" gives a multi-byte piece, capital letters never appear
# in lower case so they fall back to byte pieces (<0x41> for "A"), digits are split.
TINY_TOKENIZER_LINES: tuple[str, ...] = (
    "the cat sat on the mat",
    "the dog ate the bone",
    "then the cat and the dog slept",
    "a café near the station opened in 2024",
    "the theory of the thing is there",
) * 20
TINY_VOCAB_SIZE = 320


@pytest.fixture(scope="session")
def embedded() -> DataPaths:
    """The embedded default data (built into the user cache on first use)."""
    return embedded_data()


@pytest.fixture(scope="session")
def tiny_tokenizer_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 320-piece challenge-style BPE tokenizer trained on ``TINY_TOKENIZER_LINES``."""
    path = tmp_path_factory.mktemp("tiny_tokenizer") / "tiny_bpe.model"
    path.write_bytes(train_bpe_tokenizer(TINY_TOKENIZER_LINES, vocab_size=TINY_VOCAB_SIZE))
    return path
