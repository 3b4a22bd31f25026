"""One evaluation run as report.html draws it, read from its chunk log alone.

Why from the log and not from memory: a reviewer must be able to render a published log
without re-running anything, so the page golf-eval writes and the page ``golf-eval report LOG``
writes come from the same reader. The curves are recomputed from each chunk's exact sums
(``nll_sum`` in ``float.hex``, bytes) with the evaluator's own BPB formula, and the log is
re-verified (chain, order, coverage, fingerprints) so the page says whether the curve can be
trusted. Nothing here imports torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.data.byte_accounting import bits_per_byte
from harness.evaluate.verify import VerifyResult, verify_log


@dataclass(frozen=True)
class ChunkPoint:
    """One scored chunk: where the stream stood after it, its own BPB and the running BPB."""

    index: int
    target_end: int
    chunk_bpb: float
    running_bpb: float


@dataclass
class Run:
    """A chunk log: its verification, its header/summary records and its BPB curve."""

    path: Path
    label: str
    verified: VerifyResult
    header: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] | None = None
    points: list[ChunkPoint] = field(default_factory=list)

    @property
    def ttt(self) -> str:
        return str((self.header.get("config") or {}).get("ttt", "?"))

    @property
    def artifact(self) -> dict[str, Any]:
        artifact = self.header.get("artifact")
        return artifact if isinstance(artifact, dict) else {}


def read_run(path: Path, label: str | None = None) -> Run:
    """Verify and read the log at ``path`` (a missing or unreadable file is a one-line error)."""
    verified = verify_log(path)  # raises DataFormatError for a missing or unreadable log
    run = Run(path=path, label=label or "", verified=verified)
    nll_total, byte_total = 0.0, 0
    for text in path.read_text(encoding="utf-8").splitlines():
        record = _record(text)
        kind = record.get("kind")
        if kind == "header" and not run.header:
            run.header = record
        elif kind == "summary":
            run.summary = record
        elif kind == "chunk":
            try:
                nll, byte_count = float.fromhex(record["nll_sum"]), int(record["bytes"])
                index, target_end = int(record["index"]), int(record["target_end"])
            except (KeyError, TypeError, ValueError):
                continue  # verification already names the malformed line
            nll_total += nll
            byte_total += byte_count
            run.points.append(ChunkPoint(index, target_end, _bpb(nll, byte_count), _bpb(nll_total, byte_total)))
    if not run.label:
        run.label = f"{path.parent.name}/{path.name} (TTT {run.ttt})"
    return run


def _bpb(nll_sum: float, byte_count: int) -> float:
    """A chunk that claims no bytes has no BPB: a gap in the curve (verification names it)."""
    return bits_per_byte(nll_sum, byte_count) if byte_count > 0 else math.nan


def _record(text: str) -> dict[str, Any]:
    try:
        record = json.loads(text)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def distinct_labels(runs: list[Run]) -> None:
    """Give runs with the same label (two logs of one folder name) their full paths instead."""
    labels = [run.label for run in runs]
    for run in runs:
        if labels.count(run.label) > 1:
            run.label = f"{run.path} (TTT {run.ttt})"
