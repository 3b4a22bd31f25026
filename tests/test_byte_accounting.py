"""Byte LUTs and bits per byte, checked against pieces and sums worked out by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

from harness.data.byte_accounting import (
    ByteLuts,
    bits_per_byte,
    build_byte_luts,
    load_tokenizer,
    stream_bytes,
    target_bytes,
)
from harness.errors import DataFormatError

TINY_VOCAB_SIZE = 320  # the size tests/conftest.py trains the tiny tokenizer with


@pytest.fixture(scope="module")
def tiny_sp(tiny_tokenizer_path: Path) -> spm.SentencePieceProcessor:
    return load_tokenizer(tiny_tokenizer_path)


@pytest.fixture(scope="module")
def tiny_luts(tiny_sp: spm.SentencePieceProcessor) -> ByteLuts:
    return build_byte_luts(tiny_sp, TINY_VOCAB_SIZE)


def test_tiny_tokenizer_has_challenge_ids(tiny_sp: spm.SentencePieceProcessor) -> None:
    assert tiny_sp.get_piece_size() == 320
    assert [tiny_sp.id_to_piece(i) for i in range(4)] == ["<pad>", "<s>", "</s>", "<unk>"]
    assert tiny_sp.bos_id() == 1
    assert tiny_sp.id_to_piece(69) == "<0x41>"


def test_control_and_unknown_ids_are_zero_byte_boundaries(tiny_luts: ByteLuts) -> None:
    assert tiny_luts.base_bytes[:4].tolist() == [0, 0, 0, 0]
    assert tiny_luts.is_boundary[:4].tolist() == [True, True, True, True]
    assert tiny_luts.has_leading_space[:4].tolist() == [False, False, False, False]


def test_byte_fallback_pieces_count_one(tiny_luts: ByteLuts) -> None:
    # <0x41> is 'A'; <0xC3> is half of a two-byte character: both are one byte each.
    for token_id in (69, 4 + 0xC3, 4, 259):
        assert tiny_luts.base_bytes[token_id] == 1
        assert not tiny_luts.is_boundary[token_id]
        assert not tiny_luts.has_leading_space[token_id]


def test_normal_pieces(tiny_sp: spm.SentencePieceProcessor, tiny_luts: ByteLuts) -> None:
    expected = {  # piece: (base bytes, leading '▁')
        "\u2581the": (3, True),
        "\u2581cat": (3, True),
        "the": (3, False),
        "af\u00e9": (4, False),  # 'é' is two UTF-8 bytes
        "\u00e9": (2, False),
        "\u2581": (0, True),  # a bare space piece is worth only its space
        "2": (1, False),
    }
    for piece, (base, lead) in expected.items():
        token_id = tiny_sp.piece_to_id(piece)
        assert tiny_sp.id_to_piece(token_id) == piece, piece
        assert (int(tiny_luts.base_bytes[token_id]), bool(tiny_luts.has_leading_space[token_id])) == (base, lead)
        assert not tiny_luts.is_boundary[token_id]


def test_table_dtypes_and_padding_beyond_tokenizer(tiny_sp: spm.SentencePieceProcessor) -> None:
    luts = build_byte_luts(tiny_sp, 400)
    assert luts.size == 400
    assert luts.base_bytes.dtype == np.int16
    assert luts.has_leading_space.dtype == np.bool_
    assert luts.is_boundary.dtype == np.bool_
    assert luts.base_bytes[320:].tolist() == [0] * 80
    assert luts.is_boundary[320:].all()
    assert build_byte_luts(tiny_sp, 100).size == 320  # never smaller than the tokenizer


def test_target_bytes_by_hand(tiny_sp: spm.SentencePieceProcessor, tiny_luts: ByteLuts) -> None:
    the, cat, space, cafe = (tiny_sp.piece_to_id(p) for p in ("\u2581the", "\u2581cat", "\u2581", "af\u00e9"))
    stream = np.array([1, the, cat, 69, space, cafe, 1, the], dtype=np.uint16)
    per_target = target_bytes(stream[:-1], stream[1:], tiny_luts)
    # '▁the' after BOS: 3 (space not counted after a boundary); '▁cat': 3+1; '<0x41>': 1;
    # '▁': 0+1; 'afé': 4; BOS: 0; '▁the' after BOS again: 3.
    assert per_target.tolist() == [3, 4, 1, 1, 4, 0, 3]
    assert per_target.dtype == np.int64
    assert stream_bytes(stream, tiny_luts) == 16


def test_stream_bytes_match_decoded_text(tiny_sp: spm.SentencePieceProcessor, tiny_luts: ByteLuts) -> None:
    text = "the cat sat near the café, Zebra 2024 thing!"
    ids = [1, *tiny_sp.encode(text)]
    assert stream_bytes(np.array(ids), tiny_luts) == len(tiny_sp.decode(ids[1:]).encode("utf-8")) == 45


def test_target_bytes_rejects_ids_outside_table(tiny_luts: ByteLuts) -> None:
    with pytest.raises(DataFormatError, match=r"target token ids span \[5, 320\], outside the byte table of size 320"):
        target_bytes(np.array([1, 1]), np.array([5, 320]), tiny_luts)
    with pytest.raises(DataFormatError, match="shape"):
        target_bytes(np.array([1, 1]), np.array([5]), tiny_luts)


def test_bits_per_byte_by_hand() -> None:
    # Three targets with NLLs 0.5, 1.0, 2.0 nats worth 3, 4 and 1 bytes.
    nlls = [0.5, 1.0, 2.0]
    bpb = bits_per_byte(sum(nlls), 8)
    assert bpb == pytest.approx(3.5 / math.log(2) / 8, rel=0, abs=1e-15)
    assert bpb == pytest.approx(0.6311790803889216, rel=0, abs=1e-15)
    # The baseline's form: (mean nll / ln 2) * (tokens / bytes).
    assert bpb == pytest.approx((3.5 / 3 / math.log(2)) * (3 / 8), rel=1e-15)


@pytest.mark.parametrize("byte_count", [0, -5])
def test_bits_per_byte_needs_bytes(byte_count: int) -> None:
    with pytest.raises(DataFormatError, match=f"cannot compute bits per byte over {byte_count} bytes"):
        bits_per_byte(1.0, byte_count)


def test_load_tokenizer_errors(tmp_path: Path) -> None:
    missing = tmp_path / "none.model"
    with pytest.raises(DataFormatError) as caught:
        load_tokenizer(missing)
    assert str(caught.value) == f"tokenizer {missing}: unreadable (No such file or directory)"
    corrupt = tmp_path / "corrupt.model"
    corrupt.write_bytes(b"\x00\x01not a model at all")
    with pytest.raises(DataFormatError) as caught:
        load_tokenizer(corrupt)
    assert str(caught.value).startswith(f"tokenizer {corrupt}: not a SentencePiece model (")
    assert "\n" not in str(caught.value)
    empty = tmp_path / "empty.model"
    empty.write_bytes(b"")
    with pytest.raises(DataFormatError, match=r"empty\.model: not a SentencePiece model"):
        load_tokenizer(empty)
