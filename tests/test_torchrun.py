"""``torchrun --nproc_per_node=2`` (gloo, CPU) trains and validates exactly like one process.

Why it can be exact: the global batch is split into the same micro-batches either way (one
process runs two micro-steps, two ranks one each), DDP's average of two gradients equals the
accumulated half-scaled gradients bit for bit, and Muon all-reduces updates that are non-zero
on one rank only. Both runs use one thread so that matmul reduction order is the same.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_train import write_small_data

from harness.data.embedded import DataPaths

TINY_ENV = {
    "OMP_NUM_THREADS": "1",
    "NUM_LAYERS": "2",
    "MODEL_DIM": "64",
    "NUM_HEADS": "4",
    "NUM_KV_HEADS": "2",
    "TRAIN_SEQ_LEN": "128",
    "TRAIN_BATCH_TOKENS": "2048",
    "MICRO_BATCHES": "2",
    "ITERATIONS": "8",
    "WARMDOWN_ITERS": "4",
    "MAX_WALLCLOCK_SECONDS": "0",
    "VAL_LOSS_EVERY": "4",
    "VAL_BATCH_SIZE": "2048",
    "TRAIN_LOG_EVERY": "0",
    "RUN_ID": "torchrun-test",
    "SEED": "7",
}


def run_trainer(nproc: int, data: Path, tokenizer: Path, out: Path) -> tuple[dict[str, object], str]:
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        if nproc > 1
        else [sys.executable]
    )
    command = [
        *launcher,
        "-m",
        "harness.cli.train",
        "--data",
        str(data),
        "--tokenizer",
        str(tokenizer),
        "--out",
        str(out),
        "--quiet",
    ]
    env = {key: value for key, value in os.environ.items() if key not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    completed = subprocess.run(command, env=env | TINY_ENV, capture_output=True, text=True, timeout=540)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads((out / "train_result.json").read_text(encoding="utf-8")), completed.stdout


def test_two_gloo_ranks_match_one_process(embedded: DataPaths, tmp_path: Path) -> None:
    data = write_small_data(embedded, tmp_path / "data")
    single, _ = run_trainer(1, data, embedded.tokenizer_path, tmp_path / "one")
    double, printed = run_trainer(2, data, embedded.tokenizer_path, tmp_path / "two")
    assert printed.count("golf-train: reference model") == 1  # rank 0 reports, rank 1 stays quiet
    assert f"{double['val_bpb']:.8f}" in printed
    assert single["steps"] == double["steps"] == 8
    assert double["val_bpb"] == pytest.approx(single["val_bpb"], abs=1e-6)
    assert double["prequant_val_bpb"] == pytest.approx(single["prequant_val_bpb"], abs=1e-6)
    assert (double["tokens"], double["bytes"]) == (single["tokens"], single["bytes"]) == (1024, single["bytes"])
    # identical updates on every step ⇒ byte-identical artifacts
    assert Path(double["artifact_path"]).read_bytes() == Path(single["artifact_path"]).read_bytes()
    log_two = Path(double["log_path"]).read_text(encoding="utf-8").splitlines()
    assert "world_size: 2" in log_two and "grad_accum_steps: 1" in log_two
    assert any(line.startswith("step:4/8 val_loss:") for line in log_two)
    log_one = Path(single["log_path"]).read_text(encoding="utf-8").splitlines()
    assert "world_size: 1" in log_one and "grad_accum_steps: 2" in log_one
