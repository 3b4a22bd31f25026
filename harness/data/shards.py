"""Reading and writing the challenge's token shards (``fineweb_{train,val}_*.bin``).

A shard is a 1024-byte header of 256 little-endian int32 (magic 20240520, version 1, token
count, the rest unused) followed by ``count`` little-endian uint16 tokens, and nothing else.
The baseline trusts that layout; we check all of it, because a truncated or padded shard
silently changes the validation set and with it the score. Every problem is reported as a
one-line :class:`DataFormatError` naming the file, so that the CLIs can show it without a
traceback.

Arrays come back as native ``uint16`` (the on-disk dtype). Callers that need signed ids
(torch embedding lookups, ``int64`` targets) convert themselves; keeping uint16 halves the
memory of a 100M-token shard and matches what the baseline reads.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from harness.errors import DataFormatError, UsageError

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
TOKEN_BYTES = 2
MAX_TOKEN_ID = 65535
TRAIN_GLOB = "fineweb_train_*.bin"
VAL_GLOB = "fineweb_val_*.bin"


def _fail(path: Path | str, problem: str) -> DataFormatError:
    """One-line error naming the file; newlines in odd paths would break the one-line promise."""
    where = str(path).replace("\n", "\\n")
    return DataFormatError(f"token shard {where}: {problem}")


def read_shard_header(path: Path) -> int:
    """Validate a shard's header and size and return its token count.

    Split out of :func:`read_shard` so that callers can check a whole glob (or size a
    preallocated buffer) without reading any tokens.
    """
    try:
        file_size = path.stat().st_size
        with open(path, "rb") as handle:
            raw = handle.read(HEADER_BYTES)
    except OSError as error:
        raise _fail(path, f"unreadable ({error.strerror or error})") from None
    if len(raw) < HEADER_BYTES:
        raise _fail(path, f"header too short: file has {len(raw)} bytes, a header needs {HEADER_BYTES}")
    header = np.frombuffer(raw, dtype="<i4", count=HEADER_INTS)
    magic, version, count = int(header[0]), int(header[1]), int(header[2])
    if magic != SHARD_MAGIC:
        raise _fail(path, f"bad magic {magic}, expected {SHARD_MAGIC} (not a challenge token shard)")
    if version != SHARD_VERSION:
        raise _fail(path, f"bad version {version}, expected {SHARD_VERSION}")
    if count < 0:
        raise _fail(path, f"negative token count {count} in header")
    expected = HEADER_BYTES + TOKEN_BYTES * count
    if file_size < expected:
        raise _fail(
            path,
            f"truncated: header says {count} tokens ({expected} bytes) but the file has {file_size} bytes",
        )
    if file_size > expected:
        raise _fail(
            path,
            f"oversized: {file_size - expected} trailing bytes after {count} tokens "
            f"(expected {expected} bytes, file has {file_size})",
        )
    return count


def _read_tokens_into(path: Path, count: int, out: np.ndarray) -> None:
    """Fill ``out`` (uint16, length ``count``) straight from the file, avoiding a second copy."""
    try:
        with open(path, "rb") as handle:
            handle.seek(HEADER_BYTES)
            got = handle.readinto(out.data.cast("B"))
    except OSError as error:
        raise _fail(path, f"unreadable ({error.strerror or error})") from None
    if got != count * TOKEN_BYTES:
        raise _fail(path, f"truncated while reading: got {got} of {count * TOKEN_BYTES} token bytes")
    if not np.little_endian:  # the file is little-endian; ``out`` is native uint16
        out.byteswap(inplace=True)


def read_shard(path: Path) -> np.ndarray:
    """Return the tokens of one shard as a native uint16 array, after validating it."""
    path = Path(path)
    count = read_shard_header(path)
    tokens = np.empty(count, dtype=np.uint16)
    _read_tokens_into(path, count, tokens)
    return tokens


def write_shard(path: Path, tokens: np.ndarray | Sequence[int]) -> None:
    """Write tokens in the challenge layout; refuses ids a uint16 cannot hold."""
    path = Path(path)
    array = np.asarray(tokens)
    if array.ndim != 1:
        raise DataFormatError(f"cannot write {path}: tokens must be one-dimensional, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise DataFormatError(f"cannot write {path}: tokens must be integers, got dtype {array.dtype}")
    if array.size:
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > MAX_TOKEN_ID:
            raise DataFormatError(
                f"cannot write {path}: token ids must be in [0, {MAX_TOKEN_ID}], got range [{low}, {high}]"
            )
    if array.size > np.iinfo(np.int32).max:
        raise DataFormatError(f"cannot write {path}: {array.size} tokens do not fit an int32 count")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = SHARD_MAGIC, SHARD_VERSION, array.size
    with open(path, "wb") as handle:
        handle.write(header.tobytes())
        handle.write(array.astype("<u2", copy=False).tobytes())


def find_shards(pattern: str | Path) -> list[Path]:
    """Expand a shard glob in the baseline's order (plain string sort of the matched names)."""
    matches = sorted(glob.glob(str(pattern)))
    if not matches:
        raise DataFormatError(f"no token shards match {pattern}")
    return [Path(match) for match in matches]


def load_tokens(pattern: str | Path) -> np.ndarray:
    """All shards of a glob, concatenated in sorted order, as one uint16 array.

    Every header is validated before any token is read, so a bad last shard fails fast
    instead of after gigabytes of reading.
    """
    files = find_shards(pattern)
    counts = [read_shard_header(path) for path in files]
    tokens = np.empty(sum(counts), dtype=np.uint16)
    start = 0
    for path, count in zip(files, counts):
        _read_tokens_into(path, count, tokens[start : start + count])
        start += count
    return tokens


def usable_validation_length(total_tokens: int, seq_len: int) -> int:
    """How many validation tokens the baseline keeps: whole sequences plus one extra target.

    ``((N - 1) // seq_len) * seq_len + 1``: every kept token except the last is an input,
    every one except the first is a target, so the scored targets fill whole sequences.
    """
    if seq_len <= 0:
        raise UsageError(f"sequence length must be positive, got {seq_len}")
    usable = ((total_tokens - 1) // seq_len) * seq_len
    if usable <= 0:
        raise DataFormatError(
            f"validation split too short: {total_tokens} tokens, need at least {seq_len + 1} for seq_len {seq_len}"
        )
    return usable + 1


def load_validation_tokens(pattern: str | Path, seq_len: int) -> np.ndarray:
    """Validation tokens exactly as the baseline scores them (uint16; callers convert).

    The truncation drops the ragged tail that would not fill a final sequence, so the
    token and byte counts here are the ones the challenge's ``val_bpb`` is computed over.
    """
    tokens = load_tokens(pattern)
    return tokens[: usable_validation_length(tokens.size, seq_len)]


def train_pattern(data_dir: Path | str) -> str:
    """Glob of the training shards inside a challenge data directory."""
    return str(Path(data_dir) / TRAIN_GLOB)


def val_pattern(data_dir: Path | str) -> str:
    """Glob of the validation shards inside a challenge data directory."""
    return str(Path(data_dir) / VAL_GLOB)
