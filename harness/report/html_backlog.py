"""``golf-check --pull-requests --format html``: the backlog as one self-contained page.

Why a page of its own on the shared frame: the backlog is a table of rows, not a list of
submissions, but a reviewer must meet the same verdict badges and, for every error rule the
table cites, the catalog's rule page (``html.rule_views``), linked from the row.
"""

from __future__ import annotations

from harness.findings import Verdict
from harness.report.backlog import BacklogReport
from harness.report.html import load_libraries, render_page, rule_views

_VERDICT_CSS = {Verdict.PASS: "pass", Verdict.REVIEW: "review", Verdict.FAIL: "fail", Verdict.ERROR: "error"}


def render(report: BacklogReport) -> str:
    libraries = load_libraries()
    rows = [
        {
            "number": f"#{row.number}" if row.number is not None else row.ref,
            "ref": row.ref,
            "commit": row.commit[:12],
            "folder": row.folder,
            "claimed": "" if row.claimed_bpb is None else f"{row.claimed_bpb:g}",
            "verdict": row.verdict.value.upper() if row.verdict is not None else "—",
            "css": _VERDICT_CSS[row.verdict] if row.verdict is not None else "",
            "rules": row.error_rules,
            "message": row.message,
        }
        for row in report.rows
    ]
    cited = [rule for row in report.rows for rule in row.error_rules]
    return render_page(
        libraries,
        "backlog.html.j2",
        title="golf-check backlog",
        tool_version=report.tool_version,
        summary=report.summary_line(),
        base=report.base[:12],
        rows=rows,
        rules=rule_views(libraries, cited),
    )
