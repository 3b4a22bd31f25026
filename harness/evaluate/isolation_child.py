"""The child process of ``golf-eval --isolate``: loads the submission under the guards and answers
the evaluator's requests (the protocol is in ``harness.evaluate.isolation``).

Why it holds so little: everything validation-shaped it ever sees arrives in a request, the
inputs of the windows being scored and the tokens already scored, so a hostile adapter or model
that searches this process finds nothing the evaluator has not released.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.errors import HarnessError
from harness.evaluate.adapters.base import AdapterConfig, forward_logits
from harness.evaluate.contestant import InProcess, load_contestant
from harness.evaluate.guards import guarded
from harness.evaluate.scored import RuntimeViolation

_PR_SET_PDEATHSIG = 1


@dataclass
class ChildSpec:
    """What the child needs to load and run the submission (pickled to the spawned process)."""

    submission: Path | None
    artifact: Path
    ttt: str
    adapter: AdapterConfig
    device: str
    autocast: bool
    seed: int
    vocab_size: int
    threads: int
    allowed: list[Path]
    forbidden: list[Path]  # training data
    withheld: list[Path]  # the validation shards and the output folder
    buffer: torch.Tensor  # float32 [B, T, V] in shared memory: where the logits of a batch go


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies, even in the middle of a forward pass."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before the request took effect
        os._exit(1)


class _Server:
    """The loaded submission and the request handlers (one per protocol operation)."""

    def __init__(self, spec: ChildSpec, side: InProcess) -> None:
        self.spec = spec
        self.side = side
        self.device = torch.device(spec.device)

    def handle(self, op: str, payload: Any) -> tuple[str, Any]:
        if op == "mode":
            self.side.model.train(bool(payload))
            return "ok", None
        if op == "logits":
            return self._logits(payload)
        if op == "fingerprint":
            return "ok", self.side.fingerprint()
        if op == "sha256":
            return "ok", self.side.state_sha256()
        if op == "probe":
            head, seq_len = payload
            findings, probes_json = self.side.probe(head, seq_len, self.spec.vocab_size)
            return "ok", [[finding.to_json() for finding in findings], probes_json]
        if op == "adapt":
            fresh, info = payload
            violation = self.side.adapt(fresh, info)
            return ("ok", None) if violation is None else _violation(violation)
        return "crashed", f"unknown request {op!r}"

    def _logits(self, inputs: np.ndarray) -> tuple[str, Any]:
        """The model's logits for one batch, as scoring computes them in-process, into the buffer."""
        ids = torch.from_numpy(inputs).to(self.device)
        with torch.inference_mode():
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.spec.autocast):
                logits = forward_logits(self.side.model, ids)
            expected = (ids.shape[0], ids.shape[1], self.spec.vocab_size)
            if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != expected:
                return "shape", [int(d) for d in getattr(logits, "shape", ())]
            self.spec.buffer[: ids.shape[0]].copy_(logits)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return "ok", None


def _violation(violation: RuntimeViolation) -> tuple[str, Any]:
    return "violation", [str(violation.rule), str(violation), bool(getattr(violation, "recorded", False))]


def _answer(conn: Connection, call: Callable[[], tuple[str, Any]]) -> None:
    """Run ``call`` and send its reply; a failure becomes a one-line reply, never a traceback."""
    try:
        kind, value = call()
    except RuntimeViolation as violation:
        kind, value = _violation(violation)
    except HarnessError as exc:
        kind, value = "failed", [exc.exit_code, str(exc)]
    except Exception as exc:  # noqa: BLE001 — submission code: any failure is reported, not raised
        kind, value = "crashed", f"{type(exc).__name__}: {exc}".splitlines()[0]
    _send(conn, kind, value)


def _send(conn: Connection, kind: str, value: Any) -> None:
    """One JSON reply (the parent never unpickles what this process sends)."""
    try:
        text = json.dumps([kind, value])
    except (TypeError, ValueError) as exc:
        text = json.dumps(["crashed", f"a reply could not be encoded: {exc}"])
    conn.send_bytes(text.encode())


def serve(conn: Connection, spec: ChildSpec) -> None:
    """The child's main loop: load, then answer requests until ``close`` or the parent goes away."""
    _die_with_parent()
    torch.set_num_threads(spec.threads)
    torch.manual_seed(spec.seed)
    device = torch.device(spec.device)
    server: list[_Server] = []
    try:
        with guarded(spec.allowed, spec.forbidden, withheld_paths=spec.withheld) as session:

            def load() -> tuple[str, Any]:
                side = load_contestant(spec.submission, spec.artifact, spec.ttt, spec.adapter, device)
                server.append(_Server(spec, side))
                return "ok", [side.adapter_name, side.adapter_active, side.origin]

            _answer(conn, load)
            while True:
                op, payload = conn.recv()
                if op == "close":
                    break
                if not server:
                    _send(conn, "crashed", "the submission was not loaded")
                    continue
                _answer(conn, functools.partial(server[0].handle, op, payload))
        _send(conn, "ok", [[finding.to_json() for finding in session.findings], session.to_json()])
    except (EOFError, OSError):
        pass  # the parent went away: nothing left to answer
    finally:
        conn.close()
