"""Cost of ``golf-eval --isolate`` against the in-process evaluation, on the CPU reference model.

The same audited evaluation (``run_evaluation``: guards, probes, fingerprints, the fsynced log,
verification, reports) of the tiny reference architecture on the embedded validation data, once
with the model and adapter in the evaluating process and once in the spawned child. Each run is
a fresh interpreter, as ``golf-eval`` is: a warm process would give the in-process side its
first-forward costs (allocations, kernel set-up) for free, which the isolated child pays. Runs
alternate (in-process, isolated, …) and the fastest of each is reported, so a neighbour's load
spike hits both sides alike. Printed per side: the process's wall time, the evaluation's own
``timing`` (load — for the isolated side the child's start-up, a fresh interpreter importing
torch —, probes, score, adapt, audit, other: the spawn with its shared buffer), the ratios of
the process walls, of the evaluations, and of the score → adapt loops. Goal: ≤ 1.10. Nothing is
asserted; both sides' BPB is printed: they agree.

Usage: ``python bench/bench_isolation.py [--tokens N] [--repeats N] [--ttt none|sgd]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from harness.data.embedded import DataPaths, embedded_data
from harness.data.shards import read_shard, write_shard
from harness.evaluate.adapters.base import AdapterConfig
from harness.evaluate.evaluator import EvalConfig
from harness.evaluate.pipeline import EvalRequest, run_evaluation
from reference_model.model import GPT
from reference_model.quantize import save_artifact
from reference_model.train import TrainConfig

SEQ_LEN = 256  # the tiny preset's train_seq_len: golf-eval's default for the reference model


def _data(folder: Path, tokens: int | None) -> DataPaths:
    """The embedded data, or its first ``tokens`` validation tokens in a folder of their own."""
    data = embedded_data()
    if tokens is None:
        return data
    stream = read_shard(sorted(data.data_dir.glob("fineweb_val_*.bin"))[0])[:tokens]
    write_shard(folder / "fineweb_val_000000.bin", stream)
    return DataPaths(data_dir=folder, tokenizer_path=data.tokenizer_path, vocab_size=data.vocab_size)


def _one(data_dir: Path, tokenizer: Path, artifact: Path, out: Path, isolate: bool, ttt: str) -> None:
    """One evaluation in this (fresh) process; its report's timing and BPB on stdout as JSON."""
    data = DataPaths(data_dir=data_dir, tokenizer_path=tokenizer, vocab_size=embedded_data().vocab_size)
    config = EvalConfig(seq_len=SEQ_LEN, ttt=ttt, adapter=AdapterConfig(seq_len=SEQ_LEN, epochs=1), isolate=isolate)
    request = EvalRequest(submission=None, artifact=artifact, data=data, config=config, out_dir=out)
    report = run_evaluation(request).report
    print(json.dumps({"timing": report["timing"], "val_bpb": report["val_bpb"], "tokens": report["tokens"]}))


def _run(data: DataPaths, artifact: Path, out: Path, isolate: bool, ttt: str) -> tuple[float, dict[str, Any]]:
    """Wall seconds of a fresh process running one evaluation, and what it reported."""
    command = [sys.executable, __file__, "--one", str(data.data_dir), str(data.tokenizer_path), str(artifact)]
    command += [str(out), "--ttt", ttt] + (["--isolate"] if isolate else [])
    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, json.loads(finished.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, help="validation tokens to score (default: the whole embedded set)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ttt", choices=("none", "sgd"), default="none")
    parser.add_argument(
        "--one", nargs=4, type=Path, metavar=("DATA", "TOKENIZER", "ARTIFACT", "OUT"), help=argparse.SUPPRESS
    )
    parser.add_argument("--isolate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        data_dir, tokenizer, artifact, out = args.one
        _one(data_dir, tokenizer, artifact, out, args.isolate, args.ttt)
        return
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        (root / "data").mkdir()
        data = _data(root / "data", args.tokens)
        model = GPT(TrainConfig.tiny(vocab_size=data.vocab_size).model_config())
        artifact = root / "final_model.int8.ptz"
        save_artifact(model.state_dict(), artifact)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(
            f"tiny reference model: {sum(p.numel() for p in model.parameters()):,} parameters; seq_len {SEQ_LEN}; "
            f"TTT {args.ttt}; torch threads {torch.get_num_threads()}; {os.cpu_count()} CPUs; load average {load:.2f}"
        )
        walls: dict[bool, list[float]] = {False: [], True: []}
        reports: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
        _run(data, artifact, root / "warm", False, args.ttt)  # warm-up: the page cache
        for repeat in range(args.repeats):
            for isolate in (False, True):
                wall, report = _run(data, artifact, root / f"out_{repeat}_{isolate}", isolate, args.ttt)
                walls[isolate].append(wall)
                reports[isolate].append(report)
    targets = reports[False][0]["tokens"]
    print(f"targets scored           : {targets:,}")
    for isolate, name in ((False, "in-process"), (True, "isolated  ")):
        best = min(range(args.repeats), key=lambda index: walls[isolate][index])
        timing = reports[isolate][best]["timing"]
        parts = ("load_s", "probes_s", "score_s", "adapt_s", "audit_s")
        other = timing["total_s"] - sum(timing[part] for part in parts)  # reading the data, hashing the inputs
        print(
            f"{name} process {walls[isolate][best]:7.3f} s, evaluation {timing['total_s']:7.3f} s ("
            + ", ".join(f"{part[:-2]} {timing[part]:.3f}" for part in parts)
            + f", other {other:.3f} s); val_bpb {reports[isolate][best]['val_bpb']:.10f}"
        )
    evaluations = {isolate: min(r["timing"]["total_s"] for r in reports[isolate]) for isolate in (False, True)}
    loops = {
        isolate: min(r["timing"]["score_s"] + r["timing"]["adapt_s"] + r["timing"]["audit_s"] for r in reports[isolate])
        for isolate in (False, True)
    }
    print(f"ratio, process (wall)    : {min(walls[True]) / min(walls[False]):7.3f}   (goal ≤ 1.10)")
    print(f"ratio, evaluation        : {evaluations[True] / evaluations[False]:7.3f}")
    print(f"ratio, score→adapt loop  : {loops[True] / loops[False]:7.3f}   (without the child's start-up)")
    print(f"every run, in-process    : {', '.join(f'{w:.2f}' for w in walls[False])} s")
    print(f"every run, isolated      : {', '.join(f'{w:.2f}' for w in walls[True])} s")
    print(f"load average after       : {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
