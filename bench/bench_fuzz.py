"""Fuzz run of the whole audit (load_submission + analyze) over ≥ 10,000 generated inputs.

Inputs are generated deterministically from ``--seed``: random bytes, mutations of a corpus of
shims and plain sources (byte flips, inserted syntax characters, deletions, duplications,
truncation), payload corruptions, whole folders with damaged README/run script/log, and
mutated programs wrapped *into* valid shims (so damage reaches the decoded-code analysis). A
crash is any exception escaping ``load_submission``/``analyze``; each one is written to
``--crash-dir`` for reproduction. Prints the counts and inputs per second; asserts nothing.

Usage: ``python bench/bench_fuzz.py [--count 10000] [--jobs 2] [--seed 0] [--crash-dir DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.shims import wrap_gzip_b64, wrap_lzma_b85, wrap_nested, wrap_split_literal  # noqa: E402
from tests.test_fuzz import CORPUS, LOG, PROGRAM, README, RUN_SH, audit_bytes, mutate  # noqa: E402

KINDS = ("random-bytes", "mutated-source", "corrupted-payload", "damaged-folder", "wrapped-mutation")
_WRAPPERS = (wrap_lzma_b85, wrap_split_literal, wrap_gzip_b64, wrap_nested)


def generate(index: int, seed: int) -> tuple[str, dict[str, bytes], bool]:
    """The ``index``-th input: (kind, files, audit train_gpt.py alone?)."""
    rng = random.Random(seed * 1_000_003 + index)
    kind = KINDS[index % len(KINDS)]
    single = rng.random() < 0.5
    if kind == "random-bytes":
        return kind, {"train_gpt.py": rng.randbytes(rng.randint(0, 4000))}, single
    if kind == "mutated-source":
        source = rng.choice(CORPUS).encode("utf-8")
        return kind, {"train_gpt.py": mutate(source, rng, rng.randint(1, 8))}, single
    if kind == "corrupted-payload":
        text = rng.choice(CORPUS)
        start = rng.randrange(len(text))
        junk = "".join(
            rng.choice("0123456789ABCDEFabcdef~!$%&()*+-;<=>?@^_`{|}\"'\\") for _ in range(rng.randint(1, 40))
        )
        return kind, {"train_gpt.py": (text[:start] + junk + text[start + len(junk) :]).encode("utf-8")}, single
    if kind == "damaged-folder":
        files = {
            "train_gpt.py": mutate(rng.choice(CORPUS).encode("utf-8"), rng, 2),
            "train_gpt_decode.py": mutate(PROGRAM.encode(), rng, 3),
            "README.md": mutate(README.encode(), rng, 6),
            "run.sh": mutate(RUN_SH.encode(), rng, 6),
            "train_seed42.log": mutate(LOG.encode(), rng, 6),
        }
        return kind, files, False
    damaged = mutate(PROGRAM.encode(), rng, rng.randint(1, 6)).decode("utf-8", errors="replace")
    return kind, {"train_gpt.py": rng.choice(_WRAPPERS)(damaged).encode("utf-8")}, single


def run_one(index: int, seed: int, crash_dir: str) -> tuple[str, str | None, float, list[str]]:
    kind, files, single = generate(index, seed)
    started = time.perf_counter()
    contained: list[str] = []
    try:
        findings = audit_bytes(files, single)
        contained = [f.message for f in findings if f.rule == "PG000" and "could not complete" in f.message]
        crash = None
    except Exception as exc:  # noqa: BLE001 — counting escapes is the point of this bench
        crash = f"{type(exc).__name__}: {str(exc)[:200]}"
        folder = Path(crash_dir) / f"crash-{index:06d}"
        folder.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (folder / name).write_bytes(content)
        (folder / "traceback.txt").write_text(traceback.format_exc(), encoding="utf-8")
    return kind, crash, time.perf_counter() - started, contained


def _chunk(args: tuple[list[int], int, str]) -> list[tuple[str, str | None, float, list[str]]]:
    indices, seed, crash_dir = args
    return [run_one(index, seed, crash_dir) for index in indices]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crash-dir", default="/tmp/golf-fuzz-crashes")
    args = parser.parse_args()
    batches = [list(range(start, min(args.count, start + 100))) for start in range(0, args.count, 100)]
    started = time.perf_counter()
    results: list[tuple[str, str | None, float, list[str]]] = []
    if args.jobs <= 1:
        for batch in batches:
            results += _chunk((batch, args.seed, args.crash_dir))
    else:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            for outcome in pool.map(_chunk, [(batch, args.seed, args.crash_dir) for batch in batches]):
                results += outcome
    elapsed = time.perf_counter() - started
    crashes = [(kind, crash) for kind, crash, _, _ in results if crash is not None]
    per_kind = {kind: sum(1 for k, _, _, _ in results if k == kind) for kind in KINDS}
    slowest = max(seconds for _, _, seconds, _ in results)
    contained: dict[str, int] = {}
    for _, _, _, messages in results:
        for message in messages:
            contained[message[:120]] = contained.get(message[:120], 0) + 1
    print(f"inputs: {len(results)} ({', '.join(f'{k} {n}' for k, n in per_kind.items())})")
    print(f"crashes (exceptions escaping load_submission/analyze): {len(crashes)}")
    for kind, crash in crashes[:10]:
        print(f"  {kind}: {crash}")
    if crashes:
        print(f"  crashing inputs written to {args.crash_dir}")
    print(f"rule-family crashes contained by the engine as PG000 findings: {sum(contained.values())}")
    for message, count in sorted(contained.items(), key=lambda item: -item[1])[:10]:
        print(f"  {count} x {message}")
    print(
        f"elapsed: {elapsed:.1f} s with {args.jobs} worker(s); {len(results) / elapsed:.1f} inputs/s; slowest input {slowest:.2f} s"
    )
    summary = {"inputs": len(results), "crashes": len(crashes), "contained_family_crashes": sum(contained.values())}
    print(json.dumps(summary | {"inputs_per_s": round(len(results) / elapsed, 1)}))


if __name__ == "__main__":
    main()
