"""``golf-check``: the static legality audit from the command line.

Why it is thin and lazy: argument handling and printing live here, everything else in
``harness.check``; heavy modules (rich, the report formats, libcst through the engine) are
imported only when the chosen action needs them, so ``--explain`` or a single-file check start
fast. Nothing on this path imports torch.

Exit codes: 0 no submission fails (pass/review), 1 at least one fails, 3 none fails but at
least one could not be analyzed, 2 usage or internal error, 6 ``--pull-requests`` outside a git
repository.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import harness
from harness.cli.common import (
    OneLineArgumentParser,
    exit_now,
    parse_rule_patterns,
    run_cli,
    write_output,
)
from harness.errors import EXIT_BAD_INPUT, EXIT_FINDINGS, EXIT_OK, HarnessError, UsageError
from harness.findings import Verdict
from harness.gate import select_changed

if TYPE_CHECKING:
    from harness.check.context import CheckOptions
    from harness.check.runner import RawResult, ReviewFilters
    from harness.report.model import CheckReport

PROGRAM = "golf-check"
FORMATS = ("text", "json", "sarif", "markdown", "github", "html")
_PATTERN = re.compile(r"PG\d{0,3}")


def build_parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(
        prog=PROGRAM,
        description="Audit Parameter Golf submissions for illegal use of validation data, without running their code.",
    )
    parser.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="submission folder, single .py file, or a tree of submissions (each folder "
        "with a README, submission.json, a log or Python code is one)",
    )
    parser.add_argument("--format", choices=FORMATS, default="text")
    parser.add_argument(
        "--output", type=Path, metavar="FILE", help="write the report to FILE (replaced atomically) instead of stdout"
    )
    parser.add_argument(
        "--select", metavar="RULES", help="only these rules (comma-separated IDs or prefixes, e.g. PG1,PG201)"
    )
    parser.add_argument("--ignore", metavar="RULES", help="drop these rules (PG000 is always kept)")
    parser.add_argument(
        "--fail-on", choices=("error", "warning"), default="error", help="'warning' makes a review verdict fail too"
    )
    parser.add_argument(
        "--allowlist", type=Path, metavar="FILE", help="reviewer allowlist (TOML or JSON; see harness/allowlist.py)"
    )
    parser.add_argument("--explain", metavar="PGxxx", help="print one rule's page and exit")
    parser.add_argument("--list-rules", action="store_true", help="list the rules and exit")
    parser.add_argument("--no-cache", action="store_true", help="analyze everything afresh")
    parser.add_argument(
        "--jobs", type=int, default=2, metavar="N", help="worker processes for many submissions (default 2)"
    )
    parser.add_argument(
        "--changed", metavar="BASE...HEAD", help="audit only the submission folders this git diff touches"
    )
    parser.add_argument(
        "--pull-requests",
        nargs="?",
        const="refs/pull/*/head",
        metavar="REF_GLOB",
        help="audit every pull request of this clone (refs matching REF_GLOB, default refs/pull/*/head): "
        "the submission folders each changes against its merge base with the default branch",
    )
    parser.add_argument(
        "--sort",
        choices=("score", "pr", "verdict"),
        default="score",
        help="--pull-requests row order: best claimed val_bpb first (default), PR number, or verdict",
    )
    parser.add_argument(
        "--frontier",
        type=Path,
        metavar="FILE",
        help="per-seed val_loss of the prior record, for the significance check",
    )
    parser.add_argument("--version", action="version", version=f"{PROGRAM} {harness.__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_cli(PROGRAM, lambda: _run(sys.argv[1:] if argv is None else argv))


def entry() -> NoReturn:
    """The ``golf-check`` console script: ``main``, then a prompt exit (see ``exit_now``).

    The cyclic GC is paused for the whole of a one-shot run: importing libcst builds hundreds
    of classes, and collections over them cost a measurable share of a single audit while
    freeing nothing (analysis pauses it anyway; pool workers turn it back on between audits)."""
    gc.disable()
    exit_now(main())


def _run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.list_rules:
        from harness.catalog import all_rules
        from harness.report.rule_page import rules_table_text

        write_output(rules_table_text(all_rules()), args.output)
        return EXIT_OK
    if args.explain:
        from harness.catalog import rule
        from harness.report.rule_page import rule_page_text

        write_output(rule_page_text(rule(args.explain)), args.output)
        return EXIT_OK
    if args.format == "html":
        from harness.report.html import require_extra

        require_extra()  # before the audit: a missing extra is one line, not minutes of wasted work
    select = _checked_patterns("--select", args.select)
    ignore = _checked_patterns("--ignore", args.ignore)
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if args.changed and args.paths:
        raise UsageError("give either PATH… or --changed, not both")
    if args.pull_requests and (args.changed or args.paths):
        raise UsageError("--pull-requests audits the clone's pull refs: give no PATH… or --changed with it")
    if not args.changed and not args.paths and not args.pull_requests:
        raise UsageError("no PATH given (see --help)")
    if args.frontier is not None and not args.frontier.is_file():
        raise UsageError(f"--frontier {args.frontier}: no such file")
    allowlist = None
    if args.allowlist is not None:
        from harness.allowlist import load_allowlist

        allowlist = load_allowlist(args.allowlist)

    from harness.check.context import CheckOptions
    from harness.check.runner import ReviewFilters, audit, finalize

    options = CheckOptions(frontier=args.frontier)
    filters = ReviewFilters(
        select=select, ignore=ignore, allowlist=allowlist, fail_on_warning=args.fail_on == "warning"
    )
    if args.pull_requests:
        return _run_backlog(args, options, filters)
    if args.changed:
        raw_results = _audit_changed(args.changed, options, args.jobs, not args.no_cache)
    else:
        missing = [str(path) for path in args.paths if not os.path.lexists(path)]
        if missing:
            raise UsageError(f"no such file or folder: {', '.join(missing)}")
        raw_results = audit(args.paths, options, jobs=args.jobs, use_cache=not args.no_cache)
        if not raw_results:
            raise HarnessError(
                "no submission found (a folder with a README, submission.json, a training log or "
                "Python code, or a .py file) under " + ", ".join(str(path) for path in args.paths)
            )
    report = finalize(raw_results, filters, harness.__version__)
    write_output(_render(report, args.format, to_terminal=args.output is None), args.output)
    return _exit_code([result.verdict for result in report.submissions])


def _run_backlog(args: argparse.Namespace, options: CheckOptions, filters: ReviewFilters) -> int:
    """``--pull-requests``: one row per pull request and folder (harness/pull_requests/)."""
    from harness.pull_requests.cli import run_backlog

    return run_backlog(
        Path.cwd(),
        args.pull_requests,
        options,
        filters,
        output_format=args.format,
        output=args.output,
        order=args.sort,
        jobs=args.jobs,
        use_cache=not args.no_cache,
    )


def _checked_patterns(option: str, raw: str | None) -> tuple[str, ...]:
    patterns = parse_rule_patterns(raw)
    if not patterns:
        return ()
    bad = [pattern for pattern in patterns if not _PATTERN.fullmatch(pattern)]
    if bad:
        raise UsageError(f"{option}: '{bad[0]}' is not a rule ID or prefix like PG1 or PG101")
    from harness.catalog import load_catalog

    catalog = load_catalog()
    unknown = [p for p in patterns if len(p) == 5 and catalog.get(p) is None]
    if unknown:
        raise UsageError(f"{option}: unknown rule {unknown[0]} (see --list-rules)")
    return patterns


def _audit_changed(diff_range: str, options: CheckOptions, jobs: int, use_cache: bool) -> list[RawResult]:
    """Audit the folders a diff touches, plus the diff-level findings as one more result."""
    from harness.check.runner import RawResult, audit_submissions, display_path

    repo_root = _repository_root(Path.cwd())
    selection = select_changed(repo_root, diff_range)
    raw_results = audit_submissions(list(selection.folders), options, jobs=jobs, use_cache=use_cache)
    raw_results.append(
        RawResult(
            path=f"diff {diff_range}",
            findings=list(selection.findings),
            root="" if display_path(repo_root) == "." else display_path(repo_root),
        )
    )
    return raw_results


def _repository_root(start: Path) -> Path:
    for folder in (start.resolve(), *start.resolve().parents):
        if (folder / ".git").exists():
            return folder
    raise UsageError("--changed must run inside a git checkout")


def _render(report: CheckReport, output_format: str, to_terminal: bool) -> str:
    if output_format == "json":
        from harness.report.json_report import render

        return render(report)
    if output_format == "sarif":
        from harness.catalog import all_rules
        from harness.report.sarif import render as render_sarif

        return render_sarif(report, all_rules())
    if output_format == "markdown":
        from harness.report.markdown import render as render_markdown

        return render_markdown(report)
    if output_format == "html":
        from harness.report.html_check import render as render_html

        return render_html(report)
    if output_format == "github":
        from harness.report.github import render as render_github

        return render_github(report)
    from harness.report.text import render as render_text

    color = to_terminal and sys.stdout.isatty() and "NO_COLOR" not in os.environ
    width = shutil.get_terminal_size((100, 24)).columns if color else 100
    return render_text(report, color=color, width=width)


def _exit_code(verdicts: list[Verdict]) -> int:
    if Verdict.FAIL in verdicts:
        return EXIT_FINDINGS
    if Verdict.ERROR in verdicts:
        return EXIT_BAD_INPUT
    return EXIT_OK


if __name__ == "__main__":
    entry()
