"""``--format github``: GitHub Actions workflow commands, shown as annotations on the diff.

Why the escaping: a workflow command is one line ``::error file=…,line=…,title=…::message``;
GitHub decodes ``%25``, ``%0D``, ``%0A`` in the message, and additionally ``%3A`` and ``%2C``
in property values, where a raw ``:`` or ``,`` would end the value early. Without it a crafted
file name or message could forge extra annotations or commands.
"""

from __future__ import annotations

from harness.findings import Finding, Severity, Verdict
from harness.report.model import CheckReport, SubmissionResult, is_decoded

_COMMANDS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render(report: CheckReport) -> str:
    lines: list[str] = []
    for result in report.submissions:
        for finding in result.findings:
            lines.append(_annotation(result, finding, _COMMANDS[finding.severity], None))
        for entry in result.allowlisted:
            lines.append(_annotation(result, entry.finding, "notice", entry.reason))
        if result.verdict in (Verdict.FAIL, Verdict.ERROR, Verdict.REVIEW):
            lines.append(
                _command(
                    "notice",
                    {"title": "golf-check"},
                    f"{result.path}: verdict {result.verdict.value}",
                )
            )
    counts = report.verdict_counts()
    summary = ", ".join(f"{counts[verdict.value]} {verdict.value}" for verdict in Verdict)
    lines.append(_command("notice", {"title": "golf-check"}, f"{len(report.submissions)} audited: {summary}"))
    return "\n".join(lines) + "\n"


def _annotation(result: SubmissionResult, finding: Finding, command: str, allowlist_reason: str | None) -> str:
    properties = {"file": result.disk_path(finding.file)}
    decoded = is_decoded(finding.file)
    if finding.line > 0 and not decoded:
        properties["line"] = str(finding.line)
    properties["title"] = f"{finding.rule} ({finding.severity.value})"
    message = finding.message
    if decoded and finding.line > 0:
        message += f" (line {finding.line} of the decoded source {finding.file})"
    if allowlist_reason is not None:
        message = f"allowlisted: {message} [reason: {allowlist_reason}]"
    if finding.path:
        steps = [f"{number}. {step.file}:{step.line} {step.note}" for number, step in enumerate(finding.path, start=1)]
        message += "\nPath:\n" + "\n".join(steps)
    return _command(command, properties, message)


def _command(command: str, properties: dict[str, str], message: str) -> str:
    rendered = ",".join(f"{key}={escape_property(value)}" for key, value in properties.items())
    return f"::{command} {rendered}::{escape_data(message)}"
