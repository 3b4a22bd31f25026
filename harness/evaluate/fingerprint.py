"""Fingerprints of a model's full state (parameters and buffers).

Why two kinds: the per-chunk fingerprint must be cheap enough to take twice per chunk on a GPU,
so it is computed where the weights live — each tensor's bit pattern reinterpreted as integers,
multiplied by a fixed index-dependent odd pattern and summed in int64 (wrapping) — and only one
64-bit number per tensor crosses to the host. Any single changed bit changes the sum (the
multipliers are odd, hence invertible mod 2^64). It is a tamper-evidence checksum, not a
cryptographic hash, so the full SHA-256 of every tensor's bytes is taken at start and end too.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

_INT_VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
_MIX = 0x9E3779B97F4A7C15  # golden-ratio constant: spreads per-tensor sums across 64 bits
_MASK64 = (1 << 64) - 1


def named_state(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Parameters and buffers in a stable order (state_dict order), detached."""
    return [(name, tensor.detach()) for name, tensor in model.state_dict(keep_vars=True).items()]


class Fingerprinter:
    """Computes the on-device checksum; caches the index pattern per (numel, device)."""

    def __init__(self) -> None:
        self._patterns: dict[tuple[int, str], torch.Tensor] = {}

    def _pattern(self, numel: int, device: torch.device) -> torch.Tensor:
        key = (numel, str(device))
        pattern = self._patterns.get(key)
        if pattern is None:
            index = torch.arange(numel, dtype=torch.int64, device=device)
            pattern = index * 2 + 1  # odd, index-dependent: swaps and single-bit edits both show
            pattern = pattern * 0x2545F491 + 0x632BE59BD9B4E019  # still odd: odd·odd + even
            self._patterns[key] = pattern
        return pattern

    def tensor_sum(self, tensor: torch.Tensor) -> int:
        flat = tensor.reshape(-1)
        if not flat.is_contiguous():
            flat = flat.contiguous()
        if flat.dtype == torch.bool:
            bits = flat.to(torch.uint8)
        elif flat.is_complex() or flat.element_size() not in _INT_VIEW:
            bits = flat.view(torch.uint8)
        else:
            bits = flat.view(_INT_VIEW[flat.element_size()])
        wide = bits.to(torch.int64)
        return int((wide * self._pattern(wide.numel(), wide.device)).sum().item()) & _MASK64

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> str:
        """A 16-hex-digit checksum of all parameters and buffers (names, dtypes, shapes, bits)."""
        total = 0
        for position, (name, tensor) in enumerate(named_state(model)):
            header = f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode()
            name_key = int.from_bytes(hashlib.blake2b(header, digest_size=8).digest(), "little")
            value = self.tensor_sum(tensor) if tensor.numel() else 0
            total = (total * _MIX + name_key + value * (2 * position + 1)) & _MASK64
        return f"{total:016x}"


def state_sha256(model: nn.Module) -> str:
    """Full SHA-256 over every tensor's name, dtype, shape and raw bytes (copies to the host)."""
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in named_state(model):
            digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
            host = tensor.to("cpu").contiguous().reshape(-1)
            digest.update(host.view(torch.uint8).numpy().tobytes() if host.numel() else b"")
    return digest.hexdigest()
