"""One audited evaluation, end to end: static audit, model, probes, guarded score-first run,
log verification, and the ``golf-eval/1`` report.

Why a separate layer from the CLI: tests, the bench and ``torchrun`` workers run exactly this
sequence without argv or terminal output. This is golf-eval: unlike golf-check it *runs* the
submission's code (its ``golf_entry.py``), by design, inside the guards when they are present.

Plug-in points written by a later part (called only when the module exists):
- ``harness.evaluate.probes.run_probes(model, tokens, *, seq_len, vocab_size, device, bos_id)``
  → an object with ``findings: list[Finding]`` and ``to_json() -> dict`` (``tokens``: the first
  validation tokens as an int64 tensor on ``device``; the model is in eval mode; probes must not
  change model state — the evaluator fingerprints it before and after);
- ``harness.evaluate.guards.guarded(*, allowed_paths, forbidden_paths)`` → a context manager
  yielding an object with ``findings: list[Finding]`` (refused/blocked attempts) and
  ``to_json() -> dict`` (report.json ``guards``); a guard may also raise
  ``harness.evaluate.scored.RuntimeViolation`` to stop the run, marked ``recorded = True`` when
  the session already holds its finding (with the submission's line), so it is not filed twice.

A submission's ``golf_entry.py`` may set ``document_isolation = True`` (or False) to state whether
its model keeps documents apart; the document-isolation probe runs only on that claim (absent: the
model's own ``document_isolation`` attribute decides).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

import harness
from harness.data.byte_accounting import build_byte_luts, load_tokenizer, target_bytes
from harness.data.embedded import DataPaths
from harness.data.shards import find_shards, load_validation_tokens
from harness.errors import DataFormatError, HarnessError, UsageError
from harness.evaluate.adapters import make_adapter
from harness.evaluate.adapters.base import Adapter
from harness.evaluate.distributed import DistContext
from harness.evaluate.evaluator import ChunkProgress, EvalConfig, EvalInputs, EvalResult, evaluate
from harness.evaluate.fingerprint import Fingerprinter
from harness.evaluate.log import file_sha256
from harness.evaluate.scored import RuntimeViolation
from harness.evaluate.scoring import NORMALIZATION_TOLERANCE
from harness.evaluate.verify import VerifyResult, verify_log
from harness.findings import Finding, Severity, unique_findings

REPORT_SCHEMA = "golf-eval/1"
ENTRY_FILE = "golf_entry.py"
ARTIFACT_SUFFIXES = (".ptz", ".ptzst")
LOG_NAME = "chunks.jsonl"
BOS_ID = 1


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


def optional_module(name: str) -> ModuleType | None:
    """Import ``name`` if it exists; a missing *dependency* inside it is still an error."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return None
        raise


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


def load_entry(folder: Path | None) -> ModuleType | None:
    """The submission's ``golf_entry.py``, loaded by file path (never via sys.path)."""
    if folder is None or not folder.is_dir() or not (folder / ENTRY_FILE).is_file():
        return None
    path = folder / ENTRY_FILE
    name = "golf_entry_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise DataFormatError(f"{path}: cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    except HarnessError:
        raise
    except Exception as exc:  # noqa: BLE001 — submission code: any failure is bad input
        sys.modules.pop(name, None)
        raise DataFormatError(f"{path}: failed to import ({type(exc).__name__}: {exc})") from None
    return module


def load_model(artifact: Path, entry: ModuleType | None, device: torch.device) -> nn.Module:
    """The model to score: the entry point's ``load_model`` or the reference architecture."""
    if entry is not None and hasattr(entry, "load_model"):
        try:
            model = entry.load_model(str(artifact), device)
        except (HarnessError, RuntimeViolation):
            raise
        except Exception as exc:  # noqa: BLE001 — submission code
            raise DataFormatError(f"{ENTRY_FILE}: load_model failed ({type(exc).__name__}: {exc})") from None
        if not isinstance(model, nn.Module) or not callable(getattr(model, "forward_logits", None)):
            raise DataFormatError(f"{ENTRY_FILE}: load_model must return an nn.Module with forward_logits(input_ids)")
        return model.to(device)
    from reference_model.quantize import model_from_artifact

    return model_from_artifact(artifact).to(device)


def build_adapter(name: str, model: nn.Module, config: EvalConfig, entry: ModuleType | None) -> tuple[Adapter, str]:
    """The adapter and where it came from (for findings): the submission's or a built-in one."""
    if name != "none" and entry is not None and hasattr(entry, "make_adapter"):
        adapter = entry.make_adapter(model, config.adapter)
        if not callable(getattr(adapter, "adapt", None)):
            raise DataFormatError(f"{ENTRY_FILE}: make_adapter must return an object with adapt(model, scored, chunk)")
        return adapter, ENTRY_FILE
    return make_adapter(name, model, config.adapter), f"<adapter {name}>"


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


def static_audit(target: Path | None) -> tuple[list[Finding], bool]:
    """golf-check's findings for the submission (or the reference trainer); (findings, ran)."""
    loader = optional_module("harness.loader")
    if loader is None:
        return [], False
    from harness.check.engine import analyze

    if target is None:
        folder = Path(__file__).resolve().parents[2] / "reference_model"
        target = folder / "train_gpt.py" if (folder / "train_gpt.py").exists() else folder / "train.py"
    return analyze(loader.load_submission(target)), True


class _NoGuards:
    """Stands in for the guard session when ``harness.evaluate.guards`` is not installed."""

    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def to_json(self) -> dict[str, Any]:
        return {"available": False}


@contextlib.contextmanager
def _guards(allowed: list[Path], forbidden: list[Path]) -> Iterator[Any]:
    """Run inside ``guards.guarded`` when that module exists; yields its live session."""
    guards = optional_module("harness.evaluate.guards")
    if guards is None:
        yield _NoGuards()
        return
    with guards.guarded(allowed_paths=allowed, forbidden_paths=forbidden) as session:
        yield session


def _guards_json(session: Any) -> dict[str, Any]:
    if isinstance(session, _NoGuards):
        return session.to_json()
    return {"available": True, **session.to_json()}


def entry_document_isolation(entry: ModuleType | None) -> bool | None:
    """The entry's document-isolation claim (``document_isolation = True/False``), or None."""
    claim = getattr(entry, "document_isolation", None) if entry is not None else None
    if claim is not None and not isinstance(claim, bool):
        raise DataFormatError(f"{ENTRY_FILE}: document_isolation must be True or False (got {claim!r})")
    return claim


def _run_probes(
    model: nn.Module, inputs: EvalInputs, config: EvalConfig, device: torch.device, document_isolation: bool | None
) -> tuple[list[Finding], dict[str, Any]]:
    probes = optional_module("harness.evaluate.probes")
    if probes is None:
        return [], {"available": False}
    head = torch.from_numpy(inputs.tokens[: min(inputs.tokens.size, 4 * config.seq_len + 1)].astype(np.int64)).to(
        device
    )
    fingerprint = Fingerprinter()
    before = fingerprint(model)
    outcome = probes.run_probes(
        model,
        head,
        seq_len=config.seq_len,
        vocab_size=inputs.vocab_size,
        device=device,
        bos_id=BOS_ID,
        document_isolation=document_isolation,
    )
    found = list(outcome.findings)
    if fingerprint(model) != before:
        found.append(Finding("PG101", Severity.ERROR, "<model>", 0, "model state changed while the runtime probes ran"))
    return found, {"available": True, **outcome.to_json()}


def run_evaluation(
    request: EvalRequest,
    dist_ctx: DistContext | None = None,
    progress: Callable[[ChunkProgress], None] | None = None,
) -> EvalOutcome:
    """The whole audited evaluation; writes the log, report.json and report.md on rank 0."""
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
    with _guards(allowed, forbidden) as guard_session:
        try:
            load_started = time.perf_counter()
            entry = load_entry(request.submission)
            isolation_claim = entry_document_isolation(entry)
            model = load_model(request.artifact, entry, device)
            model.eval()
            adapter, origin = build_adapter(config.ttt, model, config, entry)
            timing["load_s"] = time.perf_counter() - load_started
            probe_started = time.perf_counter()
            probe_findings, probes_json = _run_probes(model, inputs, config, device, isolation_claim)
            runtime.extend(probe_findings)
            timing["probes_s"] = time.perf_counter() - probe_started
            result = evaluate(
                model,
                adapter,
                inputs,
                config,
                log_path if dist_ctx.is_main else None,
                dist_ctx,
                progress,
                adapter_origin=origin,
            )
            runtime.extend(result.findings)
        except RuntimeViolation as violation:
            if not getattr(violation, "recorded", False):  # a guard's refusal is already in its session
                runtime.append(Finding(violation.rule, Severity.ERROR, "<runtime>", 0, str(violation)))
    runtime.extend(guard_session.findings)  # after the guards closed: attempts recorded on exit count too
    guards_json = _guards_json(guard_session)
    timing.update(result.timing if result else {})
    timing["total_s"] = time.perf_counter() - started
    verified = verify_log(log_path) if dist_ctx.is_main and log_path.exists() else None
    findings = unique_findings([*request.static_findings, *runtime])
    outcome = _outcome(request, inputs, result, verified, findings, probes_json, guards_json, timing, dist_ctx)
    if dist_ctx.is_main:
        from harness.evaluate.report_files import write_reports

        write_reports(request.out_dir, outcome.report)
    return outcome


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
