"""Adapter registry: built-in test-time training plug-ins by name.

Every built-in is imported here, so a missing one is an import error when golf-eval starts,
never an adapter that silently drops out of the list.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from harness.errors import UsageError
from harness.evaluate.adapters.base import Adapter, AdapterConfig
from harness.evaluate.adapters.lora import LoraAdapter
from harness.evaluate.adapters.none import NoAdapter
from harness.evaluate.adapters.sgd import SgdAdapter

_BUILT_IN: dict[str, Callable[[nn.Module, AdapterConfig], Adapter]] = {
    "none": lambda model, config: NoAdapter(),
    "sgd": SgdAdapter,
    "lora": LoraAdapter,
}


def available_adapters() -> list[str]:
    return list(_BUILT_IN)


def make_adapter(name: str, model: nn.Module, config: AdapterConfig) -> Adapter:
    """A fresh adapter for ``model``; unknown names are a usage error listing the known ones."""
    if name not in _BUILT_IN:
        raise UsageError(f"unknown TTT adapter '{name}' (known: {', '.join(available_adapters())})")
    return _BUILT_IN[name](model, config)
