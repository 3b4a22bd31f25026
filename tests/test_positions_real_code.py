"""The parse layer's positions pass against libcst's own ``PositionProvider`` on real code.

Why: the pass re-implements libcst's position tracking for speed (``harness/check/parse.py``),
and every finding's line comes from it. Hand-written samples cannot cover what real code
does, so every node the pass records is compared with libcst's answer on real files: a
deterministic sample of the standard library in every test run, and with
``GOLF_SLOW_TESTS=1`` every standard-library file and every corpus ``.py`` file (the corpus
unpacked by ``shared/corpus/unpack`` into ``$GOLF_CORPUS_DIR``, default ``golf-corpus`` in the
temp dir; skipped, saying so, when absent). ``GOLF_SLOW_SHARD=k/n`` runs the k-th of n shares
of the slow run, so it can be spread over processes or machines; figures are printed with -s.
"""

from __future__ import annotations

import hashlib
import os
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from libcst import CSTValidationError
from libcst.metadata import MetadataWrapper, PositionProvider

from harness.check.parse import ParseFailure, parse_source
from harness.check.positions import TRIVIA
from harness.loader import decode_source_bytes
from harness.submission import SourceFile

SLOW = os.environ.get("GOLF_SLOW_TESTS") == "1"
STDLIB = Path(sysconfig.get_paths()["stdlib"])
SAMPLE_BYTES = 250_000  # of stdlib source in the normal run: a few seconds
SAMPLE_FILE_LIMIT = 40_000
# libcst's provider recurses once per level of the tree (one per adjacent literal of a long
# chain); the pass does not, so the reference gets room to answer.
REFERENCE_RECURSION_LIMIT = 20_000


@dataclass
class Tally:
    files: int = 0
    nodes: int = 0
    refused: list[str] = field(default_factory=list)  # the parse layer refuses the file (PG000)
    reference_failed: list[str] = field(default_factory=list)  # libcst's provider could not answer
    mismatches: list[str] = field(default_factory=list)

    def summary(self, what: str) -> str:
        return (
            f"{what}: {self.files} files compared, {self.nodes} node positions, {len(self.mismatches)} "
            f"mismatches, {len(self.refused)} refused by the parse layer, "
            f"{len(self.reference_failed)} libcst's provider could not resolve"
        )


def compare_file(path: Path, tally: Tally) -> None:
    """Every node the pass records (offsets, even for the few trivia that record a syntactic
    range) has libcst's position; every non-trivia node libcst positions is recorded."""
    text, _note = decode_source_bytes(path.read_bytes())
    try:
        parsed = parse_source(SourceFile(path.name, path, text))
    except ParseFailure as failure:
        tally.refused.append(f"{path}: {failure}")
        return
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, REFERENCE_RECURSION_LIMIT))
    try:
        expected = MetadataWrapper(parsed.module, unsafe_skip_copy=True).resolve(PositionProvider)
    except RecursionError:
        tally.reference_failed.append(f"{path}: recursion")
        return
    except CSTValidationError as error:  # the reference revalidates nodes: ``a and(b)`` is valid Python
        tally.reference_failed.append(f"{path}: {error}")
        return
    finally:
        sys.setrecursionlimit(limit)
    by_id = {id(node): node for node in expected}
    ours = parsed.positions
    recorded = set(ours._offsets)  # noqa: SLF001 — the pass's own record is what is tested
    missing = [
        node for node in expected if type(node) not in TRIVIA and node is not parsed.module and id(node) not in recorded
    ]
    unknown = [key for key in recorded if key not in by_id]
    problems = [f"{path}: {type(node).__name__} not recorded" for node in missing[:3]]
    problems += [f"{path}: a recorded node libcst does not position" for _ in unknown[:1]]
    module_key = id(parsed.module)
    for key in recorded:
        node = by_id.get(key)
        # The module's own span is never read (findings use statements and expressions), and
        # libcst ends it past a final newline it adds to a file that lacks one.
        if node is None or key == module_key:
            continue
        reference = expected[node]
        span = ours[node]
        if span != ((reference.start.line, reference.start.column), (reference.end.line, reference.end.column)):
            problems.append(
                f"{path}: {type(node).__name__} at {tuple(span)} but libcst says "
                f"{reference.start.line}:{reference.start.column}-{reference.end.line}:{reference.end.column}"
            )
            if len(problems) > 5:
                break
    tally.files += 1
    tally.nodes += len(recorded)
    tally.mismatches.extend(problems)


def _python_files(root: Path) -> list[Path]:
    found: list[Path] = []
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = sorted(
            d for d in subdirectories if d not in ("site-packages", "dist-packages", "__pycache__")
        )
        found.extend(Path(directory) / name for name in sorted(files) if name.endswith(".py"))
    return [path for path in found if path.is_file() and not path.is_symlink()]


def _key(path: Path, root: Path) -> str:
    return hashlib.sha1(path.relative_to(root).as_posix().encode()).hexdigest()


def _stdlib_sample() -> list[Path]:
    """Files picked by a hash of their relative path (stable across machines and versions
    that ship the same file names), small ones only, up to ``SAMPLE_BYTES`` in all."""
    chosen: list[Path] = []
    total = 0
    for path in sorted(_python_files(STDLIB), key=lambda p: _key(p, STDLIB)):
        size = path.stat().st_size
        if size > SAMPLE_FILE_LIMIT:
            continue
        if total + size > SAMPLE_BYTES:
            continue
        chosen.append(path)
        total += size
    return chosen


def _share(paths: list[Path]) -> list[Path]:
    shard = os.environ.get("GOLF_SLOW_SHARD", "")
    if not shard:
        return paths
    index, count = (int(part) for part in shard.split("/"))
    return paths[index - 1 :: count]


def _unique_contents(paths: list[Path]) -> list[Path]:
    """One path per distinct content: the corpus repeats many files across pull requests."""
    seen: set[str] = set()
    unique: list[Path] = []
    for path in paths:
        digest = hashlib.sha1(path.read_bytes()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            unique.append(path)
    return unique


def _run(paths: list[Path], what: str) -> Tally:
    tally = Tally()
    for path in paths:
        compare_file(path, tally)
    print("\n" + tally.summary(what))
    for line in tally.refused + tally.reference_failed + tally.mismatches[:50]:
        print(f"  {line}")
    return tally


def test_positions_equal_libcst_on_a_stdlib_sample() -> None:
    if not STDLIB.is_dir():
        pytest.skip(f"no standard library sources at {STDLIB}")
    sample = _stdlib_sample()
    assert len(sample) >= 20
    tally = _run(sample, "stdlib sample")
    assert tally.mismatches == []
    assert tally.files >= len(sample) - 2 and tally.nodes > 20_000


@pytest.mark.skipif(not SLOW, reason="opt-in: set GOLF_SLOW_TESTS=1 (every stdlib file, tens of minutes)")
def test_positions_equal_libcst_on_every_stdlib_file() -> None:
    tally = _run(_share(_python_files(STDLIB)), f"stdlib {STDLIB}")
    assert tally.mismatches == []


@pytest.mark.skipif(not SLOW, reason="opt-in: set GOLF_SLOW_TESTS=1 (every corpus .py file, an hour or more)")
def test_positions_equal_libcst_on_every_corpus_file() -> None:
    corpus = Path(os.environ.get("GOLF_CORPUS_DIR") or Path(tempfile.gettempdir()) / "golf-corpus")
    if not corpus.is_dir():
        pytest.skip(f"corpus not unpacked at {corpus} (run shared/corpus/unpack, or set GOLF_CORPUS_DIR)")
    tally = _run(_share(_unique_contents(_python_files(corpus))), f"corpus {corpus}")
    assert tally.mismatches == []
