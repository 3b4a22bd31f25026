"""Token shard reader/writer: the good case byte for byte, and every malformed case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.data.shards import (
    HEADER_BYTES,
    SHARD_MAGIC,
    find_shards,
    load_tokens,
    load_validation_tokens,
    read_shard,
    read_shard_header,
    train_pattern,
    usable_validation_length,
    val_pattern,
    write_shard,
)
from harness.errors import EXIT_BAD_INPUT, DataFormatError, UsageError


def _raw_shard(path: Path, header: list[int], token_bytes: bytes) -> Path:
    ints = np.zeros(256, dtype="<i4")
    ints[: len(header)] = header
    path.write_bytes(ints.tobytes() + token_bytes)
    return path


def test_written_shard_has_exact_challenge_layout(tmp_path: Path) -> None:
    path = tmp_path / "fineweb_val_000000.bin"
    write_shard(path, [1, 258, 65535, 0])
    raw = path.read_bytes()
    assert len(raw) == 1024 + 8
    assert raw[:12] == (20240520).to_bytes(4, "little") + (1).to_bytes(4, "little") + (4).to_bytes(4, "little")
    assert raw[12:1024] == bytes(1012)
    assert raw[1024:] == bytes([1, 0, 2, 1, 255, 255, 0, 0])


def test_read_shard_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "s.bin"
    write_shard(path, np.array([5, 7, 1023, 65535], dtype=np.int64))
    tokens = read_shard(path)
    assert tokens.dtype == np.uint16
    assert tokens.tolist() == [5, 7, 1023, 65535]
    assert read_shard_header(path) == 4


def test_empty_shard_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "s.bin"
    write_shard(path, [])
    assert read_shard(path).tolist() == []
    assert path.stat().st_size == HEADER_BYTES


def test_bad_magic(tmp_path: Path) -> None:
    path = _raw_shard(tmp_path / "bad.bin", [12345, 1, 2], bytes(4))
    with pytest.raises(DataFormatError) as caught:
        read_shard(path)
    message = str(caught.value)
    assert message == f"token shard {path}: bad magic 12345, expected 20240520 (not a challenge token shard)"
    assert caught.value.exit_code == EXIT_BAD_INPUT


def test_bad_version(tmp_path: Path) -> None:
    path = _raw_shard(tmp_path / "v2.bin", [SHARD_MAGIC, 2, 2], bytes(4))
    with pytest.raises(DataFormatError, match=r"v2\.bin: bad version 2, expected 1$"):
        read_shard(path)


def test_truncated(tmp_path: Path) -> None:
    path = _raw_shard(tmp_path / "short.bin", [SHARD_MAGIC, 1, 10], bytes(6))
    with pytest.raises(DataFormatError) as caught:
        read_shard(path)
    assert str(caught.value) == (
        f"token shard {path}: truncated: header says 10 tokens (1044 bytes) but the file has 1030 bytes"
    )


def test_oversized_trailing_bytes(tmp_path: Path) -> None:
    path = _raw_shard(tmp_path / "long.bin", [SHARD_MAGIC, 1, 2], bytes(7))
    with pytest.raises(DataFormatError) as caught:
        read_shard(path)
    assert str(caught.value) == (
        f"token shard {path}: oversized: 3 trailing bytes after 2 tokens (expected 1028 bytes, file has 1031)"
    )


def test_header_too_short(tmp_path: Path) -> None:
    path = tmp_path / "stub.bin"
    path.write_bytes((20240520).to_bytes(4, "little") + bytes(96))
    with pytest.raises(DataFormatError) as caught:
        read_shard(path)
    assert str(caught.value) == f"token shard {path}: header too short: file has 100 bytes, a header needs 1024"


def test_negative_count(tmp_path: Path) -> None:
    path = _raw_shard(tmp_path / "neg.bin", [SHARD_MAGIC, 1, -1], b"")
    with pytest.raises(DataFormatError, match=r"neg\.bin: negative token count -1 in header$"):
        read_shard(path)


def test_missing_file_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "absent.bin"
    with pytest.raises(DataFormatError) as caught:
        read_shard(path)
    assert str(caught.value) == f"token shard {path}: unreadable (No such file or directory)"


def test_directory_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"unreadable \(Is a directory\)$"):
        read_shard(tmp_path)


def test_messages_are_one_line_even_for_odd_paths(tmp_path: Path) -> None:
    path = _raw_shard(tmp_path / "odd\nname.bin", [1, 1, 0], b"")
    with pytest.raises(DataFormatError) as caught:
        read_shard(path)
    assert "\n" not in str(caught.value)
    assert "odd\\nname.bin: bad magic 1" in str(caught.value)


@pytest.mark.parametrize(
    ("tokens", "problem"),
    [
        ([0, 65536], "token ids must be in [0, 65535], got range [0, 65536]"),
        ([-1, 3], "token ids must be in [0, 65535], got range [-1, 3]"),
        ([1.5, 2.0], "tokens must be integers, got dtype float64"),
        ([[1, 2]], "tokens must be one-dimensional, got shape (1, 2)"),
    ],
)
def test_write_rejects_unrepresentable_tokens(tmp_path: Path, tokens: list, problem: str) -> None:
    path = tmp_path / "w.bin"
    with pytest.raises(DataFormatError) as caught:
        write_shard(path, tokens)
    assert str(caught.value) == f"cannot write {path}: {problem}"
    assert not path.exists()


def test_empty_glob_names_the_pattern(tmp_path: Path) -> None:
    pattern = val_pattern(tmp_path)
    with pytest.raises(DataFormatError) as caught:
        find_shards(pattern)
    assert str(caught.value) == f"no token shards match {tmp_path}/fineweb_val_*.bin"


def test_patterns_and_sorted_concatenation(tmp_path: Path) -> None:
    # Written out of order: the reader must follow name order, like the baseline's sorted(glob).
    write_shard(tmp_path / "fineweb_train_000001.bin", [3, 4])
    write_shard(tmp_path / "fineweb_train_000000.bin", [1, 2])
    write_shard(tmp_path / "fineweb_train_000010.bin", [5])
    write_shard(tmp_path / "fineweb_val_000000.bin", [9, 9, 9])
    assert train_pattern(tmp_path) == f"{tmp_path}/fineweb_train_*.bin"
    assert [p.name for p in find_shards(train_pattern(tmp_path))] == [
        "fineweb_train_000000.bin",
        "fineweb_train_000001.bin",
        "fineweb_train_000010.bin",
    ]
    assert load_tokens(train_pattern(tmp_path)).tolist() == [1, 2, 3, 4, 5]
    assert load_tokens(val_pattern(tmp_path)).tolist() == [9, 9, 9]


def test_load_tokens_checks_every_header_first(tmp_path: Path) -> None:
    write_shard(tmp_path / "fineweb_val_000000.bin", [1, 2])
    _raw_shard(tmp_path / "fineweb_val_000001.bin", [SHARD_MAGIC, 1, 5], bytes(2))
    with pytest.raises(DataFormatError, match=r"fineweb_val_000001\.bin: truncated: header says 5 tokens"):
        load_tokens(val_pattern(tmp_path))


@pytest.mark.parametrize(
    ("total", "seq_len", "kept"),
    [(11, 4, 9), (9, 4, 9), (12, 4, 9), (13, 4, 13), (5, 4, 5), (1025, 1024, 1025), (3000, 1024, 2049)],
)
def test_validation_truncation_arithmetic(total: int, seq_len: int, kept: int) -> None:
    assert usable_validation_length(total, seq_len) == kept


def test_load_validation_tokens_truncates_across_shards(tmp_path: Path) -> None:
    write_shard(tmp_path / "fineweb_val_000000.bin", [1, 10, 11, 12, 13, 14])
    write_shard(tmp_path / "fineweb_val_000001.bin", [1, 20, 21, 22, 23])
    tokens = load_validation_tokens(val_pattern(tmp_path), seq_len=4)
    # 11 tokens -> ((11 - 1) // 4) * 4 + 1 = 9 kept.
    assert tokens.tolist() == [1, 10, 11, 12, 13, 14, 1, 20, 21]
    assert tokens.dtype == np.uint16


def test_validation_too_short(tmp_path: Path) -> None:
    write_shard(tmp_path / "fineweb_val_000000.bin", [1, 2, 3, 4])
    with pytest.raises(DataFormatError) as caught:
        load_validation_tokens(val_pattern(tmp_path), seq_len=4)
    assert str(caught.value) == "validation split too short: 4 tokens, need at least 5 for seq_len 4"


def test_nonpositive_seq_len_is_usage_error() -> None:
    with pytest.raises(UsageError, match="sequence length must be positive, got 0"):
        usable_validation_length(100, 0)
