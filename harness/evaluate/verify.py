"""Re-check an audit log without re-running anything: chain, order, coverage, fingerprints, BPB.

Why every check names a line: a reviewer acting on a failed verification needs to know which
line was edited, dropped, moved or repeated, not just that "something" is off. The log's head
hash (SHA-256 of its last line) is also reported so it can be compared with the value published
in ``report.json`` — the chain alone cannot protect the final line from a careful forger.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import DataFormatError
from harness.evaluate.log import GENESIS_HASH, LOG_SCHEMA, RunningTotals, line_hash, read_float


@dataclass
class VerifyResult:
    ok: bool
    errors: list[str] = field(default_factory=list)
    complete: bool = False
    val_bpb: float | None = None
    val_loss: float | None = None
    tokens: int = 0
    bytes: int = 0
    chunks: int = 0
    head_sha256: str = GENESIS_HASH
    runtime_findings: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "complete": self.complete,
            "errors": list(self.errors),
            "val_bpb": self.val_bpb,
            "val_loss": self.val_loss,
            "tokens": self.tokens,
            "bytes": self.bytes,
            "chunks": self.chunks,
            "head_sha256": self.head_sha256,
        }


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise DataFormatError(f"{path}: audit log not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{path}: audit log unreadable ({exc})") from exc
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def verify_log(path: Path, expected_head: str | None = None) -> VerifyResult:
    """Check the log at ``path``; ``ok`` is true only if no check failed."""
    lines = _read_lines(path)
    result = VerifyResult(ok=False)
    errors = result.errors
    if not lines:
        errors.append("log is empty")
        return result
    records: list[tuple[int, dict[str, Any]]] = []
    previous_hash = GENESIS_HASH
    for number, text in enumerate(lines, start=1):
        try:
            record = json.loads(text)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except ValueError:
            errors.append(f"line {number}: not a valid JSON record")
            previous_hash = line_hash(text)
            continue
        if record.get("prev") != previous_hash:
            errors.append(
                f"line {number}: hash chain broken (prev does not match the SHA-256 of line {number - 1})"
                if number > 1
                else "line 1: hash chain broken (the first line must start from the genesis hash)"
            )
        previous_hash = line_hash(text)
        records.append((number, record))
    result.head_sha256 = previous_hash
    if expected_head is not None and expected_head != previous_hash:
        errors.append(f"log head {previous_hash[:16]}… differs from the published {expected_head[:16]}…")
    _check_structure(records, result)
    result.ok = not errors
    return result


def _check_structure(records: list[tuple[int, dict[str, Any]]], result: VerifyResult) -> None:
    errors = result.errors
    if not records or records[0][1].get("kind") != "header":
        errors.append("line 1: the log does not start with a header line")
        return
    header = records[0][1]
    if header.get("schema") != LOG_SCHEMA:
        errors.append(f"line 1: unknown log schema {header.get('schema')!r} (expected {LOG_SCHEMA})")
    summary_number, last = records[-1]
    summary = last if last.get("kind") == "summary" else None
    if summary is None:
        errors.append("log has no summary line at the end (truncated, or the run did not finish)")
    chunk_records = records[1:-1] if summary is not None else records[1:]
    adapter = header.get("config", {}).get("ttt", "none")
    totals = RunningTotals()
    expected_index = 0
    seen: set[int] = set()
    target_cursor = 0
    previous_after_score = header.get("fingerprint_start")
    for number, record in chunk_records:
        kind = record.get("kind")
        if kind != "chunk":
            errors.append(f"line {number}: unexpected {kind!r} line in the middle of the log")
            continue
        try:
            index = int(record["index"])
            start, end = int(record["target_start"]), int(record["target_end"])
            targets, byte_count = int(record["targets"]), int(record["bytes"])
            nll_sum = float.fromhex(record["nll_sum"])
            running_bpb = read_float(record["running_bpb"])
            fp_prev, fp_before, fp_after = (
                record["fp_after_prev_adapt"],
                record["fp_before_score"],
                record["fp_after_score"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            errors.append(f"line {number}: chunk line is missing or has a malformed field ({exc})")
            continue
        if index in seen:
            errors.append(f"line {number}: chunk {index} appears more than once")
        elif index != expected_index:
            errors.append(f"line {number}: chunk {index} is out of order (expected chunk {expected_index})")
        seen.add(index)
        expected_index = index + 1
        if start > target_cursor:
            errors.append(
                f"line {number}: chunk {index} starts at target {start} but scoring had reached "
                f"{target_cursor}: targets [{target_cursor}, {start}) were never scored"
            )
        elif start < target_cursor:
            errors.append(
                f"line {number}: chunk {index} starts at target {start}: targets "
                f"[{start}, {target_cursor}) are scored twice"
            )
        if end - start != targets or targets <= 0:
            errors.append(f"line {number}: chunk {index} claims {targets} targets for range [{start}, {end})")
        target_cursor = max(target_cursor, end)
        if fp_before != fp_after:
            errors.append(f"line {number}: chunk {index}: model state changed while it was being scored")
        if fp_prev != fp_before:
            errors.append(f"line {number}: chunk {index}: model state changed between adaptation and scoring")
        if adapter == "none" and fp_prev != previous_after_score:
            errors.append(f"line {number}: chunk {index}: model state changed although no adapter ran")
        if index == 0 and fp_prev != header.get("fingerprint_start"):
            errors.append(f"line {number}: chunk 0 does not start from the header's fingerprint")
        previous_after_score = fp_after
        totals.add(nll_sum, targets, byte_count)
        if running_bpb != totals.bpb and not (running_bpb != running_bpb and totals.bpb != totals.bpb):
            errors.append(f"line {number}: chunk {index}: running_bpb does not match the logged sums")
    result.chunks = len(seen)
    result.tokens, result.bytes = totals.targets, totals.bytes
    result.val_bpb, result.val_loss = totals.bpb, totals.loss
    scope = int(header.get("scope_targets", -1))
    stopped_early = summary is not None and summary.get("stopped") is not None
    if target_cursor != scope and not stopped_early:
        errors.append(f"chunks cover targets [0, {target_cursor}) but the header plans [0, {scope})")
    if summary is None:
        return
    _check_summary(summary_number, summary, header, totals, previous_after_score, adapter, result)
    result.complete = target_cursor == scope == header.get("total_targets") and summary.get("stopped") is None


def _check_summary(
    number: int,
    summary: dict[str, Any],
    header: dict[str, Any],
    totals: RunningTotals,
    last_fingerprint: str | None,
    adapter: str,
    result: VerifyResult,
) -> None:
    errors = result.errors
    result.runtime_findings = list(summary.get("findings", []))
    try:
        logged = (
            float.fromhex(summary["nll_sum"]),
            int(summary["targets"]),
            int(summary["bytes"]),
            read_float(summary["val_bpb"]),
            read_float(summary["val_loss"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        errors.append(f"line {number}: summary line is missing or has a malformed field ({exc})")
        return
    recomputed = (totals.nll_sum, totals.targets, totals.bytes, totals.bpb, totals.loss)
    for name, seen, expected in zip(("nll_sum", "targets", "bytes", "val_bpb", "val_loss"), logged, recomputed):
        if seen != expected and not (seen != seen and expected != expected):  # NaN == NaN here
            errors.append(f"line {number}: summary {name} {seen!r} does not match the chunk lines ({expected!r})")
    if summary.get("chunks") != result.chunks:
        errors.append(f"line {number}: summary counts {summary.get('chunks')!r} chunks but the log has {result.chunks}")
    if summary.get("stopped") is None and summary.get("fingerprint_end") != last_fingerprint:
        errors.append(f"line {number}: final fingerprint differs from the last chunk's (state changed after scoring)")
    if adapter == "none" and summary.get("state_sha256_end") != header.get("state_sha256_start"):
        errors.append(f"line {number}: model state SHA-256 changed although no adapter ran")
