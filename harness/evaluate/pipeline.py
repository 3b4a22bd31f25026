"""One audited evaluation, end to end: static audit, model, probes, guarded score-first run,
log verification, and the ``golf-eval/1`` report.

Why a separate layer from the CLI: tests, the bench and ``torchrun`` workers run exactly this
sequence without argv or terminal output. This is golf-eval: unlike golf-check it *runs* the
submission's code (its ``golf_entry.py``), by design, always inside the guards.

The submission's side (entry, model, adapter, probes) is loaded by ``harness.evaluate.contestant``,
here or, with ``EvalConfig.isolate``, in the child process of ``harness.evaluate.isolation``.

The guards (``harness.evaluate.guards.guarded``) and the static audit are imported here, not
looked up: an installation missing either fails at start-up instead of scoring unguarded. A guard
may raise ``harness.evaluate.scored.RuntimeViolation`` to stop the run, marked ``recorded = True``
when the session already holds its finding (with the submission's line), so it is not filed twice.

A submission's ``golf_entry.py`` may set ``document_isolation = True`` (or False) to state whether
its model keeps documents apart; the document-isolation probe runs only on that claim (absent: the
model's own ``document_isolation`` attribute decides).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import harness
from harness.catalog import finding
from harness.data.byte_accounting import build_byte_luts, load_tokenizer, target_bytes
from harness.data.embedded import DataPaths
from harness.data.shards import find_shards, load_validation_tokens
from harness.errors import DataFormatError, UsageError
from harness.evaluate.contestant import Contestant, load_contestant, probe_head
from harness.evaluate.distributed import DistContext
from harness.evaluate.evaluator import ChunkProgress, EvalConfig, EvalInputs, EvalResult, run_score_first
from harness.evaluate.guards import guarded
from harness.evaluate.isolation import Isolated, isolated, isolation_json
from harness.evaluate.log import file_sha256
from harness.evaluate.scored import RuntimeViolation
from harness.evaluate.scoring import NORMALIZATION_TOLERANCE
from harness.evaluate.verify import VerifyResult, verify_log
from harness.findings import Finding, Severity, unique_findings
from harness.loader import load_submission

REPORT_SCHEMA = "golf-eval/1"
ARTIFACT_SUFFIXES = (".ptz", ".ptzst")
LOG_NAME = "chunks.jsonl"


@dataclass
class EvalRequest:
    submission: Path | None  # folder (or None: the reference model)
    artifact: Path
    data: DataPaths
    config: EvalConfig
    out_dir: Path
    static_findings: list[Finding] = field(default_factory=list)


@dataclass
class EvalOutcome:
    report: dict[str, Any]
    result: EvalResult | None
    verified: VerifyResult | None
    findings: list[Finding]
    audited: bool
    notes: list[str] = field(default_factory=list)  # what the user should know, e.g. why report.html is missing


def find_artifact(folder: Path) -> Path:
    """The single compressed artifact in ``folder`` (``.ptz`` zlib or ``.ptzst`` zstd)."""
    if not folder.is_dir():
        raise DataFormatError(f"no artifact: {folder} is not a folder; pass --artifact PATH")
    candidates = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in ARTIFACT_SUFFIXES)
    if not candidates:
        raise DataFormatError(f"no artifact (*.ptz or *.ptzst) in {folder}; pass --artifact PATH")
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates)
        raise UsageError(f"several artifacts in {folder} ({names}); choose one with --artifact")
    return candidates[0]


def prepare_inputs(data: DataPaths, artifact: Path, seq_len: int) -> EvalInputs:
    """Validation stream, per-target bytes and the provenance hashes for the log header."""
    tokens = load_validation_tokens(data.val_pattern, seq_len)
    sp = load_tokenizer(data.tokenizer_path)
    luts = build_byte_luts(sp, data.vocab_size)
    vocab_size = max(int(data.vocab_size), luts.size)
    per_target = target_bytes(tokens[:-1], tokens[1:], luts)
    if not per_target.any():
        raise DataFormatError(f"{data.val_pattern}: the validation targets hold 0 bytes, so there is no BPB to score")
    provenance = {
        "artifact": {"name": artifact.name, "sha256": file_sha256(artifact), "bytes": artifact.stat().st_size},
        "tokenizer": {"name": data.tokenizer_path.name, "sha256": file_sha256(data.tokenizer_path)},
        "val_shards": [{"name": p.name, "sha256": file_sha256(p)} for p in find_shards(data.val_pattern)],
    }
    return EvalInputs(tokens=tokens, target_bytes=per_target, vocab_size=vocab_size, provenance=provenance)


def static_audit(target: Path | None) -> list[Finding]:
    """golf-check's findings for the submission (or the reference trainer)."""
    from harness.check.engine import analyze  # libcst and the rule families: loaded once the inputs are known good

    if target is None:
        folder = Path(__file__).resolve().parents[2] / "reference_model"
        target = folder / "train_gpt.py" if (folder / "train_gpt.py").exists() else folder / "train.py"
    return analyze(load_submission(target))


def run_evaluation(
    request: EvalRequest,
    dist_ctx: DistContext | None = None,
    progress: Callable[[ChunkProgress], None] | None = None,
) -> EvalOutcome:
    """The whole audited evaluation; writes the log, report.json, report.md and report.html on rank 0."""
    dist_ctx = dist_ctx or DistContext()
    started = time.perf_counter()
    config = request.config
    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    inputs = prepare_inputs(request.data, request.artifact, config.seq_len)
    log_path = request.out_dir / LOG_NAME
    allowed = [request.artifact, request.data.tokenizer_path, *find_shards(request.data.val_pattern), request.out_dir]
    if request.submission is not None:
        allowed.append(request.submission)
    forbidden = [Path(p) for p in _existing_train_shards(request.data)]
    runtime: list[Finding] = []
    probes_json: dict[str, Any] = {"available": False}
    result: EvalResult | None = None
    timing: dict[str, float] = {}
    # In --isolate mode the child is spawned before the guards go up: the spawn is the harness's own act.
    spawn = _spawn_child(request, inputs, allowed, forbidden) if config.isolate else contextlib.nullcontext(None)
    with spawn as child, guarded(allowed_paths=allowed, forbidden_paths=forbidden) as guard_session:
        try:
            load_started = time.perf_counter()
            contestant: Contestant
            if child is not None:
                child.start()
                contestant = child
            else:
                contestant = load_contestant(request.submission, request.artifact, config.ttt, config.adapter, device)
            timing["load_s"] = time.perf_counter() - load_started
            probe_started = time.perf_counter()
            probe_findings, probes_json = contestant.probe(
                probe_head(inputs.tokens, config.seq_len), config.seq_len, inputs.vocab_size
            )
            runtime.extend(probe_findings)
            timing["probes_s"] = time.perf_counter() - probe_started
            result = run_score_first(
                contestant, inputs, config, log_path if dist_ctx.is_main else None, dist_ctx, progress
            )
            runtime.extend(result.findings)
        except RuntimeViolation as violation:
            if not getattr(violation, "recorded", False):  # a guard's refusal is already in its session
                runtime.append(finding(violation.rule, "<runtime>", 0, str(violation)))
    runtime.extend(guard_session.findings)  # after the guards closed: attempts recorded on exit count too
    guards_json = {"available": True, **guard_session.to_json()}
    if child is not None:  # the child's guards saw the submission's code
        runtime.extend(child.findings)
        guards_json["attempts"] = [*guards_json.get("attempts", []), *child.guards.get("attempts", [])]
    timing.update(result.timing if result else {})
    timing["total_s"] = time.perf_counter() - started
    verified = verify_log(log_path) if dist_ctx.is_main and log_path.exists() else None
    findings = unique_findings([*request.static_findings, *runtime])
    outcome = _outcome(request, inputs, result, verified, findings, probes_json, guards_json, timing, dist_ctx)
    if dist_ctx.is_main:
        from harness.evaluate.report_files import write_reports

        write_reports(request.out_dir, outcome.report)
        from harness.report.html_eval import write_eval_page

        note = write_eval_page(request.out_dir, outcome.report)  # None, or why report.html was not written
        outcome.notes.extend([note] if note else [])
    return outcome


def _spawn_child(
    request: EvalRequest, inputs: EvalInputs, allowed: list[Path], forbidden: list[Path]
) -> contextlib.AbstractContextManager[Isolated]:
    """The --isolate child: its guards refuse the validation shards and the output folder (the log)."""
    withheld = [*find_shards(request.data.val_pattern), request.out_dir]
    return isolated(
        request.submission,
        request.artifact,
        request.config,
        int(inputs.tokens.shape[0]),
        inputs.vocab_size,
        [path for path in allowed if path not in withheld],
        forbidden,
        withheld,
    )


def _existing_train_shards(data: DataPaths) -> list[str]:
    try:
        return [str(p) for p in find_shards(data.train_pattern)]
    except DataFormatError:
        return []


def _outcome(
    request: EvalRequest,
    inputs: EvalInputs,
    result: EvalResult | None,
    verified: VerifyResult | None,
    findings: list[Finding],
    probes_json: dict[str, Any],
    guards_json: dict[str, Any],
    timing: dict[str, float],
    dist_ctx: DistContext,
) -> EvalOutcome:
    has_error = any(f.severity is Severity.ERROR for f in findings)
    log_ok = verified is not None and verified.ok and verified.complete
    audited = bool(result is not None and result.complete and log_ok and not has_error)
    # The headline numbers come from the verified log (recomputed from its sums), not from memory.
    val_bpb = verified.val_bpb if verified is not None else (result.val_bpb if result else None)
    val_loss = verified.val_loss if verified is not None else (result.val_loss if result else None)
    report = {
        "schema": REPORT_SCHEMA,
        "tool": {"name": "golf-eval", "version": harness.__version__, "torch": torch.__version__},
        "submission": str(request.submission) if request.submission is not None else None,
        "artifact": inputs.provenance.get("artifact"),
        "data": {
            "data_dir": str(request.data.data_dir),
            "tokenizer": str(request.data.tokenizer_path),
            "val_tokens": int(inputs.tokens.size),
        },
        "config": request.config.to_json(),
        "device": request.config.device,
        "world_size": dist_ctx.world_size,
        "val_bpb": _finite_or_none(val_bpb),
        "val_loss": _finite_or_none(val_loss),
        "tokens": result.tokens if result else 0,
        "bytes": result.bytes if result else 0,
        "complete": bool(result and result.complete),
        "stopped": _stop_reason(result, inputs),
        "audited": audited,
        "findings": [f.to_json() for f in findings],
        "probes": probes_json,
        "guards": guards_json,
        "isolation": isolation_json(request.config),
        "normalization": {
            "max_abs_logsumexp": result.max_norm_error if result else None,
            "tolerance": NORMALIZATION_TOLERANCE,
            "note": "log-softmax is computed by the evaluator from the model's full logits",
        },
        "timing": {k: round(v, 6) for k, v in timing.items()},
        "throughput_tokens_per_s": (
            round(result.tokens / result.timing["score_s"], 1) if result and result.timing.get("score_s") else None
        ),
        "log": {
            "path": str(request.out_dir / LOG_NAME),
            "head_sha256": verified.head_sha256 if verified else None,
            "verified": bool(verified and verified.ok),
            "errors": list(verified.errors) if verified else ["log missing"],
        },
    }
    return EvalOutcome(report=report, result=result, verified=verified, findings=findings, audited=audited)


def _stop_reason(result: EvalResult | None, inputs: EvalInputs) -> str | None:
    """Why the headline number does not cover the whole validation set (None when it does)."""
    if result is None:
        return "evaluation did not run to the end"
    if result.stopped or result.complete:
        return result.stopped
    return (
        f"partial evaluation (--max-chunks): scored {result.tokens:,} of "
        f"{int(inputs.tokens.size) - 1:,} targets; a partial run is never audited"
    )


def _finite_or_none(value: float | None) -> float | None:
    if value is None or value != value:
        return None
    return value
