"""Runtime probes: perturbation tests of the model actually being scored.

Why run them: the static checker reads code, but a submission's ``golf_entry.py`` can build any
model. Condition C1 of #1017 says the distribution at position t may depend only on tokens
before the target; the direct test (R-C1-CAUSAL, the "flip a future token" test of PR #1240) is
to change every input token at positions ≥ t and require the logits at positions < t to stay
put. The document-isolation probe (R-DOC-BOUNDARY, Q4) is the packed-stream test: when a model
claims to isolate documents, changing the last token of one document must not move any
prediction of the next one (PG203, a warning: the rule is contested).

Numerics: every forward pass here has the same batch shape ``[replacements, L]`` and rows are
compared only with the same row of the unperturbed batch, so identical kernels see identical
prefixes; a causal model then reproduces its logits exactly and the tolerance only absorbs
nondeterministic kernels. Probes run under ``torch.inference_mode()`` and never change model
state (the evaluator fingerprints the model around them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.catalog import finding
from harness.evaluate.adapters.base import forward_logits
from harness.evaluate.scored import RuntimeViolation
from harness.findings import Finding

CAUSALITY_RULE = "PG201"
ISOLATION_RULE = "PG203"
DEFAULT_TOLERANCE = 1e-5  # max |Δlogit| in float32; a causal model on one device gives exactly 0
MAX_LISTED_POSITIONS = 16


@dataclass
class ProbeResult:
    """One probe's outcome, JSON-able for report.json ``probes``.

    ``status``: ``pass``, ``fail``, ``skipped`` (not applicable, reason in ``details``) or
    ``error`` (the model could not be run on probe inputs; scoring will report the problem).
    """

    name: str
    rule: str
    status: str
    tolerance: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rule": self.rule,
            "status": self.status,
            "tolerance": self.tolerance,
            **self.details,
        }


@dataclass
class ProbeReport:
    results: list[ProbeResult]
    findings: list[Finding]
    tolerance: float

    def to_json(self) -> dict[str, Any]:
        return {"tolerance": self.tolerance, "results": [result.to_json() for result in self.results]}


class _ProbeRunner:
    """Shared state of one probing session: the model, device, vocabulary and random source."""

    def __init__(self, model: nn.Module, device: torch.device, replacements: int, seed: int) -> None:
        self.model = model
        self.device = device
        self.replacements = replacements
        self.rng = np.random.default_rng(seed)
        self.vocab_size = 0  # set from the first forward pass unless given

    def logits(self, batch: np.ndarray) -> torch.Tensor:
        """Float32 logits ``[B, L, V]`` of an int64 batch; shape errors raise ``ValueError``."""
        inputs = torch.from_numpy(batch).to(self.device)
        with torch.inference_mode():
            out = forward_logits(self.model, inputs)
        if not isinstance(out, torch.Tensor) or out.dim() != 3 or tuple(out.shape[:2]) != tuple(batch.shape):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"model returned {shape} for input {tuple(batch.shape)}; expected [B, T, V] logits")
        return out.float()

    def other_tokens(self, original: np.ndarray, avoid: int | None = None) -> np.ndarray:
        """Uniform random tokens that differ from ``original`` everywhere (and from ``avoid``)."""
        excluded = np.stack([original, original if avoid is None else np.full_like(original, avoid)])
        low, high = excluded.min(axis=0), excluded.max(axis=0)
        distinct = np.where(low == high, 1, 2)
        if self.vocab_size - int(distinct.max()) < 1:
            raise ValueError(f"vocabulary of {self.vocab_size} tokens is too small to perturb")
        drawn = self.rng.integers(0, self.vocab_size - distinct)
        drawn = drawn + (drawn >= low)  # skip the lower excluded value, then the higher one
        return drawn + ((drawn >= high) & (distinct == 2))


def _position_diffs(base: torch.Tensor, changed: torch.Tensor) -> np.ndarray:
    """Per position: max |Δlogit| over rows and vocabulary; NaN/inf mismatches count as infinite."""
    both_nan = torch.isnan(base) & torch.isnan(changed)
    same = base == changed  # equal infinities give a NaN difference otherwise
    delta = torch.where(both_nan | same, torch.zeros_like(base), (changed - base).abs())
    delta = torch.nan_to_num(delta, nan=float("inf"))
    return delta.amax(dim=(0, 2)).cpu().double().numpy()


def _probe_positions(length: int, count: int, rng: np.random.Generator) -> list[int]:
    """The first and last possible cut points plus random ones between (sorted, distinct)."""
    candidates = list(range(1, length))
    if len(candidates) <= count:
        return candidates
    chosen = {1, length - 1}
    middle = np.array(candidates[1:-1])
    chosen.update(int(t) for t in rng.choice(middle, size=max(count - 2, 0), replace=False))
    return sorted(chosen)


ProbeOutcome = tuple[ProbeResult, list[Finding]]


def _causality(runner: _ProbeRunner, window: np.ndarray, positions: int, tolerance: float) -> ProbeOutcome:
    length = window.shape[0]
    base_batch = np.repeat(window[None, :], runner.replacements, axis=0)
    base = runner.logits(base_batch)
    if not runner.vocab_size:
        runner.vocab_size = int(base.shape[-1])
    cuts = _probe_positions(length, positions, runner.rng)
    per_cut: list[dict[str, Any]] = []
    failing = []
    for cut in cuts:
        batch = base_batch.copy()
        for row in range(runner.replacements):
            batch[row, cut:] = runner.other_tokens(window[cut:])
        diffs = _position_diffs(base[:, :cut], runner.logits(batch)[:, :cut])
        affected = [int(p) for p in np.flatnonzero(diffs > tolerance)]
        per_cut.append({"cut": cut, "max_abs_diff": float(diffs.max()), "affected": affected[:MAX_LISTED_POSITIONS]})
        if affected:
            failing.append((cut, affected, float(diffs.max())))
    details = {
        "window_tokens": length,
        "replacements": runner.replacements,
        "cuts": per_cut,
        "max_abs_diff": max(entry["max_abs_diff"] for entry in per_cut),
    }
    findings = []
    if failing:
        cut, affected, worst = failing[0]
        findings.append(
            finding(
                CAUSALITY_RULE,
                "<model>",
                0,
                f"logits at position {affected[0]} change when the input tokens at positions ≥ {cut} change "
                f"(max |Δlogit| {worst:.3g} > tolerance {tolerance:g}; {len(failing)} of {len(cuts)} probed cuts "
                f"leak): the model looks ahead at tokens it has not yet predicted",
            )
        )
    return ProbeResult("causality", CAUSALITY_RULE, "fail" if failing else "pass", tolerance, details), findings


def _boundary(window: np.ndarray, bos_id: int, runner: _ProbeRunner) -> tuple[np.ndarray, int, bool]:
    """A window with a document boundary at ``b`` ≥ 2 preceded by a real token; synthesized if absent."""
    for position in np.flatnonzero(window == bos_id).tolist():
        if position >= 2 and window[position - 1] != bos_id:
            return window, int(position), False
    window = window.copy()
    boundary = window.shape[0] // 2
    window[boundary] = bos_id
    if window[boundary - 1] == bos_id:
        window[boundary - 1] = runner.other_tokens(window[boundary - 1 : boundary], avoid=bos_id)[0]
    return window, boundary, True


def _isolation(runner: _ProbeRunner, window: np.ndarray, bos_id: int, tolerance: float) -> ProbeOutcome:
    if window.shape[0] < 4:
        return ProbeResult(
            "document_isolation",
            ISOLATION_RULE,
            "skipped",
            tolerance,
            {"reason": f"window of {window.shape[0]} tokens is too short"},
        ), []
    window, boundary, synthetic = _boundary(window, bos_id, runner)
    later_bos = np.flatnonzero(window[boundary + 1 :] == bos_id)
    doc_end = boundary + 1 + int(later_bos[0]) if later_bos.size else window.shape[0]
    earlier_bos = np.flatnonzero(window[:boundary] == bos_id)
    prev_start = int(earlier_bos[-1]) + 1 if earlier_bos.size else 0
    base_batch = np.repeat(window[None, :], runner.replacements, axis=0)
    batch = base_batch.copy()
    for row in range(runner.replacements):
        if row == runner.replacements - 1 and runner.replacements > 1:
            # last row: the whole previous document changes, not only its final token
            batch[row, prev_start:boundary] = runner.other_tokens(window[prev_start:boundary], avoid=bos_id)
        else:
            batch[row, boundary - 1] = runner.other_tokens(window[boundary - 1 : boundary], avoid=bos_id)[0]
    base = runner.logits(base_batch)[:, boundary:doc_end]
    diffs = _position_diffs(base, runner.logits(batch)[:, boundary:doc_end])
    affected = [boundary + int(p) for p in np.flatnonzero(diffs > tolerance)]
    details = {
        "boundary": boundary,
        "synthetic_boundary": synthetic,
        "document_positions": [boundary, doc_end],
        "max_abs_diff": float(diffs.max()),
        "affected": affected[:MAX_LISTED_POSITIONS],
    }
    findings = []
    if affected:
        findings.append(
            finding(
                ISOLATION_RULE,
                "<model>",
                0,
                f"the model claims document isolation, but the predictions at position {affected[0]} (document "
                f"starting at BOS position {boundary}) change when the previous document's last token (position "
                f"{boundary - 1}) changes (max |Δlogit| {float(diffs.max()):.3g} > tolerance {tolerance:g})",
            )
        )
    return ProbeResult(
        "document_isolation", ISOLATION_RULE, "fail" if affected else "pass", tolerance, details
    ), findings


def _device_of(model: nn.Module, tokens: torch.Tensor | np.ndarray, device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    if isinstance(tokens, torch.Tensor):
        return tokens.device
    first = next(iter(model.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


def run_probes(
    model: nn.Module,
    tokens: torch.Tensor | np.ndarray,
    *,
    seq_len: int,
    bos_id: int = 1,
    positions: int = 8,
    replacements: int = 3,
    seed: int = 0,
    tolerance: float = DEFAULT_TOLERANCE,
    vocab_size: int | None = None,
    device: torch.device | str | None = None,
    document_isolation: bool | None = None,
) -> ProbeReport:
    """Causality and (when claimed) document-isolation probes on the first ``seq_len`` tokens.

    ``document_isolation``: the entry's claim; ``None`` reads ``model.document_isolation``.
    A guard refusal inside the model propagates (it is a ``RuntimeViolation``); any other failure
    of the model on probe inputs is reported as an ``error`` result, not a finding.
    """
    host = tokens.detach().to("cpu").numpy() if isinstance(tokens, torch.Tensor) else np.asarray(tokens)
    window = host.astype(np.int64).reshape(-1)[: max(seq_len, 0)]
    runner = _ProbeRunner(model, _device_of(model, tokens, device), max(replacements, 1), seed)
    runner.vocab_size = int(vocab_size or 0)
    claims = bool(getattr(model, "document_isolation", False)) if document_isolation is None else document_isolation
    results: list[ProbeResult] = []
    findings: list[Finding] = []
    if window.shape[0] < 2:
        results.append(
            ProbeResult(
                "causality", CAUSALITY_RULE, "skipped", tolerance, {"reason": f"only {window.shape[0]} tokens to probe"}
            )
        )
    else:
        _guarded_probe(
            lambda: _causality(runner, window, positions, tolerance),
            "causality",
            CAUSALITY_RULE,
            tolerance,
            results,
            findings,
        )
    if not claims:
        results.append(
            ProbeResult(
                "document_isolation",
                ISOLATION_RULE,
                "skipped",
                tolerance,
                {"reason": "the model does not claim document isolation"},
            )
        )
    else:
        _guarded_probe(
            lambda: _isolation(runner, window, bos_id, tolerance),
            "document_isolation",
            ISOLATION_RULE,
            tolerance,
            results,
            findings,
        )
    return ProbeReport(results=results, findings=findings, tolerance=tolerance)


def _guarded_probe(
    probe: Callable[[], ProbeOutcome],
    name: str,
    rule: str,
    tolerance: float,
    results: list[ProbeResult],
    findings: list[Finding],
) -> None:
    """Run one probe; a model failure becomes an ``error`` result, a guard refusal propagates."""
    try:
        result, found = probe()
    except RuntimeViolation:
        raise
    except Exception as exc:  # noqa: BLE001 — the submission's model failed on probe inputs
        results.append(ProbeResult(name, rule, "error", tolerance, {"error": f"{type(exc).__name__}: {exc}"}))
        return
    results.append(result)
    findings.extend(found)
