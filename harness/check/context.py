"""What every rule family receives: the loaded submission and its parsed sources.

A rule family is a module under ``harness/check/`` exposing
``check(ctx: CheckContext) -> list[Finding]``; ``harness/check/engine.py`` lists them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.check.parse import ParsedSource
from harness.submission import Submission


@dataclass
class CheckContext:
    submission: Submission
    parsed: list[ParsedSource] = field(default_factory=list)
