"""``golf-check --format html``: the static audit as one self-contained page.

Why it reads like the terminal report: a reviewer who switches formats must find the same
verdicts, findings, locations and paths in the same order (the shared ``report.model`` decides
them); the page adds what a terminal cannot show well — the code around every step of a
source→sink path, highlighted, and the catalog's page of every rule cited, linked from each
finding.
"""

from __future__ import annotations

from harness.findings import Severity, Verdict
from harness.report.html import (
    FindingView,
    Libraries,
    VerdictView,
    finding_views,
    load_libraries,
    location,
    render_page,
    rule_views,
)
from harness.report.model import CheckReport, SubmissionResult

_VERDICT_CSS = {Verdict.PASS: "pass", Verdict.REVIEW: "review", Verdict.FAIL: "fail", Verdict.ERROR: "error"}


def render(report: CheckReport) -> str:
    libraries = load_libraries()
    submissions = [_submission(libraries, result) for result in report.submissions]
    cited = [finding.rule for result in report.submissions for finding in result.findings]
    counts = report.verdict_counts()
    return render_page(
        libraries,
        "check.html.j2",
        title="golf-check report",
        tool_version=report.tool_version,
        summary=", ".join(f"{counts[verdict.value]} {verdict.value}" for verdict in Verdict),
        submissions=submissions,
        rules=rule_views(libraries, cited),
    )


def _submission(libraries: Libraries, result: SubmissionResult) -> dict[str, object]:
    findings: list[FindingView] = finding_views(
        libraries,
        (finding.to_json() for finding in result.findings),
        result.sources_text_by_display_name.get,
    )
    allowlisted = [
        f"{entry.finding.rule} ({entry.finding.severity.value}) at "
        f"{location(entry.finding.file, entry.finding.line)}: {entry.finding.message} — reason: {entry.reason}"
        for entry in result.allowlisted
    ]
    return {
        "path": result.path,
        "verdict": VerdictView(_VERDICT_CSS[result.verdict], result.verdict.value.upper(), _reasons(result)),
        "counts": {severity.value: result.count(severity) for severity in Severity},
        "findings": findings,
        "allowlisted": allowlisted,
    }


def _reasons(result: SubmissionResult) -> list[str]:
    """Why the verdict: the most severe findings (errors, else warnings), or that there were none."""
    for severity in (Severity.ERROR, Severity.WARNING):
        reasons = [
            f"{finding.rule} {severity.value} at {location(finding.file, finding.line)}: {finding.message}"
            for finding in result.findings
            if finding.severity is severity
        ]
        if reasons:
            return reasons
    return ["no finding of severity error or warning"]
