"""golf-eval under ``torchrun`` (gloo, CPU): two processes give the same BPB as one —
≤ 1e-9 relative without TTT, ≤ 1e-6 with SGD TTT (gradients all-reduced across ranks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli.eval import main
from harness.data.embedded import DataPaths
from tests.test_eval_cli import SEQ_LEN, small_data, tiny_artifact  # noqa: F401 — shared fixtures


def _args(data: DataPaths, artifact: Path, out: Path, ttt: str) -> list[str]:
    return [
        "--artifact",
        str(artifact),
        "--data",
        str(data.data_dir),
        "--tokenizer",
        str(data.tokenizer_path),
        "--seq-len",
        str(SEQ_LEN),
        "--chunk-tokens",
        "1024",
        "--batch-windows",
        "4",
        "--ttt",
        ttt,
        "--ttt-lr",
        "0.05",
        "--out",
        str(out),
        "--quiet",
    ]


@pytest.mark.parametrize(("ttt", "tolerance"), [("none", 1e-9), ("sgd", 1e-6)])
def test_two_processes_match_one(
    small_data: DataPaths,
    tiny_artifact: Path,
    tmp_path: Path,
    ttt: str,
    tolerance: float,  # noqa: F811
) -> None:
    single = tmp_path / "single"
    assert main(_args(small_data, tiny_artifact, single, ttt)) == 0
    double = tmp_path / "double"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "harness.cli.eval",
        *_args(small_data, tiny_artifact, double, ttt),
    ]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    one = json.loads((single / "report.json").read_text())
    two = json.loads((double / "report.json").read_text())
    assert two["world_size"] == 2 and two["audited"] and one["audited"]
    assert (two["tokens"], two["bytes"]) == (one["tokens"], one["bytes"])
    assert two["val_bpb"] == pytest.approx(one["val_bpb"], rel=tolerance, abs=0)
    header = json.loads((double / "chunks.jsonl").read_text().splitlines()[0])
    assert header["world_size"] == 2
