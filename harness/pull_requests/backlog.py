"""``golf-check --pull-requests``: every pull request's changed submission folders, audited
once per content.

Why this shape: a backlog is mostly the same code resubmitted and forked, so work is keyed by
content. Each changed folder is named by its path and its git tree ID (the package checks read
the track from the path, so the same tree under another path is another unit); a unit is
audited once per run, and across runs a tree whose fingerprint is known and whose result is in
the check cache is served without writing a file. Only units that need an analysis are written
(``materialize.py``) and handed to the ordinary runner in one batch, so the worker pool stays
busy. A pull request that cannot be read (broken ref, missing history) or a folder of binary
files only is a row saying so; nothing stops the backlog.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from harness import catalog
from harness.check.cache import CheckCache, default_cache_dir, submission_fingerprint
from harness.check.context import CheckOptions
from harness.check.pkg.submission_json import SubmissionJsonUnreadable, load_submission_json
from harness.check.runner import RawResult, audit_submissions
from harness.findings import Finding
from harness.pull_requests.git_objects import MissingObject, ObjectReader
from harness.pull_requests.materialize import Indexed, TreeIndex, write_tree
from harness.pull_requests.selection import PullRequest, Selector, default_branch, list_refs


@dataclass
class BacklogEntry:
    """One row before the reviewer's filters: a pull request and one folder it changes (none
    when it changes no submission folder or could not be read)."""

    pull: PullRequest
    folder: str = ""
    tree: str = ""
    claimed_bpb: float | None = None
    raw: RawResult | None = None


@dataclass
class BacklogStats:
    pull_requests: int = 0
    folders: int = 0  # (pull request, folder) pairs
    unique_folders: int = 0  # distinct (path, tree ID) units: each is audited once
    analyzed: int = 0  # units analyzed afresh in this run
    from_cache: int = 0  # units served by the check cache


@dataclass
class Backlog:
    base: str
    entries: list[BacklogEntry] = field(default_factory=list)
    stats: BacklogStats = field(default_factory=BacklogStats)


class Progress:
    """What the command line shows while the backlog runs; the default shows nothing."""

    def start(self, phase: str, total: int) -> None:
        """A new phase of ``total`` steps begins."""

    def advance(self) -> None:
        """One step of the current phase is done (may be called from the pool's thread)."""


def audit_backlog(
    repo: Path,
    ref_glob: str,
    options: CheckOptions,
    *,
    jobs: int = 2,
    use_cache: bool = True,
    cache_dir: Path | None = None,
    base: str | None = None,
    progress: Progress | None = None,
) -> Backlog:
    """Read every matching pull request against the default branch (or ``base``) and audit the
    folders they change."""
    shown = progress or Progress()
    cache_root = (cache_dir or default_cache_dir()) if use_cache else None
    with ObjectReader(repo) as objects:
        selector = Selector(repo, objects, base or default_branch(repo))
        refs = list_refs(repo, ref_glob)
        shown.start("reading pull requests", len(refs))
        backlog = Backlog(base=selector.base)
        for ref, oid in refs:
            pull = selector.read(ref, oid)
            backlog.entries += [BacklogEntry(pull, folder.path, folder.tree) for folder in pull.folders] or [
                BacklogEntry(pull)
            ]
            shown.advance()
        units = sorted({(entry.folder, entry.tree) for entry in backlog.entries if entry.tree})
        claims = {tree: _claimed_bpb(objects, tree) for _folder, tree in units}
        results = _audit_units(objects, units, options, jobs, cache_root, shown, backlog.stats)
    for entry in backlog.entries:
        if entry.tree:
            entry.claimed_bpb = claims[entry.tree]
            entry.raw = RawResult(entry.folder, *results[(entry.folder, entry.tree)])
    backlog.stats.pull_requests = len(refs)
    backlog.stats.folders = sum(1 for entry in backlog.entries if entry.tree)
    backlog.stats.unique_folders = len(units)
    return backlog


Unit = tuple[str, str]  # (folder path, tree ID): the package checks read the folder's place too
Outcome = tuple[list[Finding], dict[str, str]]


def _audit_units(
    objects: ObjectReader,
    units: list[Unit],
    options: CheckOptions,
    jobs: int,
    cache_root: Path | None,
    progress: Progress,
    stats: BacklogStats,
) -> dict[Unit, Outcome]:
    """Findings and excerpt sources per unit: from the index and cache, else written and
    audited in one batch."""
    index = TreeIndex(cache_root)
    cache = CheckCache(cache_root, options, catalog.load_catalog().content_hash) if cache_root else None
    progress.start("auditing folders", len(units))
    results: dict[Unit, Outcome] = {}
    pending: list[Unit] = []
    for unit in units:
        known = index.get(*unit)
        if known is not None and known.binary_only:
            results[unit] = ([_binary_only()], {})
        elif known is not None and cache is not None:
            hit = cache.get(cache.key_for_fingerprint(known.fingerprint))
            if hit is not None:
                results[unit] = hit
                stats.from_cache += 1
        if unit in results:
            progress.advance()
        else:
            pending.append(unit)
    if pending:
        results.update(_write_and_audit(objects, pending, options, jobs, cache_root, index, progress, stats))
    return results


def _write_and_audit(
    objects: ObjectReader,
    units: list[Unit],
    options: CheckOptions,
    jobs: int,
    cache_root: Path | None,
    index: TreeIndex,
    progress: Progress,
    stats: BacklogStats,
) -> dict[Unit, Outcome]:
    results: dict[Unit, Outcome] = {}
    with tempfile.TemporaryDirectory(prefix="golf-check-backlog-") as scratch:
        folders: dict[Unit, Path] = {}
        for number, unit in enumerate(units):
            # at its own path below a private root, as in a checkout (the track is read from it)
            folder = Path(scratch, str(number), *unit[0].split("/"))
            try:
                written = write_tree(objects, unit[1], folder)
            except MissingObject as exc:
                results[unit] = ([_pg000(f"the folder's objects are missing from the repository ({exc})")], {})
                progress.advance()
                continue
            index.put(*unit, Indexed(submission_fingerprint(folder), written.binary_only))
            if written.binary_only or not written.files:
                results[unit] = ([_binary_only() if written.files else _pg000("the folder holds no file")], {})
                progress.advance()
            else:
                folders[unit] = folder
        audited = audit_submissions(
            list(folders.values()),
            options,
            jobs=jobs,
            cache_dir=cache_root,
            use_cache=cache_root is not None,
            on_result=progress.advance,
        )
    for unit, raw in zip(folders, audited):
        results[unit] = (raw.findings, raw.sources_text)
        stats.from_cache += raw.from_cache
        stats.analyzed += not raw.from_cache
    return results


def _pg000(message: str) -> Finding:
    return catalog.finding("PG000", "", 0, f"could not analyze: {message}")


def _binary_only() -> Finding:
    return _pg000("the folder holds binary files only; there is no code, README or log to audit")


def _claimed_bpb(objects: ObjectReader, tree: str) -> float | None:
    """``val_bpb`` as ``submission.json`` claims it, read from the blob; None when absent or
    unreadable (the audit itself reports why)."""
    entry = objects.entry(tree, "submission.json")
    if entry is None or not entry.mode.startswith("100"):
        return None
    try:
        text = objects.read(entry.oid, "blob").decode("utf-8", errors="replace")
        claim = load_submission_json(text).claim("val_bpb")
    except (MissingObject, SubmissionJsonUnreadable, RecursionError):
        return None
    return claim.value if claim is not None else None
