"""``golf-train``: train the reference model, export its int8 artifact, print size and round-trip BPB.

Defaults to the tiny CPU preset on the embedded data, so it works offline on a fresh machine.
Configuration order: preset (``--tiny``/``--full``) → env vars like the baseline's
(``ITERATIONS``, ``TRAIN_SEQ_LEN``, …) → the flags given here.

Distributed: ``torchrun --nproc_per_node=N -m harness.cli.train [flags]`` runs the same
command under DDP (gloo on CPU, nccl on CUDA); only rank 0 prints and writes files.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from harness.cli.common import OneLineArgumentParser, exit_process, require_eval_extra, run_cli, shutdown_distributed
from harness.errors import EXIT_OK, UsageError

PROGRAM = "golf-train"


def build_parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(prog=PROGRAM, description="Train the reference model and export its int8 artifact.")
    parser.add_argument("--data", type=Path, metavar="DIR", help="challenge data dir with fineweb_{train,val}_*.bin")
    parser.add_argument("--tokenizer", type=Path, metavar="MODEL", help="SentencePiece model of that data")
    parser.add_argument(
        "--out", type=Path, default=Path("out/reference"), metavar="DIR", help="output dir (default out/reference)"
    )
    preset = parser.add_mutually_exclusive_group()
    preset.add_argument("--tiny", dest="preset", action="store_const", const="tiny", help="small CPU model (default)")
    preset.add_argument(
        "--full", dest="preset", action="store_const", const="full", help="the baseline's 9×512 model and schedule"
    )
    parser.set_defaults(preset="tiny")
    parser.add_argument("--iterations", type=int, metavar="N", help="training steps")
    parser.add_argument("--seed", type=int, metavar="N", help="random seed")
    parser.add_argument(
        "--zstd", action="store_true", help="write a .ptzst (zstd 22) artifact instead of .ptz (zlib 9)"
    )
    parser.add_argument("--quiet", action="store_true", help="print only the summary, not the training log")
    parser.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch CPU threads (default: torch's choice; 1 is faster on a busy shared CPU)",
    )
    return parser


def _run(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    require_eval_extra(PROGRAM)
    # Imported here so that --help and usage errors do not pay for importing torch.
    from harness.data.embedded import resolve_data
    from reference_model.train import TrainConfig, train

    if args.threads is not None:
        if args.threads < 1:
            raise UsageError(f"--threads must be at least 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    data = resolve_data(args.data, args.tokenizer)
    base = TrainConfig.tiny() if args.preset == "tiny" else TrainConfig()
    config = base.with_env()
    changes: dict[str, Any] = {
        "data_path": str(data.data_dir),
        "tokenizer_path": str(data.tokenizer_path),
        "vocab_size": data.vocab_size,
        "out_dir": str(args.out),
        "verbose": not args.quiet,
    }
    if args.iterations is not None:
        changes["iterations"] = args.iterations
    if args.seed is not None:
        changes["seed"] = args.seed
    if args.zstd:
        changes["artifact_name"] = "final_model.int8.ptzst"
    result = train(dataclasses.replace(config, **changes))
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun only rank 0 reports
        _print_summary(result)
    return EXIT_OK


def _print_summary(result: object) -> None:
    from rich.console import Console
    from rich.table import Table

    from reference_model.train import ARTIFACT_BYTE_CAP, TrainResult

    assert isinstance(result, TrainResult)
    table = Table(title="golf-train: reference model", show_header=False)
    table.add_row("round-trip val_bpb", f"{result.val_bpb:.8f}")
    table.add_row("round-trip val_loss", f"{result.val_loss:.8f}")
    table.add_row("pre-quantization val_bpb", f"{result.prequant_val_bpb:.4f}")
    table.add_row("steps / train time", f"{result.steps} / {result.train_time_ms / 1000:.1f} s")
    table.add_row("model bytes (compressed)", f"{result.model_bytes:,}")
    table.add_row("code bytes", f"{result.code_bytes:,}")
    verdict = "[green]under[/green]" if result.under_cap else "[red]OVER[/red]"
    table.add_row("artifact bytes", f"{result.total_bytes:,} ({verdict} the {ARTIFACT_BYTE_CAP:,} cap)")
    table.add_row("artifact", str(result.artifact_path))
    table.add_row("log", str(result.log_path))
    Console().print(table)


def main(argv: list[str] | None = None) -> int:
    code = run_cli(PROGRAM, lambda: _run(argv))
    shutdown_distributed()
    return code


if __name__ == "__main__":
    exit_process(main())
