"""``--format json``: the machine-readable report, schema ``golf-check/1``.

Why fixed key order and sorted entries: CI jobs diff and archive this file, so the same input
must give byte-identical output whether results came from the cache or a fresh analysis.
Allowlisted findings stay visible (a reviewer's decision must be auditable) as ``info`` entries
whose message starts with ``allowlisted:`` and carries the reason and the original severity.
"""

from __future__ import annotations

import json

from harness.findings import Finding, Severity
from harness.report.model import REPORT_SCHEMA, AllowlistedFinding, CheckReport, SubmissionResult


def report_dict(report: CheckReport) -> dict:
    return {
        "schema": REPORT_SCHEMA,
        "tool_version": report.tool_version,
        "submissions": [submission_dict(result) for result in report.submissions],
        "summary": {"submissions": len(report.submissions), **report.verdict_counts()},
    }


def render(report: CheckReport) -> str:
    return json.dumps(report_dict(report), indent=2, ensure_ascii=False) + "\n"


def submission_dict(result: SubmissionResult) -> dict:
    findings = [finding.to_json() for finding in result.findings]
    findings.extend(_allowlisted(entry) for entry in result.allowlisted)
    return {"path": result.path, "verdict": result.verdict.value, "findings": findings}


def _allowlisted(entry: AllowlistedFinding) -> dict:
    original = entry.finding
    shown = Finding(
        rule=original.rule,
        severity=Severity.INFO,
        file=original.file,
        line=original.line,
        message=(f"allowlisted ({original.severity.value}): {original.message} [reason: {entry.reason}]"),
        path=original.path,
    )
    return shown.to_json()
