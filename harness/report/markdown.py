"""``--format markdown``: a pull-request comment or job summary.

Why the escaping: finding messages quote code and file names, which must not turn into
Markdown/HTML (a ``|`` would break the table, ``<details>`` would swallow the rest of the
comment, ``@name`` would ping people). Paths sit in collapsible blocks so a comment with many
findings stays readable.
"""

from __future__ import annotations

from harness.findings import Finding, Severity, Verdict
from harness.report.model import CheckReport, SubmissionResult

_BADGES = {
    Verdict.PASS: "✅ pass",
    Verdict.REVIEW: "🟡 review",
    Verdict.FAIL: "❌ fail",
    Verdict.ERROR: "⚠️ error",
}
_MARKDOWN_SPECIAL = set("\\`*_[]|~")


def escape(text: str) -> str:
    """Plain text safe inside Markdown (and a table cell): emphasis, link, code and table
    characters backslash-escaped, HTML metacharacters as entities, newlines as ``<br>``,
    mentions defused."""
    out = []
    for char in text:
        if char == "<":
            out.append("&lt;")
        elif char == ">":
            out.append("&gt;")
        elif char == "&":
            out.append("&amp;")
        elif char == "\n":
            out.append("<br>")
        elif char == "\r":
            continue
        elif char == "@":
            out.append("@\u200b")  # a zero-width space keeps ``@name`` from pinging anyone
        elif char in _MARKDOWN_SPECIAL:
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)


def code_span(text: str) -> str:
    """Inline code that survives backticks and pipes in the content."""
    cleaned = text.replace("\n", " ").replace("|", "\\|")
    longest = 0
    run = 0
    for char in cleaned:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    padding = " " if cleaned.startswith("`") or cleaned.endswith("`") else ""
    return f"{fence}{padding}{cleaned}{padding}{fence}"


def render(report: CheckReport) -> str:
    counts = report.verdict_counts()
    lines = [
        "## golf-check report",
        "",
        f"{len(report.submissions)} submission(s): "
        + ", ".join(f"{_BADGES[verdict]} {counts[verdict.value]}" for verdict in Verdict),
        "",
        "| Submission | Verdict | Errors | Warnings | Info |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for result in report.submissions:
        lines.append(
            f"| {code_span(result.path)} | {_BADGES[result.verdict]} | "
            f"{result.count(Severity.ERROR)} | {result.count(Severity.WARNING)} | "
            f"{result.count(Severity.INFO)} |"
        )
    for result in report.submissions:
        lines.extend(_submission_section(result))
    lines.extend(["", f"<sub>golf-check {escape(report.tool_version)}</sub>", ""])
    return "\n".join(lines)


def _submission_section(result: SubmissionResult) -> list[str]:
    lines = ["", f"### {_BADGES[result.verdict]}: {code_span(result.path)}", ""]
    if not result.findings and not result.allowlisted:
        lines.append("No findings.")
        return lines
    if result.findings:
        lines.extend(["| Rule | Severity | Location | Message |", "| --- | --- | --- | --- |"])
        for finding in result.findings:
            lines.append(
                f"| {finding.rule} | {finding.severity.value} | "
                f"{code_span(_location(finding))} | {escape(finding.message)} |"
            )
        for finding in result.findings:
            if finding.path:
                lines.extend(_path_block(finding))
    if result.allowlisted:
        lines.extend(["", "Allowlisted by the reviewer:", ""])
        for entry in result.allowlisted:
            finding = entry.finding
            lines.append(
                f"- {finding.rule} ({finding.severity.value}) at "
                f"{code_span(_location(finding))}: {escape(finding.message)} "
                f"— reason: {escape(entry.reason)}"
            )
    return lines


def _location(finding: Finding) -> str:
    if not finding.file:
        return "(submission)"
    return f"{finding.file}:{finding.line}" if finding.line > 0 else finding.file


def _path_block(finding: Finding) -> list[str]:
    lines = [
        "",
        "<details><summary>"
        f"{finding.rule} at {escape(_location(finding))}: source→sink path "
        f"({len(finding.path)} steps)</summary>",
        "",
    ]
    for number, step in enumerate(finding.path, start=1):
        where = f"{step.file}:{step.line}" if step.line > 0 else step.file
        lines.append(f"{number}. {code_span(where)} {escape(step.note)}")
    lines.extend(["", "</details>"])
    return lines
