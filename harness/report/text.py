"""The terminal report (default format): what a reviewer reads first.

Why this layout: for each submission the verdict comes first, then each finding with the rule,
where it is, the sink line itself (quoted from the analyzed source — for a shim, the decoded
text) and the numbered source→sink path, so the claim can be checked against the code without
opening an editor; a summary table closes the report. rich is imported here only, so commands
that print another format never pay for it.
"""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness.findings import Finding, Severity, Verdict
from harness.report.model import CheckReport, SubmissionResult

VERDICT_STYLES = {
    Verdict.PASS: "bold white on green",
    Verdict.REVIEW: "bold black on yellow",
    Verdict.FAIL: "bold white on red",
    Verdict.ERROR: "bold white on magenta",
}
_SEVERITY_STYLES = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
_EXCERPT_LIMIT = 160


def render(report: CheckReport, color: bool = False, width: int = 100) -> str:
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        force_terminal=color,
        no_color=not color,
        color_system="standard" if color else None,
        width=width,
        highlight=False,
        emoji=False,
    )
    for result in report.submissions:
        _print_submission(console, result)
    console.print(_summary_table(report))
    counts = report.verdict_counts()
    console.print(
        Text(
            f"{len(report.submissions)} submission(s): "
            + ", ".join(f"{counts[verdict.value]} {verdict.value}" for verdict in Verdict)
        )
    )
    return buffer.getvalue()


def _print_submission(console: Console, result: SubmissionResult) -> None:
    header = Text()
    header.append(f" {result.verdict.value.upper()} ", style=VERDICT_STYLES[result.verdict])
    header.append(f" {result.path}", style="bold")
    console.print(header)
    if not result.findings and not result.allowlisted:
        console.print(Text("  no findings", style="dim"))
    for finding in result.findings:
        _print_finding(console, result, finding)
    for entry in result.allowlisted:
        line = Text("  allowlisted ", style="dim")
        line.append(f"{entry.finding.rule} ({entry.finding.severity.value}) ")
        line.append(_location(entry.finding))
        line.append(f": {entry.finding.message} [reason: {entry.reason}]")
        console.print(line)
    console.print()


def _print_finding(console: Console, result: SubmissionResult, finding: Finding) -> None:
    head = Text("  ")
    head.append(finding.rule, style="bold")
    head.append(" ")
    head.append(finding.severity.value, style=_SEVERITY_STYLES[finding.severity])
    head.append(f" {_location(finding)}", style="underline")
    console.print(head)
    console.print(Text(f"    {finding.message}"))
    excerpt = result.source_line(finding.file, finding.line)
    if excerpt is not None:
        quoted = Text(f"    {finding.line:>5} │ ", style="dim")
        quoted.append(_clip(excerpt))
        console.print(quoted)
    for number, step in enumerate(finding.path, start=1):
        where = f"{step.file}:{step.line}" if step.line > 0 else step.file
        step_text = Text(f"    {number:>2}. ", style="dim")
        step_text.append(where, style="underline")
        step_text.append(f"  {step.note}")
        console.print(step_text)


def _location(finding: Finding) -> str:
    if not finding.file:
        return "(submission)"
    return f"{finding.file}:{finding.line}" if finding.line > 0 else finding.file


def _clip(line: str) -> str:
    stripped = line.rstrip()
    if len(stripped) <= _EXCERPT_LIMIT:
        return stripped
    return stripped[: _EXCERPT_LIMIT - 1] + "…"


def _summary_table(report: CheckReport) -> Table:
    table = Table(title="golf-check summary", title_justify="left")
    table.add_column("submission")
    table.add_column("verdict")
    table.add_column("errors", justify="right")
    table.add_column("warnings", justify="right")
    table.add_column("info", justify="right")
    for result in report.submissions:
        table.add_row(
            Text(result.path),
            Text(result.verdict.value, style=VERDICT_STYLES[result.verdict]),
            str(result.count(Severity.ERROR)),
            str(result.count(Severity.WARNING)),
            str(result.count(Severity.INFO)),
        )
    return table
