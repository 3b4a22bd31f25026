"""Audit many submissions: discover, then per submission load → analyze, cached and in parallel.

Why here and not in the CLI: the gate, the benchmarks and the tests need the same orchestration.
One submission's failure (unusable input, a crash, a dead worker) is its PG000 finding, the
others are still audited, and a report is never partial. Reviewer filters are applied after the
cache, so changing them needs no re-analysis; they never drop PG000: an unreadable submission
must never look clean.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness import catalog
from harness.allowlist import Allowlist, finding_location
from harness.check.cache import CheckCache, default_cache_dir, finding_from_json
from harness.check.context import CheckOptions
from harness.errors import HarnessError
from harness.findings import Finding, verdict_for
from harness.report.model import AllowlistedFinding, CheckReport, SubmissionResult

DEFAULT_JOBS = 2


@dataclass
class RawResult:  # unfiltered analysis of one submission, as cached
    path: str  # as reports show it
    findings: list[Finding]
    sources_text: dict[str, str] = field(default_factory=dict)
    from_cache: bool = False
    root: str | None = None  # see SubmissionResult.root


@dataclass(frozen=True)
class ReviewFilters:
    select: tuple[str, ...] = ()  # rule IDs or prefixes such as "PG1"; empty: all
    ignore: tuple[str, ...] = ()
    allowlist: Allowlist | None = None
    fail_on_warning: bool = False


def display_path(path: Path) -> str:
    """Working-directory-relative POSIX path when the submission is below it, else absolute."""
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(Path(os.path.abspath(Path.cwd()))).as_posix() or "."
    except ValueError:
        return absolute.as_posix()


def audit(
    paths: list[Path], options: CheckOptions, *, jobs: int = DEFAULT_JOBS, use_cache: bool = True
) -> list[RawResult]:
    from harness.loader import discover_submissions

    return audit_submissions(discover_submissions(paths), options, jobs=jobs, use_cache=use_cache)


def audit_submissions(
    submissions: list[Path],
    options: CheckOptions,
    *,
    jobs: int = DEFAULT_JOBS,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    on_result: Callable[[], None] | None = None,
) -> list[RawResult]:
    """Audit each submission; ``on_result`` is called once per submission as its result is
    known (cached or fresh, from the pool's thread), for a progress bar."""
    done = on_result or (lambda: None)
    cache = None
    if use_cache:
        from harness.catalog import load_catalog

        cache = CheckCache(cache_dir or default_cache_dir(), options, load_catalog().content_hash)
    keys = [cache.key_for(path) for path in submissions] if cache is not None else []
    results: dict[int, RawResult] = {}
    for index, path in enumerate(submissions):
        hit = cache.get(keys[index]) if cache is not None else None
        if hit is not None:
            results[index] = RawResult(display_path(path), *hit, from_cache=True)
            done()
    pending = [index for index in range(len(submissions)) if index not in results]
    for index, (findings_json, sources, cacheable) in _analyze_all(submissions, pending, options, jobs, done):
        findings = [finding_from_json(item) for item in findings_json]
        results[index] = RawResult(display_path(submissions[index]), findings, sources)
        if cache is not None and cacheable:
            cache.put(keys[index], findings, sources)
    return [results[index] for index in range(len(submissions))]


def _analyze_all(
    submissions: list[Path], pending: list[int], options: CheckOptions, jobs: int, done: Callable[[], None]
) -> list[tuple[int, tuple[list[dict], dict[str, str], bool]]]:
    """The ``pending`` submissions in worker processes, or here for one submission (its rule
    families then share the cores instead: forked, trees shared)."""
    if len(pending) <= 1 or jobs <= 1:
        serial = []
        for index in pending:
            serial.append((index, analyze_one(str(submissions[index]), options, parallel=jobs > 1)))
            done()
        return serial
    from concurrent.futures import ProcessPoolExecutor  # imported here: a single audit never needs it
    from concurrent.futures.process import BrokenProcessPool

    _preload_analysis()
    gc.enable()  # workers collect between audits (each audit pauses it for itself)
    outcomes: list[tuple[int, tuple[list[dict], dict[str, str], bool]]] = []
    lost: list[int] = []
    # Largest first, so the last task to finish is a small one and both workers stay busy.
    ordered = sorted(pending, key=lambda index: -_python_bytes(submissions[index]))
    with ProcessPoolExecutor(max_workers=min(jobs, len(pending))) as pool:
        futures = [(index, pool.submit(analyze_one, str(submissions[index]), options)) for index in ordered]
        for _index, future in futures:
            future.add_done_callback(lambda _future: done())
        for index, future in futures:
            try:
                outcomes.append((index, future.result()))
            except BrokenProcessPool:
                lost.append(index)
    # A dead worker takes every unfinished task of its pool down with it: re-run each of those
    # alone, so only the submission that really kills its worker ends as PG000.
    for index in lost:
        try:
            with ProcessPoolExecutor(max_workers=1) as alone:
                outcomes.append((index, alone.submit(analyze_one, str(submissions[index]), options).result()))
        except BrokenProcessPool:
            outcomes.append((index, _pg000("the worker process auditing it died (killed or out of memory)")))
    return outcomes


def _python_bytes(path: Path) -> int:
    """Size of the Python a submission ships: a cheap estimate of its analysis time."""
    try:
        if not path.is_dir():
            return path.stat().st_size
        files = (Path(folder) / name for folder, _, names in os.walk(path, followlinks=False) for name in names)
        return sum(file.stat().st_size for file in files if file.name.endswith(".py") and not file.is_symlink())
    except OSError:
        return 0


def _preload_analysis() -> None:
    """Import the loader, the engine and its rule families before the pool forks, so every
    worker inherits them instead of importing them again."""
    import harness.check.engine  # noqa: F401
    import harness.loader  # noqa: F401


def analyze_one(path: str, options: CheckOptions, parallel: bool = False) -> tuple[list[dict], dict[str, str], bool]:
    """Load and analyze one submission (in a worker process: plain data in and out); returns
    (findings as JSON, excerpt sources, cacheable). Unusable input is a cacheable PG000 finding,
    an unexpected exception one that is not cached, so a fixed harness re-analyzes it."""
    from harness.check.engine import analyze
    from harness.loader import load_submission

    collecting = gc.isenabled()
    gc.disable()  # loading parses with ast and builds large acyclic trees too (see engine.analyze)
    try:
        submission = load_submission(Path(path))
        findings = analyze(submission, options, parallel=parallel)
    except HarnessError as exc:
        return _pg000(str(exc), cacheable=True)
    except RecursionError:
        return _pg000("nesting too deep to analyze")
    except Exception as exc:  # noqa: BLE001 — one submission's crash must not stop the others
        return _pg000(f"internal error: {type(exc).__name__}: {exc}")
    finally:
        if collecting:
            gc.enable()
    wanted = {finding.file for finding in findings}
    wanted.update(step.file for finding in findings for step in finding.path)
    sources = {source.display_name: source.text for source in submission.sources if source.display_name in wanted}
    return [finding.to_json() for finding in findings], sources, True


def _pg000(reason: str, cacheable: bool = False) -> tuple[list[dict], dict[str, str], bool]:
    first_line = reason.strip().splitlines()[0] if reason.strip() else "unknown reason"
    return [catalog.finding("PG000", "", 0, f"could not analyze: {first_line[:300]}").to_json()], {}, cacheable


def finalize(raw_results: list[RawResult], filters: ReviewFilters, tool_version: str) -> CheckReport:
    """Apply the reviewer's filters and allowlist, and decide each verdict."""
    allowlist = filters.allowlist
    submissions: list[SubmissionResult] = []
    for raw in raw_results:
        kept: list[Finding] = []
        allowlisted: list[AllowlistedFinding] = []
        base_dir = SubmissionResult(raw.path, verdict_for([]), [], root=raw.root).base_dir
        for finding in raw.findings:
            selected = not filters.select or finding.rule.startswith(filters.select)
            if finding.rule != "PG000" and (finding.rule.startswith(filters.ignore) or not selected):
                continue
            reason = allowlist.reason_for(finding, finding_location(raw.path, base_dir, finding)) if allowlist else None
            if reason is None:
                kept.append(finding)
            else:
                allowlisted.append(AllowlistedFinding(finding, reason))
        wanted = {finding.file for finding in kept} | {step.file for finding in kept for step in finding.path}
        submissions.append(
            SubmissionResult(
                path=raw.path,
                verdict=verdict_for(kept, fail_on_warning=filters.fail_on_warning),
                findings=kept,
                sources_text_by_display_name={name: text for name, text in raw.sources_text.items() if name in wanted},
                allowlisted=allowlisted,
                root=raw.root,
            )
        )
    return CheckReport(submissions=submissions, tool_version=tool_version)
