"""Throughput of the reference trainer's two loops on the tiny CPU config.

Prints training tokens/s (forward + backward + Muon/Adam step, as in ``reference_model.train``)
and evaluation tokens/s (``eval_val_sums``: inference-mode logits, float32 NLL, float64 sums)
over a short fixed number of steps on the embedded data. Both numbers come from one run on
one machine; compare them only with figures from the same machine.

    python bench/bench_train_eval.py [--steps 20] [--eval-seqs 128] [--threads N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from harness.data.byte_accounting import build_byte_luts, load_tokenizer
from harness.data.embedded import embedded_data
from harness.data.shards import load_validation_tokens
from reference_model.data import DistributedTokenLoader
from reference_model.evaluate import eval_val_sums
from reference_model.model import GPT
from reference_model.optim import build_optimizers, set_schedule
from reference_model.train import TrainConfig

WARMUP_STEPS = 2


def train_tokens_per_second(config: TrainConfig, steps: int) -> float:
    model = GPT(config.model_config())
    settings = config.optimizer_settings()
    optimizers, muon = build_optimizers(model, settings)
    loader = DistributedTokenLoader(config.data_path + "/fineweb_train_*.bin", 0, 1, torch.device("cpu"))
    grad_accum = config.micro_batches

    def one_step(step: int) -> None:
        set_schedule(optimizers, muon, step, 1.0, settings)
        for _ in range(grad_accum):
            inputs, targets = loader.next_batch(config.train_batch_tokens, config.train_seq_len, grad_accum)
            (model(inputs, targets) / grad_accum).backward()
        for optimizer in optimizers:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    for step in range(WARMUP_STEPS):
        one_step(step)
    start = time.perf_counter()
    for step in range(WARMUP_STEPS, WARMUP_STEPS + steps):
        one_step(step)
    return steps * config.train_batch_tokens / (time.perf_counter() - start)


def eval_tokens_per_second(config: TrainConfig, seqs: int) -> tuple[float, int]:
    model = GPT(config.model_config())
    luts = build_byte_luts(load_tokenizer(Path(config.tokenizer_path)), config.vocab_size)
    val = load_validation_tokens(config.data_path + "/fineweb_val_*.bin", config.train_seq_len)
    val = val[: seqs * config.train_seq_len + 1]
    batch_seqs = config.val_batch_size // config.micro_batches // config.train_seq_len
    eval_val_sums(model, val[: config.train_seq_len + 1], luts, config.train_seq_len, batch_seqs)  # warm-up
    start = time.perf_counter()
    sums = eval_val_sums(model, val, luts, config.train_seq_len, batch_seqs)
    return sums.tokens / (time.perf_counter() - start), sums.tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed training steps (after 2 warm-up steps)")
    parser.add_argument("--eval-seqs", type=int, default=128, help="validation sequences scored")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = embedded_data()
    config = TrainConfig.tiny(data_path=str(data.data_dir), tokenizer_path=str(data.tokenizer_path))
    print(
        f"tiny config: {config.num_layers} layers x {config.model_dim}, seq {config.train_seq_len}, "
        f"{config.train_batch_tokens} tokens/step, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    train_tps = train_tokens_per_second(config, args.steps)
    print(f"train: {train_tps:,.0f} tokens/s over {args.steps} steps")
    eval_tps, scored = eval_tokens_per_second(config, args.eval_seqs)
    print(f"eval:  {eval_tps:,.0f} tokens/s over {scored} tokens")
    print(f"eval/train throughput ratio: {eval_tps / train_tps:.2f}")


if __name__ == "__main__":
    main()
