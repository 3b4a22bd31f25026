"""golf-check on the challenge's own submissions (``../shared/corpus``): the measure of issue 12.

Real submissions are the ground truth the synthetic fixtures only imitate. This runner audits
each corpus folder exactly as a user would — ``golf-check --format json --no-cache FOLDER`` in a
subprocess — and prints:

- ``labeled``: one line per case (label, verdict, error rules, expected rules, result) and the
  three figures of issue 12: illegal cases caught as ``fail`` with a ruled rule, accepted
  records that ``fail``, and ``error`` verdicts or missing reports;
- ``wild``: verdict counts, every ``error`` verdict with its PG000 message, error findings per
  rule, and the time per folder (median, max) and in all. ``--sample N`` draws a fixed-seed
  sample; each folder's result is printed (and appended to ``--jsonl``) as soon as it is known,
  so a run cut off part-way still tells something.

Usage::

    python bench/corpus_runner.py labeled
    python bench/corpus_runner.py wild --sample 200 --jsonl /tmp/wild.jsonl
    python bench/corpus_runner.py wild --sample 30 --verdict fail --show   # read verdicts by hand

The corpus is unpacked with its own ``unpack`` script into ``$GOLF_CORPUS_DIR`` (default: a
``golf-corpus`` folder in the temp dir); ``--corpus`` points at the packed corpus folder.
Exit code 0 when the labeled figures meet issue 12's goals (or for a wild run that finished),
1 when they do not, 2 when the corpus is absent.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"
GOAL_CAUGHT = 23  # of 24 illegal cases
FOLDER_TIMEOUT_S = 300


@dataclass(frozen=True)
class LabeledCase:
    case_id: str
    label: str  # "legal" or "illegal"
    expect_rules: frozenset[str]
    shape: str


@dataclass
class FolderResult:
    """What one golf-check run over one folder said; ``problem`` is set when it said nothing usable."""

    folder: str
    seconds: float
    exit_code: int
    verdicts: list[str] = field(default_factory=list)
    error_rules: set[str] = field(default_factory=set)
    warning_rules: set[str] = field(default_factory=set)
    pg000_messages: list[str] = field(default_factory=list)
    first_errors: list[str] = field(default_factory=list)  # "PGxxx file:line message" per error finding
    problem: str = ""  # no report, crash, time-out

    @property
    def verdict(self) -> str:
        """The folder's worst verdict (a folder may hold several submissions)."""
        if self.problem:
            return "no-report"
        for verdict in ("error", "fail", "review", "pass"):
            if verdict in self.verdicts:
                return verdict
        return "no-report"

    def as_json(self) -> dict[str, object]:
        return {
            "folder": self.folder,
            "seconds": round(self.seconds, 3),
            "exit_code": self.exit_code,
            "verdict": self.verdict,
            "verdicts": self.verdicts,
            "error_rules": sorted(self.error_rules),
            "warning_rules": sorted(self.warning_rules),
            "pg000": self.pg000_messages,
            "errors": self.first_errors,
            "problem": self.problem,
        }


def unpack(corpus: Path, only: str | None, destination: Path | None = None) -> Path:
    """The unpacked corpus folder (the corpus's own script; idempotent)."""
    command = [sys.executable, str(corpus / "unpack")]
    target = destination or os.environ.get("GOLF_CORPUS_DIR")
    if target:
        command.append(str(target))
    if only:
        command += ["--only", only]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return Path(done.stdout.strip().splitlines()[-1])


def golf_check_command() -> list[str]:
    return [sys.executable, "-m", "harness.cli.check"]


def audit_folder(folder: Path, extra_args: tuple[str, ...] = ()) -> FolderResult:
    """``golf-check --format json --no-cache FOLDER`` as a user runs it; never raises."""
    start = time.perf_counter()
    command = [*golf_check_command(), "--format", "json", "--no-cache", *extra_args, str(folder)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=FOLDER_TIMEOUT_S, cwd=folder.parent)
    except subprocess.TimeoutExpired:
        return FolderResult(
            folder.name, time.perf_counter() - start, -1, problem=f"timed out after {FOLDER_TIMEOUT_S} s"
        )
    result = FolderResult(folder.name, time.perf_counter() - start, done.returncode)
    try:
        report = json.loads(done.stdout)
        submissions = report["submissions"]
    except (json.JSONDecodeError, KeyError, TypeError):
        stderr = done.stderr.strip().splitlines()
        result.problem = f"exit {done.returncode}, no JSON report: " + (stderr[-1] if stderr else "(no message)")
        return result
    if not submissions:
        result.problem = "the report holds no submission"
    for submission in submissions:
        result.verdicts.append(submission["verdict"])
        for finding in submission["findings"]:
            if finding["severity"] == "error":
                result.error_rules.add(finding["rule"])
                result.first_errors.append(
                    f"{finding['rule']} {finding.get('file') or '-'}:{finding.get('line') or 0} {finding['message']}"
                )
                if finding["rule"] == "PG000":
                    result.pg000_messages.append(finding["message"])
            elif finding["severity"] == "warning":
                result.warning_rules.add(finding["rule"])
    return result


def audit_all(folders: list[Path], jobs: int) -> Iterator[FolderResult]:
    """Results in completion order, so progress can be shown as each folder finishes."""
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        yield from pool.map(audit_folder, folders)


def read_labels(corpus: Path) -> list[LabeledCase]:
    with open(corpus / "labeled.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [
        LabeledCase(
            row["case_id"], row["label"], frozenset(r for r in row["expect_rules"].split("|") if r), row["shape"]
        )
        for row in rows
    ]


@dataclass
class LabeledFigures:
    caught: int = 0
    illegal: int = 0
    legal_failing: int = 0
    legal: int = 0
    legal_review: int = 0
    errors: int = 0
    cases: int = 0

    def meets_goals(self) -> bool:
        return self.caught >= min(GOAL_CAUGHT, self.illegal) and self.legal_failing == 0 and self.errors == 0


def judge(case: LabeledCase, result: FolderResult) -> str:
    """One word (an unread file counts as ``ERROR`` whatever else was found): ``caught``, ``wrong-reason``, ``missed``, ``ok``, ``ok-review``, ``FALSE-FAIL``, ``ERROR``."""
    if result.verdict in ("error", "no-report") or "PG000" in result.error_rules:
        return "ERROR"  # a PG000 beside other findings still means part of the code went unread
    if case.label == "illegal":
        if result.verdict != "fail":
            return "missed"
        return "caught" if result.error_rules & case.expect_rules else "wrong-reason"
    if result.verdict == "fail":
        return "FALSE-FAIL"
    return "ok-review" if result.verdict == "review" else "ok"


def labeled_figures(cases: list[LabeledCase], results: dict[str, FolderResult]) -> LabeledFigures:
    figures = LabeledFigures(cases=len(cases))
    for case in cases:
        outcome = judge(case, results[case.case_id])
        figures.errors += outcome == "ERROR"
        if case.label == "illegal":
            figures.illegal += 1
            figures.caught += outcome == "caught"
        else:
            figures.legal += 1
            figures.legal_failing += outcome == "FALSE-FAIL"
            figures.legal_review += outcome == "ok-review"
    return figures


def run_labeled(root: Path, corpus: Path, jobs: int) -> int:
    cases = read_labels(corpus)
    folders = [root / "labeled" / case.case_id for case in cases]
    results: dict[str, FolderResult] = {}
    by_id = {case.case_id: case for case in cases}
    print(f"{'case':<58} {'label':<8} {'verdict':<9} {'error rules':<28} {'expected':<18} result")
    for result in audit_all(folders, jobs):
        results[result.folder] = result
        case = by_id[result.folder]
        rules = ",".join(sorted(result.error_rules)) or "-"
        print(
            f"{case.case_id[:58]:<58} {case.label:<8} {result.verdict:<9} {rules:<28} "
            f"{'|'.join(sorted(case.expect_rules)) or '-':<18} {judge(case, result)}"
            + (f"  ({result.problem})" if result.problem else ""),
            flush=True,
        )
    figures = labeled_figures(cases, results)
    print()
    print(f"illegal caught as fail with a ruled rule: {figures.caught} / {figures.illegal}  (goal >= {GOAL_CAUGHT})")
    print(
        f"accepted records that fail:               {figures.legal_failing} / {figures.legal}  (goal 0); "
        f"review: {figures.legal_review}"
    )
    print(f"error verdicts or no report:              {figures.errors} / {figures.cases}  (goal 0)")
    times = [r.seconds for r in results.values()]
    print(f"time per folder: median {statistics.median(times):.2f} s, max {max(times):.2f} s, all {sum(times):.1f} s")
    return 0 if figures.meets_goals() else 1


def wild_folders(root: Path, sample: int | None, seed: int) -> list[Path]:
    folders = sorted(path for path in (root / "wild").iterdir() if path.is_dir())
    if sample is not None and sample < len(folders):
        folders = sorted(random.Random(seed).sample(folders, sample))
    return folders


def run_wild(root: Path, args: argparse.Namespace) -> int:
    folders = wild_folders(root, args.sample, args.seed)
    verdicts: Counter[str] = Counter()
    rules: Counter[str] = Counter()
    errors: list[FolderResult] = []
    times: list[float] = []
    jsonl = open(args.jsonl, "a") if args.jsonl else None  # noqa: SIM115 - kept open for incremental output
    started = time.perf_counter()
    try:
        for index, result in enumerate(audit_all(folders, args.jobs), start=1):
            if args.verdict and result.verdict != args.verdict:
                continue
            verdicts[result.verdict] += 1
            rules.update(result.error_rules)
            times.append(result.seconds)
            if result.verdict in ("error", "no-report"):
                errors.append(result)
            elapsed = time.perf_counter() - started
            left = elapsed / index * (len(folders) - index)
            print(
                f"[{index}/{len(folders)} {elapsed:.0f}s, ~{left:.0f}s left] {result.verdict:<9} "
                f"{','.join(sorted(result.error_rules)) or '-':<30} {result.seconds:5.1f}s {result.folder}",
                flush=True,
            )
            if args.show:
                for line in result.first_errors[:6]:
                    print(f"      {line[:300]}")
            if jsonl:
                jsonl.write(json.dumps(result.as_json()) + "\n")
                jsonl.flush()
    finally:
        if jsonl:
            jsonl.close()
    print()
    print("verdicts: " + ", ".join(f"{name} {count}" for name, count in verdicts.most_common()))
    print(f"error verdicts / missing reports: {len(errors)}")
    for result in errors:
        print(f"  {result.folder}: {result.problem or '; '.join(result.pg000_messages)}")
    print("error findings by rule (folders): " + ", ".join(f"{rule} {count}" for rule, count in rules.most_common()))
    if times:
        print(
            f"time per folder: median {statistics.median(times):.2f} s, max {max(times):.2f} s; "
            f"all {time.perf_counter() - started:.1f} s wall for {len(times)} folders ({args.jobs} jobs)"
        )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("labeled", "wild"))
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="the packed corpus folder")
    parser.add_argument("--jobs", type=int, default=2, help="golf-check runs at once")
    parser.add_argument("--sample", type=int, help="wild: audit N folders drawn with --seed")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--jsonl", help="wild: append one JSON line per folder to this file")
    parser.add_argument("--verdict", help="wild: print and count only folders with this verdict")
    parser.add_argument("--show", action="store_true", help="wild: print each folder's error findings")
    args = parser.parse_args()
    if not (args.corpus / "unpack").is_file():
        print(f"corpus_runner: no corpus at {args.corpus} (expected its unpack script there)", file=sys.stderr)
        return 2
    root = unpack(args.corpus, args.part)
    if args.part == "labeled":
        return run_labeled(root, args.corpus, args.jobs)
    return run_wild(root, args)


if __name__ == "__main__":
    os.environ.setdefault("GOLF_CORPUS_DIR", str(Path(tempfile.gettempdir()) / "golf-corpus"))
    sys.exit(main())
