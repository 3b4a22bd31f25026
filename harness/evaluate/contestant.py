"""The submission's side of an evaluation — its ``golf_entry.py``, model and adapter — and the one
interface through which the evaluator reaches it, in this process or in a child process.

Why one interface: the score → log → adapt loop must be the same code in both modes, so the
modes differ only in where submission code runs and the scores are identical. The evaluator asks
the contestant for fingerprints, for logits (through ``model``: the module itself or a proxy to
the child) and to adapt on tokens it has just released; it never hands over the validation set.

This module also loads a submission (entry, model, adapter) and probes its model, because the
child process of ``golf-eval --isolate`` does exactly that on its side of the pipe.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from harness.catalog import finding
from harness.errors import DataFormatError, HarnessError
from harness.evaluate import probes
from harness.evaluate.adapters import make_adapter
from harness.evaluate.adapters.base import Adapter, AdapterConfig
from harness.evaluate.fingerprint import Fingerprinter, state_sha256
from harness.evaluate.scored import ChunkInfo, RuntimeViolation, ScoredTokens, UnscoredAccess
from harness.findings import Finding

ENTRY_FILE = "golf_entry.py"
BOS_ID = 1


class Contestant(Protocol):
    """What the evaluator may do with the submission's side of the run."""

    model: nn.Module  # what scoring calls for logits: the model, or a proxy to the child process
    adapter_name: str
    adapter_active: bool  # False for the identity adapter: a TTT-off log shows no adaptation
    origin: str  # where adapter findings are filed (the submission's entry or a built-in)

    def fingerprint(self) -> str: ...

    def state_sha256(self) -> str: ...

    def adapt(self, fresh: np.ndarray, info: ChunkInfo) -> RuntimeViolation | None:
        """Release ``fresh`` (the newly scored tokens) and adapt; the first violation, or None."""
        ...

    def probe(self, head: np.ndarray, seq_len: int, vocab_size: int) -> tuple[list[Finding], dict[str, Any]]:
        """The runtime probes on ``head`` (see ``probe_model``)."""
        ...


class InProcess:
    """The model and adapter living in the evaluator's own process (the default mode)."""

    def __init__(
        self,
        model: nn.Module,
        adapter: Adapter,
        origin: str = "<adapter>",
        document_isolation: bool | None = None,
        device: torch.device | None = None,
    ) -> None:
        self.model = model
        self.adapter = adapter
        self.origin = origin
        self.document_isolation = document_isolation  # the entry's claim, read by the probes
        self.device = device or torch.device("cpu")
        self.adapter_name = str(getattr(adapter, "name", type(adapter).__name__))
        self.adapter_active = adapter_is_active(adapter)
        self.scored = ScoredTokens()
        self._fingerprint = Fingerprinter()

    def fingerprint(self) -> str:
        return self._fingerprint(self.model)

    def state_sha256(self) -> str:
        return state_sha256(self.model)

    def adapt(self, fresh: np.ndarray, info: ChunkInfo) -> RuntimeViolation | None:
        self.scored._grow(fresh)
        return run_adapter(self.adapter, self.model, self.scored, info)

    def probe(self, head: np.ndarray, seq_len: int, vocab_size: int) -> tuple[list[Finding], dict[str, Any]]:
        return probe_model(self.model, head, seq_len, vocab_size, self.device, self.document_isolation)


def adapter_is_active(adapter: Adapter) -> bool:
    """The identity adapter is skipped entirely, so a TTT-off log shows no adaptation at all."""
    return getattr(adapter, "name", None) != "none"


def run_adapter(adapter: Adapter, model: nn.Module, scored: ScoredTokens, info: ChunkInfo) -> RuntimeViolation | None:
    """Run one adaptation; the first forbidden act (a ``RuntimeViolation``), or None if it behaved.

    A read past the scored frontier is PG101 (``UnscoredAccess``), even when the adapter
    swallowed it; a guard refusal (network, training data) keeps its own rule and its
    ``recorded`` mark, so the caller does not file it a second time.
    """
    already = len(scored.violations)
    try:
        adapter.adapt(model, scored, info)
    except RuntimeViolation as violation:
        return violation
    finally:
        model.eval()
    if len(scored.violations) > already:  # the adapter swallowed UnscoredAccess: still a finding
        return UnscoredAccess(scored.violations[already])
    return None


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


def build_adapter(name: str, model: nn.Module, config: AdapterConfig, entry: ModuleType | None) -> tuple[Adapter, str]:
    """The adapter and where it came from (for findings): the submission's or a built-in one."""
    if name != "none" and entry is not None and hasattr(entry, "make_adapter"):
        adapter = entry.make_adapter(model, config)
        if not callable(getattr(adapter, "adapt", None)):
            raise DataFormatError(f"{ENTRY_FILE}: make_adapter must return an object with adapt(model, scored, chunk)")
        return adapter, ENTRY_FILE
    return make_adapter(name, model, config), f"<adapter {name}>"


def entry_document_isolation(entry: ModuleType | None) -> bool | None:
    """The entry's document-isolation claim (``document_isolation = True/False``), or None."""
    claim = getattr(entry, "document_isolation", None) if entry is not None else None
    if claim is not None and not isinstance(claim, bool):
        raise DataFormatError(f"{ENTRY_FILE}: document_isolation must be True or False (got {claim!r})")
    return claim


def probe_head(tokens: np.ndarray, seq_len: int) -> np.ndarray:
    """The tokens the probes read: the first window's inputs, which scoring hands over first anyway."""
    return np.array(tokens[: min(seq_len, max(int(tokens.shape[0]) - 1, 0))], dtype=np.int64)


def probe_model(
    model: nn.Module,
    head: np.ndarray,
    seq_len: int,
    vocab_size: int,
    device: torch.device,
    document_isolation: bool | None,
) -> tuple[list[Finding], dict[str, Any]]:
    """The runtime probes on ``head``; a probe that changed the model's state is PG101 itself."""
    fingerprint = Fingerprinter()
    before = fingerprint(model)
    outcome = probes.run_probes(
        model,
        torch.from_numpy(head).to(device),
        seq_len=seq_len,
        vocab_size=vocab_size,
        device=device,
        bos_id=BOS_ID,
        document_isolation=document_isolation,
    )
    found = list(outcome.findings)
    if fingerprint(model) != before:
        found.append(finding("PG101", "<model>", 0, "model state changed while the runtime probes ran"))
    return found, {"available": True, **outcome.to_json()}


def load_contestant(
    submission: Path | None, artifact: Path, ttt: str, adapter_config: AdapterConfig, device: torch.device
) -> InProcess:
    """Load the submission's entry, model and adapter, here (callers hold the guards)."""
    entry = load_entry(submission)
    claim = entry_document_isolation(entry)
    model = load_model(artifact, entry, device)
    model.eval()
    adapter, origin = build_adapter(ttt, model, adapter_config, entry)
    return InProcess(model, adapter, origin, claim, device)
