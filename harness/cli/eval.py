"""``golf-eval``: the audited score-first evaluation of a submission (or of the reference model).

Usage:
  golf-eval [SUBMISSION] [--artifact PATH] [--data DIR --tokenizer MODEL] [--ttt none|sgd|lora]
            [--stride N] [--seq-len N] [--chunk-tokens N] [--out DIR] [--device cpu|cuda]
            [--max-chunks N] [--ttt-lr LR --ttt-epochs N --ttt-freeze-blocks N]
            [--lora-rank N --lora-lr LR --lora-targets qv|all] [--isolate]
  golf-eval verify LOG [--head SHA256]
  golf-eval report LOG [--against LOG2]… [--output FILE]

With no SUBMISSION it evaluates the reference model of the quick start: the artifact in
``out/reference/`` (``golf-train``'s default output), training it first when it is missing —
train → audit → evaluate. Exit codes: 0 audited, 1 findings / not audited / log tampered,
2 usage or internal error, 3 unusable input, 5 the submission's process failed (``--isolate``).
Under ``torchrun --nproc_per_node=N -m harness.cli.eval …`` every rank scores its share of each
chunk; rank 0 prints and writes files. ``--isolate`` runs the model and adapter in a child process
(``harness.evaluate.isolation``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from harness.cli.common import (
    OneLineArgumentParser,
    exit_process,
    require_eval_extra,
    run_cli,
    shutdown_distributed,
)
from harness.errors import EXIT_BAD_INPUT, EXIT_FINDINGS, EXIT_OK, UsageError
from harness.evaluate.ttt_settings import LORA_DEFAULT_LR, LORA_DEFAULT_RANK, LORA_DEFAULT_TARGETS, LORA_TARGET_CHOICES

PROGRAM = "golf-eval"
REFERENCE_OUT = Path("out/reference")
REFERENCE_SEQ_LEN = 256  # the tiny preset's train_seq_len: the quick start's reference model
BASELINE_SEQ_LEN = 1024


def build_parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(
        prog=PROGRAM, description="Audited score-first evaluation (val_bpb + legality report)."
    )
    parser.add_argument(
        "submission",
        nargs="?",
        type=Path,
        metavar="SUBMISSION",
        help="submission folder (default: the reference model)",
    )
    parser.add_argument(
        "--artifact", type=Path, metavar="PATH", help="compressed model (.ptz/.ptzst); default: the one in the folder"
    )
    parser.add_argument("--data", type=Path, metavar="DIR", help="challenge data dir with fineweb_val_*.bin")
    parser.add_argument("--tokenizer", type=Path, metavar="MODEL", help="SentencePiece model of that data")
    parser.add_argument(
        "--ttt", default="none", metavar="none|sgd|lora", help="test-time training adapter (default none)"
    )
    parser.add_argument(
        "--stride", type=int, metavar="N", help="score every N tokens (default: seq-len, non-overlapping)"
    )
    parser.add_argument(
        "--seq-len",
        type=int,
        metavar="N",
        help=f"window length (default {BASELINE_SEQ_LEN}; reference model {REFERENCE_SEQ_LEN})",
    )
    parser.add_argument(
        "--chunk-tokens", type=int, default=32768, metavar="N", help="targets per score→adapt chunk (default 32768)"
    )
    parser.add_argument(
        "--batch-windows", type=int, metavar="N", help="windows per forward pass (default 65536 // seq-len)"
    )
    parser.add_argument(
        "--ttt-lr", type=float, default=0.002, metavar="LR", help="SGD TTT learning rate (default 0.002)"
    )
    parser.add_argument(
        "--ttt-epochs", type=int, default=3, metavar="N", help="SGD TTT epochs per scored chunk (default 3)"
    )
    parser.add_argument(
        "--ttt-freeze-blocks", type=int, default=0, metavar="N", help="freeze the first N blocks during TTT"
    )
    parser.add_argument(
        "--lora-rank",
        type=int,
        default=LORA_DEFAULT_RANK,
        metavar="N",
        help=f"LoRA TTT rank (default {LORA_DEFAULT_RANK})",
    )
    parser.add_argument(
        "--lora-lr",
        type=float,
        default=LORA_DEFAULT_LR,
        metavar="LR",
        help=f"LoRA TTT Adam learning rate (default {LORA_DEFAULT_LR})",
    )
    parser.add_argument(
        "--lora-targets",
        choices=LORA_TARGET_CHOICES,
        default=LORA_DEFAULT_TARGETS,
        metavar="qv|all",
        help=f"LoRA on query/value projections or on every linear but the head (default {LORA_DEFAULT_TARGETS})",
    )
    parser.add_argument("--out", type=Path, metavar="DIR", help="output folder (default out/eval)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to run (default cpu)")
    parser.add_argument(
        "--max-chunks", type=int, metavar="N", help="stop after N chunks (a partial, never audited, run)"
    )
    parser.add_argument("--seed", type=int, default=1337, metavar="N", help="random seed recorded in the log")
    parser.add_argument(
        "--isolate",
        action="store_true",
        help="run the submission's model and adapter in a child process that never holds an unscored token",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def build_verify_parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(
        prog=f"{PROGRAM} verify", description="Re-check an audit log: chain, order, coverage, fingerprints, BPB."
    )
    parser.add_argument("log", type=Path, metavar="LOG", help="chunks.jsonl written by golf-eval")
    parser.add_argument("--head", metavar="SHA256", help="the log head hash published in report.json")
    return parser


def build_report_parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(
        prog=f"{PROGRAM} report",
        description="Render report.html from chunk logs alone (nothing is re-run); further logs are overlaid.",
    )
    parser.add_argument("log", type=Path, metavar="LOG", help="chunks.jsonl written by golf-eval")
    parser.add_argument(
        "--against",
        type=Path,
        action="append",
        default=[],
        metavar="LOG2",
        help="another run's chunks.jsonl drawn on the same plots (e.g. TTT against no TTT); repeatable",
    )
    parser.add_argument(
        "--output", type=Path, metavar="FILE", help="write the page to FILE (replaced atomically) instead of stdout"
    )
    return parser


def _report(argv: list[str]) -> int:
    """The page from logs only; it exits 0 whenever a page was written — the page itself says
    whether each log verified (``golf-eval verify`` is the command whose exit code judges)."""
    args = build_report_parser().parse_args(argv)
    require_eval_extra(PROGRAM)
    from harness.report.html import require_extra

    require_extra()
    from harness.cli.common import write_output
    from harness.report.html_eval import render_logs

    write_output(render_logs(args.log, list(args.against)), args.output)
    return EXIT_OK


def _verify(argv: list[str]) -> int:
    args = build_verify_parser().parse_args(argv)
    require_eval_extra(PROGRAM)
    from rich.console import Console

    from harness.evaluate.verify import verify_log

    result = verify_log(args.log, expected_head=args.head)
    console = Console()
    for error in result.errors:
        console.print(f"[red]✗[/red] {error}", highlight=False)
    if not result.ok:
        console.print(f"[bold red]log FAILED verification[/bold red] ({len(result.errors)} problem(s))")
        return EXIT_FINDINGS
    state = "complete" if result.complete else "incomplete (the run stopped early or was partial)"
    console.print(
        f"[bold green]log verified[/bold green]: {result.chunks} chunks, {result.tokens:,} targets, "
        f"{result.bytes:,} bytes, val_bpb {result.val_bpb:.8f}, {state}; head {result.head_sha256}",
        highlight=False,
    )
    return EXIT_OK


def _device(name: str) -> str:

    import torch

    if name == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        return f"cuda:{local_rank}"
    return "cpu"


def _reference_artifact(data: Any, console: Any) -> Path:
    """The quick start's reference artifact, trained first when it is missing."""
    from harness.errors import DataFormatError
    from harness.evaluate.pipeline import find_artifact

    try:
        return find_artifact(REFERENCE_OUT)
    except DataFormatError:
        from reference_model.train import TrainConfig, train

        console.print(f"no reference artifact in {REFERENCE_OUT}/: training the tiny reference model first")
        config = TrainConfig.tiny(
            data_path=str(data.data_dir),
            tokenizer_path=str(data.tokenizer_path),
            vocab_size=data.vocab_size,
            out_dir=str(REFERENCE_OUT),
            verbose=False,
        )
        result = train(config)
        console.print(f"trained: round-trip val_bpb {result.val_bpb:.8f}, artifact {result.total_bytes:,} bytes")
        return result.artifact_path


def _seq_len(args: Any) -> int:
    return args.seq_len or (REFERENCE_SEQ_LEN if args.submission is None else BASELINE_SEQ_LEN)


def _check_settings(args: Any) -> None:
    """Reject impossible settings before anything expensive (static audit, training) runs."""
    from harness.evaluate.adapters import available_adapters
    from harness.evaluate.contestant import ENTRY_FILE
    from harness.evaluate.windows import plan_windows

    plan_windows(_seq_len(args) + 1, _seq_len(args), args.stride or _seq_len(args))
    own_entry = args.submission is not None and (args.submission / ENTRY_FILE).is_file()
    if args.ttt not in available_adapters() and not own_entry:
        raise UsageError(f"unknown TTT adapter '{args.ttt}' (known: {', '.join(available_adapters())})")
    if args.chunk_tokens < 1 or (args.batch_windows is not None and args.batch_windows < 1):
        raise UsageError("--chunk-tokens and --batch-windows must be positive")
    if args.lora_rank < 1 or not args.lora_lr > 0:
        raise UsageError("--lora-rank must be ≥ 1 and --lora-lr positive")


def _evaluate(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    require_eval_extra(PROGRAM)
    import torch
    from rich.console import Console

    from harness.data.embedded import resolve_data
    from harness.evaluate.adapters.base import AdapterConfig
    from harness.evaluate.distributed import broadcast_text, init_from_env
    from harness.evaluate.evaluator import EvalConfig
    from harness.evaluate.pipeline import EvalRequest, find_artifact, run_evaluation, static_audit

    device = _device(args.device)
    dist_ctx = init_from_env(torch.device(device))
    console = Console(quiet=not dist_ctx.is_main)
    if args.submission is not None and not args.submission.is_dir():
        raise UsageError(f"{args.submission} is not a submission folder")
    if args.isolate and dist_ctx.enabled:
        raise UsageError("--isolate runs the submission in one child process: it cannot run under torchrun")
    data = resolve_data(args.data, args.tokenizer)
    _check_settings(args)
    if args.artifact is not None:
        artifact = args.artifact
    elif args.submission is not None:
        artifact = find_artifact(args.submission)
    else:
        artifact = _reference_artifact(data, console)
    if not artifact.is_file():
        from harness.errors import DataFormatError

        raise DataFormatError(f"artifact {artifact} does not exist")
    seq_len = _seq_len(args)
    static = static_audit(args.submission)  # after the cheap checks: fail fast on bad input
    adapter_config = AdapterConfig(
        lr=args.ttt_lr,
        epochs=args.ttt_epochs,
        freeze_blocks=args.ttt_freeze_blocks,
        lora_rank=args.lora_rank,
        lora_lr=args.lora_lr,
        lora_targets=args.lora_targets,
        seq_len=seq_len,
        device=device,
        dist=dist_ctx,
    )
    config = EvalConfig(
        seq_len=seq_len,
        stride=args.stride,
        chunk_tokens=args.chunk_tokens,
        batch_windows=args.batch_windows,
        ttt=args.ttt,
        adapter=adapter_config,
        max_chunks=args.max_chunks,
        seed=args.seed,
        device=device,
        autocast=device.startswith("cuda"),
        isolate=args.isolate,
    )
    out_dir = args.out or Path("out/eval")
    request = EvalRequest(
        submission=args.submission, artifact=artifact, data=data, config=config, out_dir=out_dir, static_findings=static
    )
    outcome = _with_progress(console, args.quiet or not dist_ctx.is_main, request, dist_ctx, run_evaluation)
    if dist_ctx.is_main:
        _print_summary(console, outcome.report, out_dir)
        for note in outcome.notes:
            console.print(f"[yellow]{note}[/yellow]", highlight=False)
    if outcome.result is None and not outcome.findings:
        code = EXIT_BAD_INPUT
    else:
        code = EXIT_OK if outcome.audited else EXIT_FINDINGS
    # Only rank 0 verified the log, so its verdict is every rank's exit code.
    return int(broadcast_text(str(code), dist_ctx)) if dist_ctx.enabled else code


def _with_progress(console: Any, quiet: bool, request: Any, dist_ctx: Any, runner: Any) -> Any:
    if quiet:
        return runner(request, dist_ctx)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("chunks · running BPB {task.fields[bpb]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("eval", total=None, bpb="…")

        def update(state: Any) -> None:
            progress.update(task, completed=state.index + 1, total=state.num_chunks, bpb=f"{state.running_bpb:.6f}")

        return runner(request, dist_ctx, update)


def _print_summary(console: Any, report: dict[str, Any], out_dir: Path) -> None:
    from rich.table import Table

    verdict = "[bold green]AUDITED[/bold green]" if report["audited"] else "[bold red]NOT AUDITED[/bold red]"
    table = Table(title=f"golf-eval: {report['submission'] or 'reference model'}", show_header=False)
    bpb = report["val_bpb"]
    table.add_row("val_bpb", f"{bpb:.8f}" if bpb is not None else "n/a")
    table.add_row("val_loss", f"{report['val_loss']:.8f}" if report["val_loss"] is not None else "n/a")
    table.add_row("targets / bytes", f"{report['tokens']:,} / {report['bytes']:,}")
    artifact = report.get("artifact") or {}
    table.add_row("artifact", f"{artifact.get('name', '?')}: {artifact.get('bytes', 0):,} compressed model bytes")
    table.add_row("TTT", str(report["config"]["ttt"]))
    table.add_row("throughput", f"{report['throughput_tokens_per_s'] or 0:,.0f} tokens/s")
    table.add_row("log", f"{report['log']['path']} ({'verified' if report['log']['verified'] else 'NOT verified'})")
    table.add_row("verdict", verdict)
    console.print(table)
    for finding in report["findings"]:
        colour = {"error": "red", "warning": "yellow"}.get(finding["severity"], "cyan")
        console.print(
            f"[{colour}]{finding['rule']} {finding['severity']}[/{colour}] {finding['file']}:{finding['line']} {finding['message']}",
            highlight=False,
        )
    if report.get("stopped"):
        console.print(f"stopped: {report['stopped']}", highlight=False)
    pages = [out_dir / name for name in ("report.json", "report.md", "report.html") if (out_dir / name).is_file()]
    console.print(f"report: {' · '.join(str(page) for page in pages)}", highlight=False)


def _run(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "verify":
        return _verify(argv[1:])
    if argv and argv[0] == "report":
        return _report(argv[1:])
    return _evaluate(argv)


def main(argv: list[str] | None = None) -> int:
    code = run_cli(PROGRAM, lambda: _run(argv))
    shutdown_distributed()
    return code


if __name__ == "__main__":
    exit_process(main())
