"""The backlog report of ``golf-check --pull-requests``: one row per pull request and folder.

Why rows and not the per-submission report: a reviewer taking over a backlog wants one table to
sort and filter — "the best claimed scores that fail" at a glance — so each row carries the pull
request, the folder, the ``val_bpb`` its ``submission.json`` claims, the verdict, the error rules
and the first finding's message. Each audited row keeps its whole ``SubmissionResult``, so the
JSON is the ``golf-check/1`` report of those submissions plus the ref and commit of each; pull
requests with no folder to audit (none changed, a broken ref, missing history) are rows too.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

from harness.findings import Finding, Severity, Verdict
from harness.report.json_report import submission_dict
from harness.report.markdown import code_span, escape
from harness.report.model import REPORT_SCHEMA, SubmissionResult

SORTS = ("score", "pr", "verdict")
_VERDICT_ORDER = {Verdict.FAIL: 0, Verdict.ERROR: 1, Verdict.REVIEW: 2, Verdict.PASS: 3, None: 4}
NO_SUBMISSION = "changes no submission folder (records/<track>/<name>/)"


@dataclass(frozen=True)
class BacklogRow:
    number: int | None
    ref: str
    commit: str
    folder: str = ""  # empty: the pull request has no folder to audit
    claimed_bpb: float | None = None
    verdict: Verdict | None = None  # None: nothing to audit (no submission folder changed)
    result: SubmissionResult | None = None
    note: str = ""  # why there is no result

    @property
    def error_rules(self) -> list[str]:
        findings = self.result.findings if self.result else []
        return sorted({finding.rule for finding in findings if finding.severity is Severity.ERROR})

    @property
    def first_finding(self) -> Finding | None:
        """The finding that explains the verdict: the first of the most severe."""
        findings = self.result.findings if self.result else []
        for severity in (Severity.ERROR, Severity.WARNING, Severity.INFO):
            first = next((finding for finding in findings if finding.severity is severity), None)
            if first is not None:
                return first
        return None

    @property
    def message(self) -> str:
        first = self.first_finding
        return f"{first.rule}: {first.message}" if first is not None else self.note


@dataclass
class BacklogReport:
    rows: list[BacklogRow]
    tool_version: str
    base: str  # the default branch's commit the pull requests were compared with
    stats: dict[str, int] = field(default_factory=dict)

    def verdict_counts(self) -> dict[str, int]:
        counts = {verdict.value: 0 for verdict in Verdict}
        for row in self.rows:
            if row.verdict is not None:
                counts[row.verdict.value] += 1
        return counts

    def summary_line(self) -> str:
        counts = self.verdict_counts()
        pulls = len({row.ref for row in self.rows})
        verdicts = ", ".join(f"{counts[verdict.value]} {verdict.value}" for verdict in Verdict)
        quiet = sum(1 for row in self.rows if row.verdict is None)
        return (
            f"{pulls} pull request(s), {len(self.rows) - quiet} folder row(s): {verdicts}; {quiet} without a submission"
        )


def sort_rows(rows: list[BacklogRow], order: str) -> list[BacklogRow]:
    """``score``: best (lowest) claimed val_bpb first, unclaimed last; ``pr``: by number;
    ``verdict``: fail, error, review, pass, then rows without a submission, each by score."""

    def by_score(row: BacklogRow) -> tuple[bool, float, int, str, str]:
        claimed = row.claimed_bpb
        return (claimed is None, claimed or 0.0, row.number if row.number is not None else -1, row.ref, row.folder)

    if order == "pr":
        return sorted(rows, key=lambda row: (row.number is None, row.number or 0, row.ref, row.folder))
    if order == "verdict":
        return sorted(rows, key=lambda row: (_VERDICT_ORDER[row.verdict], by_score(row)))
    return sorted(rows, key=by_score)


def _claimed(row: BacklogRow) -> str:
    return "" if row.claimed_bpb is None else f"{row.claimed_bpb:g}"


def _number(row: BacklogRow) -> str:
    return f"#{row.number}" if row.number is not None else row.ref


def render_json(report: BacklogReport) -> str:
    submissions, others = [], []
    for row in report.rows:
        place = {"pull_request": row.number, "ref": row.ref, "commit": row.commit}
        if row.result is not None:
            submissions.append({**submission_dict(row.result), **place, "claimed_val_bpb": row.claimed_bpb})
        else:
            verdict = row.verdict.value if row.verdict is not None else None
            others.append({**place, "path": row.folder, "verdict": verdict, "message": row.note})
    data = {
        "schema": REPORT_SCHEMA,
        "tool_version": report.tool_version,
        "base": report.base,
        "submissions": submissions,
        "pull_requests_without_submission": others,
        "summary": {"submissions": len(submissions), **report.verdict_counts(), **report.stats},
    }
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def render_markdown(report: BacklogReport) -> str:
    lines = [
        "## golf-check backlog",
        "",
        escape(report.summary_line()),
        "",
        "| PR | Folder | Claimed val_bpb | Verdict | Error rules | First finding |",
        "| ---: | --- | ---: | --- | --- | --- |",
    ]
    for row in report.rows:
        verdict = row.verdict.value if row.verdict is not None else "—"
        folder = code_span(row.folder) if row.folder else ""
        lines.append(
            f"| {escape(_number(row))} | {folder} | {_claimed(row)} | {verdict} | "
            f"{', '.join(row.error_rules)} | {escape(row.message)} |"
        )
    lines.extend(["", f"<sub>golf-check {escape(report.tool_version)}</sub>", ""])
    return "\n".join(lines)


def render_text(report: BacklogReport, color: bool = False, width: int = 160) -> str:
    """A rich table; rich is imported here only, as in the per-submission terminal report."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from harness.report.text import VERDICT_STYLES

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=color, no_color=not color, width=width, highlight=False, emoji=False)
    table = Table(title="golf-check backlog", title_justify="left")
    table.add_column("PR", justify="right")
    table.add_column("folder")
    table.add_column("claimed val_bpb", justify="right")
    table.add_column("verdict")
    table.add_column("error rules")
    table.add_column("first finding", overflow="fold")
    for row in report.rows:
        verdict = Text(row.verdict.value, style=VERDICT_STYLES[row.verdict]) if row.verdict is not None else Text("—")
        table.add_row(
            _number(row), Text(row.folder), _claimed(row), verdict, ", ".join(row.error_rules), Text(row.message)
        )
    console.print(table)
    console.print(Text(report.summary_line()))
    return buffer.getvalue()
