"""``golf-check --pull-requests``: run the backlog audit with a progress bar and print its report.

Why a progress bar: a cold backlog of two thousand pull requests takes many minutes, and a
reviewer must see that it moves and how long is left. It goes to stderr, only on a terminal and
never with ``--format json`` (whose stdout a script reads), so reports stay byte-identical.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import harness
from harness.check.context import CheckOptions
from harness.check.runner import ReviewFilters
from harness.cli.common import write_output
from harness.errors import EXIT_BAD_INPUT, EXIT_FINDINGS, EXIT_OK, UsageError
from harness.findings import Verdict
from harness.pull_requests.backlog import Progress, audit_backlog
from harness.pull_requests.git_objects import repository_root
from harness.pull_requests.rows import backlog_report
from harness.report.backlog import BacklogReport, render_json, render_markdown, render_text

if TYPE_CHECKING:
    from rich.progress import TaskID

BACKLOG_FORMATS = ("text", "json", "markdown", "html")


class BarProgress(Progress):
    """rich's progress bar on stderr: the phase, a bar, done/total and the time left."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> BarProgress:
        self._bar.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._bar.stop()

    def start(self, phase: str, total: int) -> None:
        if self._task is not None:
            self._bar.remove_task(self._task)
        self._task = self._bar.add_task(phase, total=total)

    def advance(self) -> None:
        if self._task is not None:
            self._bar.advance(self._task)


def run_backlog(
    start: Path,
    ref_glob: str,
    options: CheckOptions,
    filters: ReviewFilters,
    *,
    output_format: str,
    output: Path | None,
    order: str,
    jobs: int,
    use_cache: bool,
) -> int:
    if output_format not in BACKLOG_FORMATS:
        raise UsageError(f"--pull-requests prints {', '.join(BACKLOG_FORMATS)}, not {output_format}")
    repo = repository_root(start)
    if output_format != "json" and sys.stderr.isatty():
        with BarProgress() as bar:
            backlog = audit_backlog(repo, ref_glob, options, jobs=jobs, use_cache=use_cache, progress=bar)
    else:
        backlog = audit_backlog(repo, ref_glob, options, jobs=jobs, use_cache=use_cache)
    report = backlog_report(backlog, filters, harness.__version__, order)
    write_output(render(report, output_format, to_terminal=output is None), output)
    verdicts = [row.verdict for row in report.rows]
    if Verdict.FAIL in verdicts:
        return EXIT_FINDINGS
    return EXIT_BAD_INPUT if Verdict.ERROR in verdicts else EXIT_OK


def render(report: BacklogReport, output_format: str, to_terminal: bool) -> str:
    if output_format == "json":
        return render_json(report)
    if output_format == "markdown":
        return render_markdown(report)
    if output_format == "html":
        from harness.report.html_backlog import render as render_html

        return render_html(report)
    color = to_terminal and sys.stdout.isatty() and "NO_COLOR" not in os.environ
    width = shutil.get_terminal_size((160, 24)).columns if color else 160
    return render_text(report, color=color, width=width)
