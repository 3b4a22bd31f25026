"""``golf-eval --isolate``: the submission's model and adapter in a child process that never holds a
validation token before it is scored.

Why a process and not a smaller view: in one process, submission code can walk its caller's
frames or ``gc.get_objects()`` and reach the evaluator's validation array, whatever the adapter's
view holds. Here the evaluator process alone holds the validation set, plans the windows and
computes every NLL from the logits the child returns; the child receives each batch of window
inputs when that batch is scored, and the scored tokens of a chunk only after the chunk's log
line is on disk. Its guards refuse the validation shards and the output folder (the log) too.

Protocol: ``multiprocessing`` with the spawn start method (no memory inherited from the parent)
and one duplex pipe; every request gets exactly one reply.

=============================  ==========================================================
parent → child                 child → parent
=============================  ==========================================================
(child starts, loads)          ``("ok", (adapter_name, adapter_active, origin))``
``("mode", training)``         ``("ok", None)``: ``model.train(training)``
``("logits", int64 [b, T])``   ``("ok", None)``: logits written to ``buffer[:b]``;
                               ``("shape", dims)``: the model returned another shape
``("fingerprint", None)``      ``("ok", hex)``; ``("sha256", None)`` likewise
``("probe", (int64 [L], T))``  ``("ok", (findings, probes_json))``
``("adapt", (fresh, info))``   ``("ok", None)``; ``fresh``: the newly scored tokens
``("close", None)``            ``("ok", (guard findings, guards_json))``, then the child exits
=============================  ==========================================================

Replies are JSON (``conn.send_bytes``), never pickles: unpickling what the submission's process
sends would let it run code in the evaluator's process, the very thing the child is kept from.
Every reply is checked for its shape; anything else is an ``IsolationError``. Requests are
pickled: the child trusts its parent. Any request may instead be answered ``("violation", (rule, message, recorded))`` (the
submission did something forbidden: the run stops cleanly, as in-process), ``("failed", (code,
message))`` (a ``HarnessError``, e.g. an unloadable entry: same exit code as in-process) or
``("crashed", message)`` (anything else: ``IsolationError``, its own exit code). The logits travel
through one float32 ``[B, T, V]`` buffer in shared memory (CUDA IPC on a GPU), sized for the
largest batch of the plan and handed to the child when it is spawned: they are ~1,000 times
larger than the inputs, and a buffer sent later would need a socket the child's guards refuse.

The child dies with the parent (``PR_SET_PDEATHSIG`` on Linux, and an end-of-file on the pipe
everywhere). Its guards also withhold the parent's ``/proc`` entry (its memory and open files).
Limits: the guards see Python-level operations only, so native code in the child (``ctypes``
system calls such as ``process_vm_readv``) could still read the parent's memory where the OS
allows ptrace, and the child reports its own fingerprints; an OS sandbox around the child (its
own user, no ptrace) closes the first.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
import torch
import torch.multiprocessing  # noqa: F401 — registers the reducers that share tensors through the pipe
from torch import nn

from harness.errors import EXIT_BAD_INPUT, EXIT_SUBMISSION_PROCESS, EXIT_USAGE, HarnessError
from harness.evaluate.distributed import DistContext
from harness.evaluate.evaluator import EvalConfig
from harness.evaluate.isolation_child import ChildSpec, serve
from harness.evaluate.scored import ChunkInfo, RuntimeViolation
from harness.evaluate.windows import plan_evaluation
from harness.findings import Finding, Severity

MAX_REPLY_BYTES = 64 << 20  # findings and probe results; logits travel through shared memory
IN_PROCESS = "in-process"
CHILD_PROCESS = "child-process"


class IsolationError(HarnessError):
    """The submission's child process failed or died; one line, its own exit code."""

    exit_code = EXIT_SUBMISSION_PROCESS


def isolation_json(config: EvalConfig) -> dict[str, str]:
    """report.json ``isolation``: which mode ran and what it guarantees."""
    if config.isolate:
        return {
            "mode": CHILD_PROCESS,
            "note": "the model and adapter ran in a child process that received window inputs when they were "
            "scored and scored tokens after their log line was written; it could not read the validation data",
        }
    return {
        "mode": IN_PROCESS,
        "note": "the model and adapter shared the evaluator's process: the adapter's view held only scored "
        "tokens, but submission code could reach the evaluator's memory (use --isolate)",
    }


class _ChildModel(nn.Module):
    """What the evaluator scores with: forwards each batch's inputs to the child, returns its logits."""

    def __init__(self, side: Isolated) -> None:
        super().__init__()
        self._side = side

    def train(self, mode: bool = True) -> _ChildModel:
        self._side.request("mode", bool(mode))
        return self

    def forward_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self._side.logits(input_ids)


class Isolated:
    """The contestant in a child process (see the module docstring); also the child's guard report."""

    def __init__(self, spec: ChildSpec) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child_end = context.Pipe(duplex=True)
        self._process = context.Process(target=serve, args=(child_end, spec), name="golf-eval-submission", daemon=True)
        try:
            self._process.start()
        except (OSError, RuntimeError) as exc:  # e.g. shared memory too small for the logits buffer
            megabytes = spec.buffer.numel() * spec.buffer.element_size() / 1e6
            raise IsolationError(
                f"could not start the submission's process with a {megabytes:,.0f} MB logits buffer: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            ) from None
        child_end.close()  # only the child holds its end now: its death reads as end-of-file here
        self._buffer = spec.buffer
        self.findings: list[Finding] = []
        self.guards: dict[str, Any] = {"attempts": []}
        self.model: nn.Module = _ChildModel(self)
        self.adapter_name, self.adapter_active, self.origin = "?", False, "<adapter>"

    def start(self) -> None:
        """Wait for the child to load the submission (its guard refusals raise here, as in-process)."""
        loaded = _expect(self.request(None, None), "start", str, bool, str)
        self.adapter_name, self.adapter_active, self.origin = loaded

    # ------------------------------------------------------------------ the protocol

    def request(self, op: str | None, payload: Any) -> Any:
        """Send one request (``None``: only read the reply) and return the child's answer."""
        try:
            if op is not None:
                self._conn.send((op, payload))
            raw = self._conn.recv_bytes(MAX_REPLY_BYTES)
        except (EOFError, OSError) as exc:
            self._process.join(timeout=5)
            raise IsolationError(
                f"the submission's process died (exit code {self._process.exitcode}) "
                f"while answering {op or 'start'!r}: {type(exc).__name__}"
            ) from None
        kind, value = _decode(raw)
        if kind == "ok":
            return value
        if kind == "violation" and _shaped(value, str, str, bool):
            violation = RuntimeViolation(value[1], value[0])
            violation.recorded = value[2]
            raise violation
        if kind == "failed" and _shaped(value, int, str):
            raise HarnessError(value[1], value[0] if value[0] in (EXIT_USAGE, EXIT_BAD_INPUT) else None)
        if kind == "shape" and isinstance(value, list) and all(type(d) is int and d >= 0 for d in value):
            return ("shape", tuple(value))
        if kind == "crashed" and isinstance(value, str):
            raise IsolationError(f"the submission's process failed: {value[:500]}")
        raise IsolationError(f"the submission's process sent a malformed {kind!r} reply to {op or 'start'!r}")

    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        batch, length = (int(d) for d in input_ids.shape)
        if batch > self._buffer.shape[0] or length != self._buffer.shape[1]:
            raise IsolationError(f"a batch of {batch}×{length} tokens does not fit the planned logits buffer")
        answer = self.request("logits", input_ids.detach().to("cpu").numpy())
        if isinstance(answer, tuple):  # the model's logits had another shape: let scoring say so
            return torch.empty(answer[1], device="meta")
        return self._buffer[:batch]

    # ------------------------------------------------------------------ the contestant

    def fingerprint(self) -> str:
        return str(_expect([self.request("fingerprint", None)], "fingerprint", str)[0])

    def state_sha256(self) -> str:
        return str(_expect([self.request("sha256", None)], "sha256", str)[0])

    def adapt(self, fresh: np.ndarray, info: ChunkInfo) -> RuntimeViolation | None:
        try:
            self.request("adapt", (np.array(fresh, dtype=np.int64), info))
        except RuntimeViolation as violation:
            return violation
        return None

    def probe(self, head: np.ndarray, seq_len: int, vocab_size: int) -> tuple[list[Finding], dict[str, Any]]:
        findings, probes_json = _expect(self.request("probe", (head, seq_len)), "probe", list, dict)
        return _findings(findings), probes_json

    def close(self) -> None:
        """Collect the child's guard findings and let it exit."""
        if self._process.is_alive():
            findings, self.guards = _expect(self.request("close", None), "close", list, dict)
            self.findings = _findings(findings)
        self._process.join(timeout=10)

    def kill(self) -> None:
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=5)
        self._conn.close()


def _own_process_files() -> list[Path]:
    """This process's ``/proc`` entry (memory, open files): withheld like the data it points to."""
    own = Path(f"/proc/{os.getpid()}")
    return [own] if own.is_dir() else []


def _decode(raw: bytes) -> tuple[str, Any]:
    try:
        message = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        message = None
    if not _shaped(message, str, object):
        raise IsolationError("the submission's process sent a reply that is not a [kind, value] JSON pair")
    return message[0], message[1]


def _shaped(value: object, *types: type) -> TypeGuard[list[Any]]:
    """``value`` is a JSON list of ``len(types)`` items of these types (``object``: any)."""
    return (
        isinstance(value, list)
        and len(value) == len(types)
        and all(kind is object or type(item) is kind for item, kind in zip(value, types))
    )


def _expect(value: object, op: str, *types: type) -> list[Any]:
    if not _shaped(value, *types):
        raise IsolationError(f"the submission's process sent a malformed answer to {op!r}")
    return value


def _findings(items: list[Any]) -> list[Finding]:
    """Runtime findings from the child's JSON; a field of the wrong type is a malformed reply."""
    found = []
    for item in items:
        if not isinstance(item, dict) or not _shaped(
            [item.get(k) for k in ("rule", "severity", "file", "line", "message")], str, str, str, int, str
        ):
            raise IsolationError("the submission's process sent a malformed finding")
        if item["severity"] not in {s.value for s in Severity}:
            raise IsolationError(f"the submission's process sent a finding of unknown severity {item['severity']!r}")
        found.append(Finding(item["rule"], Severity(item["severity"]), item["file"], item["line"], item["message"]))
    return found


@contextlib.contextmanager
def isolated(
    submission: Path | None,
    artifact: Path,
    config: EvalConfig,
    total_tokens: int,
    vocab_size: int,
    allowed: list[Path],
    forbidden: list[Path],
    withheld: list[Path],
) -> Iterator[Isolated]:
    """Start the child; on leaving, collect its guard report, or kill it if something failed.

    ``allowed``/``forbidden``/``withheld`` are the guard paths of the child: the validation shards
    and the output folder are withheld from it (and left out of ``allowed``).
    """
    plan = plan_evaluation(total_tokens, config.seq_len, config.effective_stride, config.chunk_tokens)
    largest = max(chunk.windows.count for chunk in plan.chunks)
    batch = max(1, min(config.effective_batch_windows, largest))
    buffer = torch.empty((batch, plan.chunks[0].windows.length, vocab_size), device=config.device)
    spec = ChildSpec(
        submission=submission,
        artifact=artifact,
        ttt=config.ttt,
        adapter=replace(config.adapter, dist=DistContext()),
        device=config.device,
        autocast=config.autocast,
        seed=config.seed,
        vocab_size=vocab_size,
        threads=torch.get_num_threads(),
        allowed=list(allowed),
        forbidden=list(forbidden),
        withheld=[*withheld, *_own_process_files()],
        buffer=buffer,
    )
    side = Isolated(spec)
    try:
        yield side
        side.close()
    finally:
        side.kill()
