"""golf-check over every ``.py`` file of the standard library: ordinary Python must never be
an ``error`` (PG000) unless CPython itself refuses it (issue 12).

Why the standard library: it is the largest body of ordinary, correct Python at hand, written
in every style over thirty years (its ``test`` folder and lib2to3's data hold deliberately odd
files: encodings, BOMs, CRLF, deep nesting). Each file is audited as a one-file submission,
in-process (``analyze_one``, what a golf-check worker runs), many files per worker process, so
the whole library takes minutes, not the hours one subprocess per file would. Nothing is ever
executed or imported: files are read, compiled with ``compile()`` (CPython's verdict on the
syntax, nothing run) and analyzed.

Prints counts, every PG000 with its message (and whether CPython compiles that file), the
files CPython refuses, and the slowest files.

Usage::

    python bench/stdlib_run.py                       # the venv interpreter's stdlib, 2 workers
    python bench/stdlib_run.py --parse-only          # loading, unwrapping and parsing only: fast
    python bench/stdlib_run.py --root DIR --jobs 2 --limit 200 --jsonl /tmp/stdlib.jsonl

Exit code 0 when no file CPython compiles got a PG000 error, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import sysconfig
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


@dataclass
class FileResult:
    path: str
    seconds: float
    compiles: bool  # CPython (this interpreter) compiles it
    compile_error: str = ""
    pg000_errors: list[str] = field(default_factory=list)
    pg000_warnings: list[str] = field(default_factory=list)
    crash: str = ""  # an exception escaped the audit itself


def stdlib_files(root: Path) -> list[Path]:
    """Every ``.py`` file below ``root`` except installed third-party packages, sorted."""
    found: list[Path] = []
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = sorted(
            d for d in subdirectories if d not in ("site-packages", "dist-packages", "__pycache__")
        )
        found.extend(Path(directory) / name for name in sorted(files) if name.endswith(".py"))
    return [path for path in found if not path.is_symlink()]


def _cpython_verdict(path: Path) -> tuple[bool, str]:
    try:
        data = path.read_bytes()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile(data, str(path), "exec", dont_inherit=True)
    except (SyntaxError, ValueError, UnicodeDecodeError, RecursionError, MemoryError, OverflowError) as error:
        return False, f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:200]
    except OSError as error:
        return False, f"unreadable: {error}"
    return True, ""


def audit_file(path_text: str, parse_only: bool) -> FileResult:
    """One file as a one-file submission, in this worker process."""
    path = Path(path_text)
    compiles, compile_error = _cpython_verdict(path)
    started = time.perf_counter()
    result = FileResult(path=path_text, seconds=0.0, compiles=compiles, compile_error=compile_error)
    try:
        findings = _parse_findings(path) if parse_only else _full_findings(path)
    except Exception as exc:  # noqa: BLE001 — reported per file, the run goes on
        result.crash = f"{type(exc).__name__}: {exc}"[:300]
        findings = []
    for finding in findings:
        if finding.get("rule") != "PG000":
            continue
        message = f"{finding.get('file') or '-'}: {finding.get('message', '')}"[:400]
        (result.pg000_errors if finding.get("severity") == "error" else result.pg000_warnings).append(message)
    result.seconds = time.perf_counter() - started
    return result


def _full_findings(path: Path) -> list[dict]:
    from harness.check.context import CheckOptions
    from harness.check.runner import analyze_one

    findings, _sources, _cacheable = analyze_one(str(path), CheckOptions())
    return findings


def _parse_findings(path: Path) -> list[dict]:
    """Load (decode, unwrap) and parse each source, as the engine's first step does."""
    from harness.check.parse import ParseFailure, parse_source
    from harness.errors import HarnessError
    from harness.loader import load_submission
    from harness.python_ast import forget_trees

    try:
        submission = load_submission(path)
    except HarnessError as exc:
        return [{"rule": "PG000", "severity": "error", "file": "", "message": str(exc)}]
    findings = [finding.to_json() for finding in submission.load_findings]
    for source in submission.sources:
        try:
            parse_source(source)
        except ParseFailure as failure:
            severity = "error" if source.is_entry else "warning"
            findings.append(
                {"rule": "PG000", "severity": severity, "file": source.display_name, "message": str(failure)}
            )
    forget_trees()
    return findings


def _worker_init() -> None:
    import gc

    from harness.check.runner import _preload_analysis

    _preload_analysis()
    gc.enable()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(sysconfig.get_paths()["stdlib"]))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="only the first N files (0: all)")
    parser.add_argument("--parse-only", action="store_true", help="load, unwrap and parse; no rule families")
    parser.add_argument("--jsonl", type=Path, help="append each file's result here as it is known")
    args = parser.parse_args(argv)

    files = stdlib_files(args.root)
    if args.limit:
        files = files[: args.limit]
    print(
        f"{len(files)} .py files under {args.root} ({'parse only' if args.parse_only else 'full audit'}, {args.jobs} workers)"
    )
    started = time.perf_counter()
    results: list[FileResult] = []
    jsonl = args.jsonl.open("a") if args.jsonl else None
    with ProcessPoolExecutor(max_workers=max(1, args.jobs), initializer=_worker_init) as pool:
        futures = [pool.submit(audit_file, str(path), args.parse_only) for path in files]
        for future in futures:
            result = future.result()
            results.append(result)
            if jsonl is not None:
                jsonl.write(json.dumps(asdict(result)) + "\n")
                jsonl.flush()
            if result.pg000_errors or result.crash:
                print(
                    f"  PG000 {_short(result.path, args.root)} (CPython {'compiles' if result.compiles else 'refuses'}): "
                    f"{(result.pg000_errors or [result.crash])[0]}",
                    flush=True,
                )
    if jsonl is not None:
        jsonl.close()
    return _summary(results, args.root, time.perf_counter() - started)


def _short(path: str, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return path


def _summary(results: list[FileResult], root: Path, elapsed: float) -> int:
    refused = [r for r in results if not r.compiles]
    wrong = [r for r in results if r.compiles and (r.pg000_errors or r.crash)]
    warned = [r for r in results if r.pg000_warnings]
    print()
    print(
        f"files: {len(results)}   CPython refuses: {len(refused)}   PG000 errors: "
        f"{sum(1 for r in results if r.pg000_errors or r.crash)} ({len(wrong)} on files CPython compiles)   "
        f"PG000 warnings: {len(warned)}   time {elapsed:.0f} s"
    )
    if refused:
        print("\nfiles CPython refuses (golf-check verdict):")
        for result in refused:
            verdict = "PG000" if result.pg000_errors else "analyzed"
            print(f"  {_short(result.path, root)}: {result.compile_error} [{verdict}]")
    if wrong:
        print("\nPG000 on files CPython compiles:")
        for result in wrong:
            for message in result.pg000_errors or [result.crash]:
                print(f"  {_short(result.path, root)}: {message}")
    if warned:
        print("\nPG000 warnings:")
        for result in warned:
            print(f"  {_short(result.path, root)}: {result.pg000_warnings[0]}")
    print("\nslowest files:")
    for result in sorted(results, key=lambda r: r.seconds, reverse=True)[:5]:
        print(f"  {result.seconds:6.1f} s  {_short(result.path, root)}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
