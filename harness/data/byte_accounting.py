"""Exact byte accounting for ``val_bpb``, identical to the challenge baseline's LUTs.

The score is bits per *byte* of text, not per token, so that tokenizers of different
granularity compete fairly. The baseline derives the byte count of every scored token from
three lookup tables built from the SentencePiece model (``build_sentencepiece_luts``):

* ``base_bytes[id]``: UTF-8 length of the piece with a leading '▁' removed; byte-fallback
  pieces (``<0xAB>``) count 1; control, unknown and unused pieces, and ids beyond the
  tokenizer (padding of the embedding table), count 0.
* ``has_leading_space[id]``: the piece starts with '▁', i.e. it stands for a space too.
* ``is_boundary[id]``: True for everything that is not a normal/byte piece (documents start
  after BOS, and a space right after a boundary is not counted).

A target ``y`` following ``x`` is worth ``base[y] + (lead[y] and not boundary[x])`` bytes.
Anything else (counting decoded text, a fixed bytes-per-token ratio, forgetting byte pieces)
gives a different denominator and a different, incomparable score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sentencepiece as spm

from harness.errors import DataFormatError

LEADING_SPACE = "\u2581"  # '▁', SentencePiece's visible space


@dataclass(frozen=True)
class ByteLuts:
    """Per-token-id tables; index with token ids (all three have the same length)."""

    base_bytes: np.ndarray  # int16 [V]
    has_leading_space: np.ndarray  # bool [V]
    is_boundary: np.ndarray  # bool [V]

    @property
    def size(self) -> int:
        return int(self.base_bytes.shape[0])


def load_tokenizer(path: Path) -> spm.SentencePieceProcessor:
    """Load a SentencePiece model, turning missing or corrupt files into a one-line error."""
    path = Path(path)
    try:
        proto = path.read_bytes()
    except OSError as error:
        raise DataFormatError(f"tokenizer {path}: unreadable ({error.strerror or error})") from None
    processor = spm.SentencePieceProcessor()
    try:
        processor.LoadFromSerializedProto(proto)
    except (RuntimeError, OSError, ValueError, TypeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataFormatError(f"tokenizer {path}: not a SentencePiece model ({reason})") from None
    if processor.get_piece_size() <= 0:
        raise DataFormatError(f"tokenizer {path}: model has no pieces")
    return processor


def build_byte_luts(sp: spm.SentencePieceProcessor, vocab_size: int) -> ByteLuts:
    """The baseline's ``build_sentencepiece_luts``, as numpy arrays.

    The table covers ``max(piece count, vocab_size)`` ids because models may pad their
    embedding beyond the tokenizer; such ids count 0 bytes and act as boundaries.
    """
    piece_count = int(sp.get_piece_size())
    table_size = max(piece_count, int(vocab_size))
    base_bytes = np.zeros(table_size, dtype=np.int16)
    has_leading_space = np.zeros(table_size, dtype=np.bool_)
    is_boundary = np.ones(table_size, dtype=np.bool_)
    for token_id in range(piece_count):
        if sp.is_control(token_id) or sp.is_unknown(token_id) or sp.is_unused(token_id):
            continue
        is_boundary[token_id] = False
        if sp.is_byte(token_id):
            base_bytes[token_id] = 1
            continue
        piece = sp.id_to_piece(token_id)
        if piece.startswith(LEADING_SPACE):
            has_leading_space[token_id] = True
            piece = piece[1:]
        base_bytes[token_id] = len(piece.encode("utf-8"))
    return ByteLuts(base_bytes=base_bytes, has_leading_space=has_leading_space, is_boundary=is_boundary)


def _check_ids(ids: np.ndarray, luts: ByteLuts, what: str) -> None:
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= luts.size):
        raise DataFormatError(
            f"{what} token ids span [{int(ids.min())}, {int(ids.max())}], outside the byte table of size {luts.size}"
        )


def target_bytes(prev_ids: np.ndarray, target_ids: np.ndarray, luts: ByteLuts) -> np.ndarray:
    """Bytes each target token stands for, given the token before it (int64, same shape)."""
    prev = np.asarray(prev_ids).astype(np.int64, copy=False)
    target = np.asarray(target_ids).astype(np.int64, copy=False)
    if prev.shape != target.shape:
        raise DataFormatError(f"previous ids shape {prev.shape} differs from target ids shape {target.shape}")
    _check_ids(prev, luts, "previous")
    _check_ids(target, luts, "target")
    space = luts.has_leading_space[target] & ~luts.is_boundary[prev]
    return luts.base_bytes[target].astype(np.int64) + space.astype(np.int64)


def stream_bytes(tokens: np.ndarray, luts: ByteLuts) -> int:
    """Total bytes of the targets of a token stream (every token but the first is a target)."""
    tokens = np.asarray(tokens)
    if tokens.size < 2:
        return 0
    return int(target_bytes(tokens[:-1], tokens[1:], luts).sum())


def bits_per_byte(nll_sum_nats: float, byte_count: int) -> float:
    """``val_bpb`` from the summed per-token NLL (nats) and the byte count of those targets: the
    one formula the trainer, golf-eval's writer and ``verify`` all use, so their results match
    bit for bit.

    Equal to the baseline's ``(mean_nll / ln 2) * (tokens / bytes)``, in float64 (Python floats).
    Zero bytes means nothing was scored (e.g. a validation set of only control tokens, or a log
    whose chunks claim no bytes): that is unusable data, not a score, so it raises
    :class:`DataFormatError` rather than returning inf or NaN.
    """
    if byte_count <= 0:
        raise DataFormatError(f"cannot compute bits per byte over {byte_count} bytes")
    return float(nll_sum_nats) / math.log(2.0) / float(byte_count)
