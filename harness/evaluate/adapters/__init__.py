"""Adapter registry: built-in test-time training plug-ins by name.

``lora`` lives in ``adapters/lora.py`` (written separately); it is offered only when that module
exists and exposes ``LoraAdapter(model, config)``.
"""

from __future__ import annotations

import importlib

from torch import nn

from harness.errors import UsageError
from harness.evaluate.adapters.base import Adapter, AdapterConfig
from harness.evaluate.adapters.none import NoAdapter
from harness.evaluate.adapters.sgd import SgdAdapter


def available_adapters() -> list[str]:
    names = ["none", "sgd"]
    try:
        importlib.import_module("harness.evaluate.adapters.lora")
    except ModuleNotFoundError:
        return names
    return names + ["lora"]


def make_adapter(name: str, model: nn.Module, config: AdapterConfig) -> Adapter:
    """A fresh adapter for ``model``; unknown names are a usage error listing the known ones."""
    if name == "none":
        return NoAdapter()
    if name == "sgd":
        return SgdAdapter(model, config)
    if name == "lora" and "lora" in available_adapters():
        lora = importlib.import_module("harness.evaluate.adapters.lora")
        return lora.LoraAdapter(model, config)
    raise UsageError(f"unknown TTT adapter '{name}' (known: {', '.join(available_adapters())})")
