"""Cost of auditing, measured against baselines in the same run, on the tiny CPU model.

1. Audited evaluation (fingerprints before/after every chunk, the hash-chained log with
   flush + fsync per line, SHA-256 of the state at start and end, the guards)
   versus the very same scoring loop without any of it. Target: ≤ 5 % more wall time.
2. golf-eval's throughput with TTT off versus the trainer's own validation pass
   (``reference_model.evaluate.eval_val_sums``) on the same model and tokens. Target: within 10 %.

Runs alternate (A, B, A, B, …) and the fastest of each is reported, so a neighbour's load
spike hits both sides alike; the audit's own time is also accounted inside each audited run
(``timing["audit_s"]``: fingerprints, SHA-256, log writes with fsync), which is immune to load
on other cores. Usage: ``python bench/bench_eval.py [--tokens N] [--repeats N]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from harness.data.byte_accounting import build_byte_luts, load_tokenizer, target_bytes
from harness.data.embedded import embedded_data
from harness.data.shards import load_validation_tokens
from harness.evaluate.adapters.none import NoAdapter
from harness.evaluate.distributed import DistContext
from harness.evaluate.evaluator import EvalConfig, EvalInputs, EvalResult, evaluate
from harness.evaluate.guards import guarded
from harness.evaluate.scoring import score_windows
from harness.evaluate.windows import plan_evaluation
from reference_model.evaluate import eval_val_sums
from reference_model.model import GPT
from reference_model.train import TrainConfig

T = TypeVar("T")
SEQ_LEN = 256
BATCH = 65_536 // SEQ_LEN  # golf-eval's default windows per forward pass
_TINY = TrainConfig.tiny()
TRAINER_BATCH = _TINY.val_batch_size // _TINY.micro_batches // SEQ_LEN  # what golf-train uses on 1 process


def plain_loop(model: torch.nn.Module, inputs: EvalInputs, chunk_tokens: int) -> float:
    """The evaluator's scoring with no fingerprints, no log, no guards."""
    plan = plan_evaluation(int(inputs.tokens.size), SEQ_LEN, SEQ_LEN, chunk_tokens)
    tokens = torch.from_numpy(inputs.tokens.astype(np.int64))
    total = 0.0
    model.eval()
    for chunk in plan.chunks:
        with torch.inference_mode():
            total += score_windows(model, tokens, chunk.windows, inputs.vocab_size, BATCH, DistContext()).nll_sum
    return total


def audited_run(model: torch.nn.Module, inputs: EvalInputs, chunk_tokens: int, folder: Path) -> EvalResult:
    config = EvalConfig(seq_len=SEQ_LEN, chunk_tokens=chunk_tokens, batch_windows=BATCH)
    with guarded(allowed_paths=[folder], forbidden_paths=[]):
        return evaluate(model, NoAdapter(), inputs, config, folder / "chunks.jsonl")


def timed(function: Callable[..., T], *args: object) -> tuple[float, float, T]:
    """Wall seconds, process CPU seconds (less sensitive to other processes' load), value."""
    started, cpu_started = time.perf_counter(), time.process_time()
    value = function(*args)
    return time.perf_counter() - started, time.process_time() - cpu_started, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=65_537, help="validation tokens to score")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-tokens", type=int, default=32768, help="golf-eval's default")
    args = parser.parse_args()
    torch.manual_seed(0)
    data = embedded_data()
    tokens = load_validation_tokens(data.val_pattern, SEQ_LEN)[: args.tokens]
    tokens = tokens[: ((tokens.size - 1) // SEQ_LEN) * SEQ_LEN + 1]
    luts = build_byte_luts(load_tokenizer(data.tokenizer_path), data.vocab_size)
    inputs = EvalInputs(tokens, target_bytes(tokens[:-1], tokens[1:], luts), data.vocab_size)
    model = GPT(TrainConfig.tiny(vocab_size=data.vocab_size).model_config())
    model.eval()
    print(
        f"tiny CPU model: {sum(p.numel() for p in model.parameters()):,} parameters; "
        f"{tokens.size - 1:,} targets; seq_len {SEQ_LEN}; chunk {args.chunk_tokens}; "
        f"batch {BATCH} windows (trainer {TRAINER_BATCH}); torch threads {torch.get_num_threads()}"
    )
    plain_times, audited_times, golf_times, trainer_times, audit_shares = [], [], [], [], []
    plain_cpu, audited_cpu, golf_cpu, trainer_cpu = [], [], [], []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        plain_loop(model, inputs, args.chunk_tokens)  # warm-up
        for _ in range(args.repeats):
            seconds, cpu, plain_sum = timed(plain_loop, model, inputs, args.chunk_tokens)
            plain_times.append(seconds)
            plain_cpu.append(cpu)
            seconds, cpu, result = timed(audited_run, model, inputs, args.chunk_tokens, folder)
            audited_times.append(seconds)
            audited_cpu.append(cpu)
            assert result.nll_sum == plain_sum, (result.nll_sum, plain_sum)
            audit_shares.append(result.timing["audit_s"] / result.timing["score_s"])
        for _ in range(args.repeats):
            seconds, cpu, _ = timed(audited_run, model, inputs, args.chunk_tokens, folder)
            golf_times.append(seconds)
            golf_cpu.append(cpu)
            seconds, cpu, _ = timed(eval_val_sums, model, tokens, luts, SEQ_LEN, TRAINER_BATCH)
            trainer_times.append(seconds)
            trainer_cpu.append(cpu)
    plain, audited = min(plain_times), min(audited_times)
    golf, trainer = min(golf_times), min(trainer_times)
    targets = tokens.size - 1
    print(f"plain scoring loop     : {plain:8.3f} s  ({targets / plain:10,.0f} tokens/s)")
    print(f"audited evaluation     : {audited:8.3f} s  ({targets / audited:10,.0f} tokens/s)")
    print(f"audit overhead (wall)  : {100 * (audited / plain - 1):+7.2f} %   (target ≤ +5 %)")
    print(f"audit overhead (CPU)   : {100 * (min(audited_cpu) / min(plain_cpu) - 1):+7.2f} %")
    print(
        f"audit time / score time: {100 * statistics.median(audit_shares):7.2f} %   (accounted inside the audited runs)"
    )
    print(f"golf-eval, TTT off     : {targets / golf:10,.0f} tokens/s")
    print(f"trainer's eval_val     : {targets / trainer:10,.0f} tokens/s")
    print(f"golf-eval / trainer    : {trainer / golf:7.3f}   (throughput ratio, wall; target ≥ 0.90)")
    print(f"golf-eval / trainer    : {min(trainer_cpu) / min(golf_cpu):7.3f}   (throughput ratio, CPU time)")


if __name__ == "__main__":
    main()
