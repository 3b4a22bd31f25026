"""The audit log: one JSON line per event, hash-chained, flushed and fsynced as it is written.

Why this shape: a reviewer must be able to re-check an evaluation without re-running it. Every
line carries the SHA-256 of the previous line (``prev``), so editing, deleting, reordering or
duplicating any line breaks the chain at a precise place; the NLL sums are written exactly
(``float.hex``) so the final BPB can be recomputed bit for bit from the chunk lines alone.
Each chunk line is on disk (fsync) before adaptation on that chunk starts.

Lines (JSON objects, keys sorted, each with ``prev``):
- ``header``: schema, tool version, artifact/tokenizer/val-shard SHA-256, config, seed, torch
  version, device, world size, ``total_targets`` and the ``scope_targets`` this run plans to
  score, ``fingerprint_start`` and ``state_sha256_start``;
- ``chunk``: index, ``[target_start, target_end)`` (target t is token t+1), windows, targets,
  bytes, ``nll_sum`` (``float.hex``), ``running_bpb``, ``fp_after_prev_adapt`` (state after the
  previous chunk's adaptation; the start state for chunk 0), ``fp_before_score``,
  ``fp_after_score``, wall time;
- ``summary``: totals (``nll_sum`` as hex), ``val_loss``, ``val_bpb``, ``fingerprint_end``,
  ``state_sha256_end``, ``stopped`` (why the run ended early, or null), runtime findings.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import IO, Any

from harness.data.byte_accounting import bits_per_byte

LOG_SCHEMA = "golf-eval-log/1"
GENESIS_HASH = "0" * 64


def encode_line(record: dict[str, Any]) -> str:
    """Canonical text of a record: sorted keys, no spaces (what the next line's hash covers)."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=False)


def line_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def mean_loss(nll_sum: float, targets: int) -> float:
    return nll_sum / targets if targets > 0 else float("nan")


def json_float(value: float) -> float | None:
    """JSON has no NaN: an undefined ratio (no bytes yet) is written as null."""
    return None if value != value else value


def read_float(value: object) -> float:
    """Inverse of ``json_float``; raises TypeError/ValueError on anything else."""
    if value is None:
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class AuditLogWriter:
    """Appends chained lines to a new log file; only the main rank creates one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: IO[str] = open(path, "w", encoding="utf-8")
        self.head = GENESIS_HASH
        self.lines = 0

    def write(self, record: dict[str, Any]) -> str:
        """Write one record (``prev`` is filled in) and make it durable; returns its hash."""
        text = encode_line({**record, "prev": self.head})
        self._handle.write(text + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self.head = line_hash(text)
        self.lines += 1
        return self.head

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()

    def __enter__(self) -> AuditLogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RunningTotals:
    """Float64 sums accumulated in chunk order — the same order ``verify`` replays."""

    def __init__(self) -> None:
        self.nll_sum = 0.0
        self.targets = 0
        self.bytes = 0

    def add(self, nll_sum: float, targets: int, byte_count: int) -> None:
        self.nll_sum += nll_sum
        self.targets += targets
        self.bytes += byte_count

    @property
    def bpb(self) -> float:
        """NaN (null in the log) until a byte is scored: a run stopped by a guard before its first
        chunk has no score yet, and its summary must still be written. An evaluation whose input
        has no bytes at all is refused before it starts (``prepare_inputs``)."""
        return bits_per_byte(self.nll_sum, self.bytes) if self.bytes else float("nan")

    @property
    def loss(self) -> float:
        return mean_loss(self.nll_sum, self.targets)
