"""What every report format renders: one result per audited submission.

Why a shared model: the five formats (terminal, JSON, SARIF, Markdown, GitHub annotations) must
agree on verdicts, ordering and locations, so the decisions are made once here — findings are
sorted deterministically (stable output for the same input, cached or not), allowlisted
findings are kept apart with the reviewer's reason, and locations inside decoded shim sources
are mapped back to the file that exists on disk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from harness.findings import Finding, Severity, Verdict

REPORT_SCHEMA = "golf-check/1"
_DECODED_SUFFIX = re.compile(r"(\[decoded#\d+\])+$")


@dataclass(frozen=True)
class AllowlistedFinding:
    """A finding a reviewer accepted in an allowlist file, with the reason they gave."""

    finding: Finding
    reason: str


@dataclass
class SubmissionResult:
    """The audit of one submission.

    ``path`` is the submission as the user named it (a folder or a single ``.py`` file,
    relative to the working directory when possible); finding files are relative to
    ``base_dir``. ``sources_text_by_display_name`` holds the text of the sources that have
    findings, for code excerpts.
    """

    path: str
    verdict: Verdict
    findings: list[Finding]
    sources_text_by_display_name: dict[str, str] = field(default_factory=dict)
    allowlisted: list[AllowlistedFinding] = field(default_factory=list)
    root: str | None = None  # overrides base_dir, e.g. the repository for diff-level findings

    def __post_init__(self) -> None:
        self.findings = sorted(self.findings, key=finding_sort_key)
        self.allowlisted = sorted(self.allowlisted, key=lambda a: finding_sort_key(a.finding))

    @property
    def base_dir(self) -> str:
        """The folder that finding file names are relative to."""
        if self.root is not None:
            return self.root
        if self.path.endswith(".py"):
            parent = str(PurePosixPath(self.path).parent)
            return "" if parent == "." else parent
        return self.path

    def count(self, severity: Severity) -> int:
        return sum(1 for finding in self.findings if finding.severity is severity)

    def disk_path(self, display_name: str) -> str:
        """Working-directory-relative path of the on-disk file behind a display name
        (``train_gpt.py[decoded#1]`` lives in ``train_gpt.py``); the submission itself when the
        finding names no file."""
        if not display_name:
            return self.path if self.root is None else (self.root or ".")
        on_disk = _DECODED_SUFFIX.sub("", display_name)
        single_file = self.root is None and self.path.endswith(".py")
        if single_file and PurePosixPath(self.path).name == on_disk:
            return self.path
        if not self.base_dir:
            return on_disk
        return str(PurePosixPath(self.base_dir) / on_disk)

    def source_line(self, display_name: str, line: int) -> str | None:
        """The text of one line of a source, for excerpts; None when unknown."""
        text = self.sources_text_by_display_name.get(display_name)
        if text is None or line < 1:
            return None
        lines = text.splitlines()
        return lines[line - 1] if line <= len(lines) else None


@dataclass
class CheckReport:
    submissions: list[SubmissionResult]
    tool_version: str

    def __post_init__(self) -> None:
        self.submissions = sorted(self.submissions, key=lambda result: result.path)

    def verdict_counts(self) -> dict[str, int]:
        counts = {verdict.value: 0 for verdict in Verdict}
        for result in self.submissions:
            counts[result.verdict.value] += 1
        return counts


def is_decoded(display_name: str) -> bool:
    return bool(_DECODED_SUFFIX.search(display_name))


def finding_sort_key(finding: Finding) -> tuple[str, int, str, str]:
    return (finding.file, finding.line, finding.rule, finding.message)


SEVERITY_ORDER = (Severity.ERROR, Severity.WARNING, Severity.INFO)
