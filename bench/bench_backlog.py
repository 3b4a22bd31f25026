"""Backlog audit speed: ``golf-check --pull-requests`` on a repository built from the wild corpus.

Why a built repository: the goal is stated per pull request (≤ 1 s each cold on 2 cores, the
whole backlog warm in ≤ 30 s), so the bench makes a clone-like repository with one pull ref per
folder of the wild set (``/work/shared/corpus/wild.tsv``, folders unpacked under
``/tmp/golf-corpus/wild/``): a base commit on ``main`` and, per folder, a commit off it adding
the folder at its path in the challenge repository, stored as ``refs/pull/<k>/head`` (k the
folder's row in the index; a pull request that added several folders gets one ref per folder).
It is written with one ``git fast-import``. Then it times a cold backlog (empty cache) and a
warm one (the same cache) and prints the figures with their ratios to the goals; it asserts
nothing, and prints the machine's load, since other work on a shared machine slows it.

    python bench/bench_backlog.py [--folders N] [--jobs 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.check.context import CheckOptions
from harness.check.runner import ReviewFilters
from harness.pull_requests.backlog import audit_backlog
from harness.pull_requests.rows import backlog_report

INDEX = Path("/work/shared/corpus/wild.tsv")
CORPUS = Path("/tmp/golf-corpus/wild")
COLD_GOAL_S = 1.0  # per pull request, 2 cores
WARM_GOAL_S = 30.0  # the whole backlog (about 2,000 pull requests)
_WHO = b"bench <bench@example.invalid> 0 +0000"


def _data(payload: bytes) -> bytes:
    return b"data %d\n%s\n" % (len(payload), payload)


def _folder_files(folder: Path) -> list[tuple[str, bytes, bool]]:
    """(relative path, content, is a link) of every file below ``folder``."""
    files = []
    for directory, subfolders, names in os.walk(folder, followlinks=False):
        subfolders.sort()
        for name in sorted(names):
            path = Path(directory) / name
            relative = path.relative_to(folder).as_posix()
            if path.is_symlink():
                files.append((relative, os.readlink(path).encode(), True))
            elif path.is_file():
                files.append((relative, path.read_bytes(), False))
    return files


def build_repository(repo: Path, limit: int | None) -> int:
    """The repository; returns the number of pull refs written."""
    with INDEX.open(encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle, delimiter="\t") if (CORPUS / row["folder"]).is_dir()]
    rows = rows[:limit] if limit else rows
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    process = subprocess.Popen(["git", "-C", str(repo), "fast-import", "--quiet"], stdin=subprocess.PIPE)
    assert process.stdin is not None
    stream = process.stdin
    stream.write(b"commit refs/heads/main\nmark :1\ncommitter " + _WHO + b"\n" + _data(b"base"))
    stream.write(b"M 644 inline README.md\n" + _data(b"# Parameter Golf (bench)\n"))
    for number, row in enumerate(rows, start=1):
        stream.write(b"commit refs/pull/%d/head\ncommitter %s\n" % (number, _WHO))
        stream.write(_data(f"PR #{row['pull_request']}: {row['folder']}".encode()) + b"from :1\n")
        for relative, content, link in _folder_files(CORPUS / row["folder"]):
            mode = b"120000" if link else b"644"
            path = f"{row['path_in_repository']}/{relative}".encode()
            stream.write(b"M %s inline %s\n" % (mode, path) + _data(content))
    stream.close()
    if process.wait() != 0:
        raise SystemExit("git fast-import failed")
    return len(rows)


def _timed(repo: Path, cache: Path, jobs: int) -> tuple[float, dict[str, int]]:
    started = time.perf_counter()
    backlog = audit_backlog(repo, "refs/pull/*/head", CheckOptions(), jobs=jobs, cache_dir=cache)
    report = backlog_report(backlog, ReviewFilters(), "bench", "score")
    return time.perf_counter() - started, report.stats


def _timed_from_disk(repo: Path, limit: int | None, jobs: int) -> float:
    """The same folders audited from the corpus on disk, uncached: the analysis alone, so the
    backlog's own overhead (reading git, writing folders) is the difference."""
    from harness.check.runner import audit_submissions

    with INDEX.open(encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle, delimiter="\t") if (CORPUS / row["folder"]).is_dir()]
    folders = [CORPUS / row["folder"] for row in (rows[:limit] if limit else rows)]
    started = time.perf_counter()
    audit_submissions(folders, CheckOptions(), jobs=jobs, use_cache=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folders", type=int, default=None, metavar="N", help="only the first N folders")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument(
        "--compare", action="store_true", help="also audit the same folders from disk, uncached (the analysis alone)"
    )
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR", help="build (or reuse) the repository here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-backlog-") as scratch:
        repo = args.keep or Path(scratch) / "repo"
        started = time.perf_counter()
        if (repo / ".git").is_dir():
            refs = len(
                subprocess.run(
                    ["git", "-C", str(repo), "for-each-ref", "refs/pull"], capture_output=True, text=True, check=True
                ).stdout.splitlines()
            )
        else:
            refs = build_repository(repo, args.folders)
        print(f"repository: {refs} pull refs, built in {time.perf_counter() - started:.1f} s ({repo})")
        print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
        cache = Path(scratch) / "cache"
        cold, stats = _timed(repo, cache, args.jobs)
        print(
            f"cold: {cold:.1f} s, {cold / refs:.3f} s per pull request (goal ≤ {COLD_GOAL_S:.1f} s: "
            f"{cold / refs / COLD_GOAL_S:.2f}× the goal); {stats}"
        )
        warm, stats = _timed(repo, cache, args.jobs)
        projected = warm / refs * 2000
        print(
            f"warm: {warm:.2f} s, {warm / refs * 1000:.1f} ms per pull request; 2,000 pull requests ≈ "
            f"{projected:.1f} s (goal ≤ {WARM_GOAL_S:.0f} s: {projected / WARM_GOAL_S:.2f}× the goal); {stats}"
        )
        if args.compare:
            alone = _timed_from_disk(repo, args.folders, args.jobs)
            print(
                f"the same folders from disk, uncached: {alone:.1f} s ({alone / refs:.3f} s per folder); "
                f"backlog cold / disk = {cold / alone:.2f}"
            )
        print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
