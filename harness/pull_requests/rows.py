"""A backlog's entries as report rows, after the reviewer's filters.

Why here: the filters (``--select``, ``--ignore``, the allowlist, ``--fail-on``) and verdicts are
the runner's ``finalize``, applied to each (pull request, folder) on its own, so a row's verdict
is exactly what ``golf-check`` on that folder would say; rows without a folder get their reason.
"""

from __future__ import annotations

from harness.check.runner import ReviewFilters, finalize
from harness.findings import Verdict
from harness.pull_requests.backlog import Backlog
from harness.report.backlog import NO_SUBMISSION, BacklogReport, BacklogRow, sort_rows


def backlog_report(backlog: Backlog, filters: ReviewFilters, tool_version: str, order: str) -> BacklogReport:
    rows: list[BacklogRow] = []
    for entry in backlog.entries:
        pull = entry.pull
        if entry.raw is not None:
            result = finalize([entry.raw], filters, tool_version).submissions[0]
            row = BacklogRow(
                pull.number, pull.ref, pull.commit, entry.folder, entry.claimed_bpb, result.verdict, result
            )
        elif pull.problem:
            row = BacklogRow(pull.number, pull.ref, pull.commit, verdict=Verdict.ERROR, note=pull.problem)
        else:
            row = BacklogRow(pull.number, pull.ref, pull.commit, note=NO_SUBMISSION)
        rows.append(row)
    stats = backlog.stats
    return BacklogReport(
        rows=sort_rows(rows, order),
        tool_version=tool_version,
        base=backlog.base,
        stats={
            "pull_requests": stats.pull_requests,
            "folders": stats.folders,
            "unique_folders": stats.unique_folders,
            "analyzed": stats.analyzed,
            "from_cache": stats.from_cache,
        },
    )
