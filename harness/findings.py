"""Core result types shared by golf-check, golf-eval and every report format.

A ``Finding`` is the unit a reviewer acts on: which rule, where, why, and — for data-flow
rules — the numbered path from the validation source to the sink, so the claim can be
checked by reading the code rather than trusting the tool.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"error": 2, "warning": 1, "info": 0}[self.value]


class Verdict(str, Enum):
    PASS = "pass"
    REVIEW = "review"  # warnings only
    FAIL = "fail"  # at least one error finding
    ERROR = "error"  # could not analyze (PG000) and nothing failed


@dataclass(frozen=True)
class Step:
    """One hop of a source→sink path. ``file`` is the submission-relative display name."""

    file: str
    line: int
    note: str

    def to_json(self) -> dict:
        return {"file": self.file, "line": self.line, "note": self.note}


@dataclass(frozen=True)
class Finding:
    """A rule violation (or note) at a place in a submission.

    ``file``/``line`` point at the sink (the place a reviewer should look first); for code in
    a decoded self-extracting shim ``file`` names the decoded source, e.g.
    ``train_gpt.py[decoded#1]``, and ``message`` says so.
    """

    rule: str
    severity: Severity
    file: str
    line: int
    message: str
    path: tuple[Step, ...] = field(default_factory=tuple)

    def to_json(self) -> dict:
        return {
            "rule": self.rule,
            "severity": self.severity.value,
            "file": self.file,
            "line": self.line,
            "message": self.message,
            "path": [step.to_json() for step in self.path],
        }


def verdict_for(findings: list[Finding], fail_on_warning: bool = False) -> Verdict:
    """Fail beats could-not-analyze beats review: an error finding is decisive even when part of
    the submission could not be read, while an unreadable submission must never look clean."""
    if any(f.severity is Severity.ERROR and f.rule != "PG000" for f in findings):
        return Verdict.FAIL
    if any(f.rule == "PG000" and f.severity is Severity.ERROR for f in findings):
        return Verdict.ERROR
    if any(f.severity is Severity.WARNING for f in findings):
        return Verdict.FAIL if fail_on_warning else Verdict.REVIEW
    return Verdict.PASS


def unique_findings(findings: list[Finding]) -> list[Finding]:
    """Drop exact repeats (same rule, place and message), keeping first-seen order: two
    analyses reaching the same conclusion must not count twice in a verdict or a report."""
    seen: set[tuple[str, str, int, str]] = set()
    unique = []
    for finding in findings:
        key = (finding.rule, finding.file, finding.line, finding.message)
        if key not in seen:
            seen.add(key)
            unique.append(finding)
    return unique
