"""What every rule family's ``check(ctx)`` receives: the loaded submission, its parsed sources,
the options, and what earlier families found (``findings_so_far``: the package checks compare
the submission's claims with it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.findings import Finding
from harness.submission import Submission

if TYPE_CHECKING:  # libcst is only needed once something is parsed, not for a cached re-run
    from harness.check.parse import ParsedSource


@dataclass
class CheckOptions:
    """Reviewer-side options that change what some checks compute (never set by a submission)."""

    frontier: Path | None = None  # per-seed val_loss of the prior record, for PG405
    record_track: bool = True  # apply record-track limits (time, seeds)


@dataclass
class CheckContext:
    submission: Submission
    parsed: list[ParsedSource] = field(default_factory=list)
    options: CheckOptions = field(default_factory=CheckOptions)
    findings_so_far: list[Finding] = field(default_factory=list)
