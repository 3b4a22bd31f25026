"""``--format sarif``: SARIF 2.1.0 for GitHub code scanning and other SARIF viewers.

Why these choices: results point at files that exist in the repository (a finding in a decoded
shim source is placed on the shim file, with the decoded line named in the message and in
``properties``), URIs are relative to ``%SRCROOT%`` so the file is portable between a CI
checkout and a laptop, source→sink paths become ``codeFlows`` that viewers step through, and
reviewer-allowlisted findings are kept as results with an external suppression so the decision
stays visible.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from urllib.parse import quote

from harness.catalog import Rule
from harness.findings import Finding, Severity, Step
from harness.report.model import CheckReport, SubmissionResult, is_decoded
from harness.report.rule_page import rule_page_markdown, rule_page_text

SARIF_SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
SRCROOT = "%SRCROOT%"
_LEVELS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def render(report: CheckReport, rules: list[Rule]) -> str:
    return json.dumps(sarif_dict(report, rules), indent=2, ensure_ascii=False) + "\n"


def sarif_dict(report: CheckReport, rules: list[Rule]) -> dict:
    descriptors = [_rule_descriptor(rule) for rule in rules]
    index_of = {rule.id: position for position, rule in enumerate(rules)}
    results: list[dict] = []
    for submission in report.submissions:
        for finding in submission.findings:
            results.append(_result(submission, finding, index_of, descriptors, None))
        for entry in submission.allowlisted:
            results.append(_result(submission, entry.finding, index_of, descriptors, entry.reason))
    return {
        "$schema": SARIF_SCHEMA_URI,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "golf-check",
                        "version": report.tool_version,
                        "semanticVersion": report.tool_version,
                        "rules": descriptors,
                    }
                },
                "originalUriBaseIds": {SRCROOT: {"description": {"text": "The directory golf-check ran in."}}},
                "results": results,
                "properties": {
                    "submissions": [
                        {"path": result.path, "verdict": result.verdict.value} for result in report.submissions
                    ]
                },
            }
        ],
    }


def _rule_descriptor(rule: Rule) -> dict:
    return {
        "id": rule.id,
        "name": rule.name,
        "shortDescription": {"text": rule.title},
        "fullDescription": {"text": rule.flags},
        "help": {"text": rule_page_text(rule), "markdown": rule_page_markdown(rule)},
        "helpUri": rule.help_uri,
        "defaultConfiguration": {"level": _LEVELS[rule.severity]},
        "properties": {"tags": ["parameter-golf", *rule.checks], "sources": list(rule.sources)},
    }


def _result(
    submission: SubmissionResult,
    finding: Finding,
    index_of: dict[str, int],
    descriptors: list[dict],
    allowlist_reason: str | None,
) -> dict:
    if finding.rule not in index_of:
        # A rule that reports findings but has no catalog entry yet still gets a descriptor,
        # so ruleIndex stays valid.
        index_of[finding.rule] = len(descriptors)
        descriptors.append({"id": finding.rule})
    message = finding.message
    if is_decoded(finding.file) and finding.line > 0:
        message += f" (line {finding.line} of the decoded source {finding.file})"
    result: dict = {
        "ruleId": finding.rule,
        "ruleIndex": index_of[finding.rule],
        "level": _LEVELS[finding.severity],
        "message": {"text": message},
        "locations": [_location(submission, finding.file, finding.line, None)],
        "properties": {"submission": submission.path, "verdict": submission.verdict.value},
    }
    if is_decoded(finding.file):
        result["properties"]["decodedSource"] = finding.file
        result["properties"]["decodedLine"] = finding.line
    if finding.path:
        result["codeFlows"] = [_code_flow(submission, finding.path)]
    if allowlist_reason is not None:
        result["suppressions"] = [{"kind": "external", "justification": allowlist_reason}]
    return result


def _code_flow(submission: SubmissionResult, steps: tuple[Step, ...]) -> dict:
    locations = []
    for number, step in enumerate(steps, start=1):
        note = step.note
        if is_decoded(step.file) and step.line > 0:
            note += f" ({step.file}:{step.line})"
        locations.append(
            {
                "location": _location(submission, step.file, step.line, f"{number}. {note}"),
                "executionOrder": number,
            }
        )
    return {"threadFlows": [{"locations": locations}]}


def _location(submission: SubmissionResult, display_name: str, line: int, message: str | None) -> dict:
    disk_path = submission.disk_path(display_name)
    physical: dict = {"artifactLocation": _artifact(disk_path)}
    if line > 0 and not is_decoded(display_name):
        physical["region"] = {"startLine": line}
    location: dict = {"physicalLocation": physical}
    if message is not None:
        location["message"] = {"text": message}
    return location


def _artifact(disk_path: str) -> dict:
    posix = PurePosixPath(disk_path)
    if posix.is_absolute():
        return {"uri": "file://" + quote(str(posix), safe="/")}
    return {"uri": quote(str(posix), safe="/"), "uriBaseId": SRCROOT}
