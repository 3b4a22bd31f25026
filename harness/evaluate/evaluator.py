"""The strict score-first evaluator: score a chunk, log it durably, only then let the adapter learn.

Why this order is enforced here and not left to the model: the challenge's test-time-training
rule (README FAQ, #402, #677, #1017 C3) is about *when* a token may influence the weights. The
evaluator owns the validation tensor, fixes each chunk's score (NLL, targets, bytes) and writes
it with fsync before the adapter gets a read-only view that ends at the scored frontier. Model
state is fingerprinted around every step, so the log itself proves that scoring did not change
the model and that nothing changed it between adaptation and the next score.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import harness
from harness.catalog import finding
from harness.errors import UsageError
from harness.evaluate.adapters.base import Adapter, AdapterConfig
from harness.evaluate.contestant import Contestant, InProcess
from harness.evaluate.distributed import DistContext, any_rank, sum_float64
from harness.evaluate.log import LOG_SCHEMA, AuditLogWriter, RunningTotals, json_float
from harness.evaluate.scored import ChunkInfo, RuntimeViolation, newly_scored
from harness.evaluate.scoring import score_windows
from harness.evaluate.windows import ChunkPlan, plan_evaluation
from harness.findings import Finding

BATCH_TOKENS = 65_536  # the baseline's validation batch per GPU (524,288 tokens over 8 GPUs)


@dataclass(frozen=True)
class EvalConfig:
    seq_len: int = 1024
    stride: int | None = None  # None: stride = seq_len (plain non-overlapping evaluation)
    chunk_tokens: int = 32768
    batch_windows: int | None = None  # None: BATCH_TOKENS // seq_len, the baseline's per-GPU val batch
    ttt: str = "none"
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    max_chunks: int | None = None
    seed: int = 1337
    device: str = "cpu"
    autocast: bool = False  # bf16 autocast for the forward pass (the trainer's choice on CUDA)
    isolate: bool = False  # the model and adapter run in a child process (golf-eval --isolate)

    @property
    def effective_batch_windows(self) -> int:
        return self.batch_windows if self.batch_windows is not None else max(1, BATCH_TOKENS // self.seq_len)

    @property
    def effective_stride(self) -> int:
        return self.stride if self.stride is not None else self.seq_len

    def to_json(self) -> dict[str, Any]:
        return {
            "seq_len": self.seq_len,
            "stride": self.effective_stride,
            "chunk_tokens": self.chunk_tokens,
            "batch_windows": self.effective_batch_windows,
            "ttt": self.ttt,
            "adapter": self.adapter.to_json(self.ttt) if self.ttt != "none" else None,
            "max_chunks": self.max_chunks,
            "autocast": self.autocast,
            "isolate": self.isolate,
        }


@dataclass
class EvalInputs:
    """What is scored: the validation stream as the baseline reads it and each target's bytes."""

    tokens: np.ndarray  # [N] token ids
    target_bytes: np.ndarray  # int64 [N-1]: bytes of target t (token t+1 after token t)
    vocab_size: int
    provenance: dict[str, Any] = field(default_factory=dict)  # file hashes for the log header


@dataclass(frozen=True)
class ChunkProgress:
    index: int
    num_chunks: int
    targets_done: int
    targets_total: int
    running_bpb: float


@dataclass
class EvalResult:
    val_bpb: float
    val_loss: float
    nll_sum: float
    tokens: int
    bytes: int
    chunks_done: int
    num_chunks: int
    complete: bool
    stopped: str | None
    findings: list[Finding]
    timing: dict[str, float]
    log_path: Path | None
    log_head: str | None
    max_norm_error: float


def _runtime_finding(rule: str, message: str, where: str) -> Finding:
    return finding(rule, where, 0, message)


def _check_inputs(inputs: EvalInputs) -> None:
    if inputs.target_bytes.shape[0] != inputs.tokens.shape[0] - 1:
        raise UsageError(f"target_bytes has {inputs.target_bytes.shape[0]} entries for {inputs.tokens.shape[0]} tokens")
    if inputs.tokens.size and int(inputs.tokens.max()) >= inputs.vocab_size:
        raise UsageError(f"validation token id {int(inputs.tokens.max())} ≥ vocabulary size {inputs.vocab_size}")


def evaluate(
    model: nn.Module,
    adapter: Adapter,
    inputs: EvalInputs,
    config: EvalConfig,
    log_path: Path | None,
    dist_ctx: DistContext | None = None,
    progress: Callable[[ChunkProgress], None] | None = None,
    adapter_origin: str = "<adapter>",
) -> EvalResult:
    """Run the score → log → adapt loop with the model and adapter in this process."""
    if config.isolate:
        raise UsageError("evaluate() runs the model in this process; an isolated run goes through run_evaluation")
    contestant = InProcess(model, adapter, adapter_origin)
    return run_score_first(contestant, inputs, config, log_path, dist_ctx, progress)


def run_score_first(
    contestant: Contestant,
    inputs: EvalInputs,
    config: EvalConfig,
    log_path: Path | None,
    dist_ctx: DistContext | None = None,
    progress: Callable[[ChunkProgress], None] | None = None,
) -> EvalResult:
    """Run the score → log → adapt loop over every chunk; rank 0 writes ``log_path``.

    The contestant gets the tokens of a chunk only after the chunk's log line is on disk
    (``newly_scored``); the validation stream itself stays here.
    """
    dist_ctx = dist_ctx or DistContext()
    _check_inputs(inputs)
    started = time.perf_counter()
    device = torch.device(config.device)
    plan = plan_evaluation(int(inputs.tokens.shape[0]), config.seq_len, config.effective_stride, config.chunk_tokens)
    chunks = plan.chunks if config.max_chunks is None else plan.chunks[: max(config.max_chunks, 1)]
    byte_prefix = np.concatenate([[0], np.cumsum(inputs.target_bytes.astype(np.int64))])
    tokens_device = torch.from_numpy(inputs.tokens.astype(np.int64)).to(device)
    released = 0  # tokens [0, released) have been handed to the contestant
    model = contestant.model
    model.eval()
    setup_started = time.perf_counter()
    fp_start = contestant.fingerprint()
    sha_start = contestant.state_sha256()
    setup_audit_s = time.perf_counter() - setup_started
    writer = AuditLogWriter(log_path) if (dist_ctx.is_main and log_path is not None) else None
    header = {
        "kind": "header",
        "schema": LOG_SCHEMA,
        "tool": "golf-harness",
        "version": harness.__version__,
        **inputs.provenance,
        "config": config.to_json(),
        "adapter_name": contestant.adapter_name,
        "seed": config.seed,
        "torch": torch.__version__,
        "device": str(device),
        "world_size": dist_ctx.world_size,
        "total_tokens": plan.total_tokens,
        "total_targets": plan.total_targets,
        "scope_targets": chunks[-1].target_end,
        "num_chunks": len(chunks),
        "vocab_size": inputs.vocab_size,
        "fingerprint_start": fp_start,
        "state_sha256_start": sha_start,
    }
    findings: list[Finding] = []
    totals = RunningTotals()
    timing = {"score_s": 0.0, "adapt_s": 0.0, "audit_s": setup_audit_s}
    fp_after_adapt = fp_start
    stopped: str | None = None
    max_norm_error = 0.0
    chunks_done = 0
    try:
        if writer:
            audit_started = time.perf_counter()
            writer.write(header)
            timing["audit_s"] += time.perf_counter() - audit_started
        for chunk in chunks:
            chunk_started = time.perf_counter()
            audit_started = time.perf_counter()
            fp_before = contestant.fingerprint()
            timing["audit_s"] += time.perf_counter() - audit_started
            score_started = time.perf_counter()
            model.eval()
            try:
                with torch.inference_mode():
                    sums = score_windows(
                        model,
                        tokens_device,
                        chunk.windows,
                        inputs.vocab_size,
                        config.effective_batch_windows,
                        dist_ctx,
                        config.autocast,
                    )
            except RuntimeViolation as violation:  # a guard refused something the model tried
                if not getattr(violation, "recorded", False):  # else the guard filed it, with its line
                    findings.append(_runtime_finding(violation.rule, str(violation), "<model>"))
                stopped = f"stopped while scoring chunk {chunk.index}: {violation}"
                break
            (nll_sum, norm_error) = sum_float64([sums.nll_sum, sums.max_norm_error], dist_ctx, device)
            timing["score_s"] += time.perf_counter() - score_started
            max_norm_error = max(max_norm_error, norm_error)
            audit_started = time.perf_counter()
            fp_after = contestant.fingerprint()
            byte_count = int(byte_prefix[chunk.target_end] - byte_prefix[chunk.target_start])
            totals.add(nll_sum, chunk.targets, byte_count)
            if writer:
                writer.write(
                    _chunk_line(
                        chunk,
                        nll_sum,
                        byte_count,
                        totals,
                        fp_after_adapt,
                        fp_before,
                        fp_after,
                        time.perf_counter() - chunk_started,
                    )
                )
            timing["audit_s"] += time.perf_counter() - audit_started
            chunks_done += 1
            findings.extend(_fingerprint_findings(chunk, fp_after_adapt, fp_before, fp_after))
            if progress and dist_ctx.is_main:
                progress(ChunkProgress(chunk.index, len(chunks), totals.targets, chunks[-1].target_end, totals.bpb))
            if contestant.adapter_active and chunk.index < len(chunks) - 1:
                adapt_started = time.perf_counter()
                fresh = newly_scored(inputs.tokens, released, chunk.target_end)
                released += int(fresh.shape[0])
                refused = contestant.adapt(fresh, _chunk_info(chunk, len(chunks), config.seq_len))
                timing["adapt_s"] += time.perf_counter() - adapt_started
                if any_rank(refused is not None, dist_ctx):
                    refused = refused or RuntimeViolation("the adapter was stopped on another rank")
                    if not getattr(refused, "recorded", False):  # else the guard filed it, with its line
                        findings.append(_runtime_finding(refused.rule, str(refused), contestant.origin))
                    stopped = f"stopped after chunk {chunk.index}: {refused}"
                    break
                audit_started = time.perf_counter()
                fp_after_adapt = contestant.fingerprint()
                timing["audit_s"] += time.perf_counter() - audit_started
            else:
                fp_after_adapt = fp_after
        audit_started = time.perf_counter()
        fp_end = contestant.fingerprint()
        sha_end = contestant.state_sha256()
        complete = stopped is None and chunks[-1].target_end == plan.total_targets and chunks_done == len(chunks)
        if writer:
            writer.write(
                {
                    "kind": "summary",
                    "chunks": chunks_done,
                    "targets": totals.targets,
                    "bytes": totals.bytes,
                    "nll_sum": totals.nll_sum.hex(),
                    "val_loss": json_float(totals.loss),
                    "val_bpb": json_float(totals.bpb),
                    "fingerprint_end": fp_end,
                    "state_sha256_end": sha_end,
                    "stopped": stopped,
                    "complete": complete,
                    "findings": [f.to_json() for f in findings],
                    "wall_s": time.perf_counter() - started,
                }
            )
        timing["audit_s"] += time.perf_counter() - audit_started
    finally:
        if writer:
            writer.close()
    timing["total_s"] = time.perf_counter() - started
    return EvalResult(
        val_bpb=totals.bpb,
        val_loss=totals.loss,
        nll_sum=totals.nll_sum,
        tokens=totals.targets,
        bytes=totals.bytes,
        chunks_done=chunks_done,
        num_chunks=len(chunks),
        complete=complete,
        stopped=stopped,
        findings=findings,
        timing=timing,
        log_path=log_path if writer else None,
        log_head=writer.head if writer else None,
        max_norm_error=max_norm_error,
    )


def _chunk_info(chunk: ChunkPlan, num_chunks: int, seq_len: int) -> ChunkInfo:
    return ChunkInfo(
        index=chunk.index,
        num_chunks=num_chunks,
        target_start=chunk.target_start,
        target_end=chunk.target_end,
        seq_len=seq_len,
    )


def _chunk_line(
    chunk: ChunkPlan,
    nll_sum: float,
    byte_count: int,
    totals: RunningTotals,
    fp_after_adapt: str,
    fp_before: str,
    fp_after: str,
    wall_s: float,
) -> dict[str, Any]:
    return {
        "kind": "chunk",
        "index": chunk.index,
        "target_start": chunk.target_start,
        "target_end": chunk.target_end,
        "windows": chunk.windows.count,
        "targets": chunk.targets,
        "bytes": byte_count,
        "nll_sum": nll_sum.hex(),
        "running_bpb": json_float(totals.bpb),
        "fp_after_prev_adapt": fp_after_adapt,
        "fp_before_score": fp_before,
        "fp_after_score": fp_after,
        "wall_s": round(wall_s, 6),
    }


def _fingerprint_findings(chunk: ChunkPlan, fp_after_adapt: str, fp_before: str, fp_after: str) -> list[Finding]:
    found = []
    if fp_before != fp_after:
        found.append(
            _runtime_finding(
                "PG101",
                f"model state changed while chunk {chunk.index} was being scored "
                "(an update from the tokens being scored: score-before-update violated)",
                "<model>",
            )
        )
    if fp_after_adapt != fp_before:
        found.append(
            _runtime_finding(
                "PG101", f"model state changed between adaptation and scoring of chunk {chunk.index}", "<model>"
            )
        )
    return found
