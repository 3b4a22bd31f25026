"""A hostile ``golf_entry.py`` (tests copy it into a submission folder): its adapter searches all
it can reach for validation tokens the evaluator has not released, and writes what it found.

Where it looks, as a submission that wanted to read ahead would: the scored-token view's
attributes, the model's attributes, every frame up its call stack (with their locals), and
every object the garbage collector tracks plus what those objects hold. What counts as a find:
an integer array, tensor or byte string holding the planted ``SENTINEL`` (tokens the test puts
past every frontier), or an integer array of token ids longer than the scored prefix plus one
window. Each ``adapt`` call appends one JSON line to ``hostile_report.jsonl`` next to this file.
"""

from __future__ import annotations

import gc
import json
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
from torch import nn

SENTINEL = np.array([1001, 3, 999, 7, 997, 11, 995, 13, 993, 17, 991, 19], dtype=np.int64)
SENTINEL_BYTES = SENTINEL.astype("<u2").tobytes()  # as the token shard stores it
REPORT = Path(__file__).with_name("hostile_report.jsonl")
VOCAB = 1024
MAX_DEPTH = 4


def load_model(artifact: str, device: torch.device) -> nn.Module:
    from reference_model.quantize import model_from_artifact

    return model_from_artifact(Path(artifact)).to(device)


def make_adapter(model: nn.Module, config: Any) -> HostileAdapter:
    return HostileAdapter()


def _contains_sentinel(values: np.ndarray) -> bool:
    flat = values.reshape(-1)
    if flat.size < SENTINEL.size:
        return False
    for start in np.flatnonzero(flat[: flat.size - SENTINEL.size + 1] == SENTINEL[0]).tolist():
        if np.array_equal(flat[start : start + SENTINEL.size], SENTINEL):
            return True
    return False


def _as_integers(value: object) -> np.ndarray | None:
    """The whole memory behind an integer array or tensor (a small view shows its base), or None."""
    if isinstance(value, np.ndarray):
        while isinstance(value.base, np.ndarray):
            value = value.base
        if value.dtype.kind in "iu" and value.dtype.itemsize >= 2:
            return value.astype(np.int64, copy=False)
        return None
    if isinstance(value, torch.Tensor) and value.device.type != "meta":
        if value.dtype.is_floating_point or value.dtype.is_complex or value.element_size() < 2:
            return None
        whole = torch.empty(0, dtype=value.dtype, device=value.device)
        whole.set_(value.untyped_storage())
        return whole.detach().to("cpu").numpy().astype(np.int64, copy=False)
    return None


def _judge(value: object, limit: int) -> str | None:
    if value is SENTINEL or value is SENTINEL_BYTES:  # the search's own needles
        return None
    if isinstance(value, (bytes, bytearray)):
        return "sentinel" if SENTINEL_BYTES in value else None
    values = _as_integers(value)
    if values is None or values.size == 0:
        return None
    if _contains_sentinel(values):
        return "sentinel"
    if values.size > limit and int(values.min()) >= 0 and int(values.max()) < VOCAB:
        return "long"
    return None


def _size(item: object) -> object:
    return getattr(item, "shape", None) or len(item)  # type: ignore[arg-type]  # bytes have no shape


def _children(value: object) -> Iterator[object]:
    if isinstance(value, dict):
        yield from value.values()
    elif isinstance(value, (list, tuple, set, frozenset)):
        yield from value
    elif hasattr(value, "__dict__") and not isinstance(value, type):
        yield from vars(value).values()


def _walk(value: object, depth: int, seen: set[int]) -> Iterator[object]:
    if id(value) in seen:
        return
    seen.add(id(value))
    yield value
    if depth < MAX_DEPTH and not isinstance(value, (np.ndarray, torch.Tensor, bytes, bytearray, str)):
        for child in _children(value):
            yield from _walk(child, depth + 1, seen)


def _frames() -> Iterator[object]:
    frame: FrameType | None = sys._getframe(3)  # the caller of adapt()
    while frame is not None:
        yield from frame.f_locals.values()
        frame = frame.f_back


def _gc_objects() -> Iterator[object]:
    seen: set[int] = set()
    for obj in gc.get_objects():
        for item in (obj, *gc.get_referents(obj)):  # numpy arrays are not tracked: their holders are
            if id(item) not in seen:
                seen.add(id(item))
                yield item


class HostileAdapter:
    name = "hostile"

    def adapt(self, model: nn.Module, scored: Any, chunk: Any) -> None:
        with warnings.catch_warnings():  # touching every object wakes deprecation warnings
            warnings.simplefilter("ignore")
            self._search(model, scored, chunk)

    def _search(self, model: nn.Module, scored: Any, chunk: Any) -> None:
        limit = scored.frontier + chunk.seq_len
        sources = {
            "view": _walk(scored, 0, set()),
            "model": (item for module in model.modules() for item in _walk(module, 0, set())),
            "frames": (item for local in _frames() for item in _walk(local, 1, set())),
            "gc": _gc_objects(),
        }
        hits: dict[str, list[str]] = {name: [] for name in sources}
        for name, items in sources.items():
            for item in items:
                kind = _judge(item, limit)
                if kind is not None:
                    hits[name].append(f"{kind}: {type(item).__name__} of {_size(item)}")
        line = {"chunk": chunk.index, "frontier": scored.frontier, "limit": limit, "hits": hits}
        with REPORT.open("a", encoding="utf-8") as stream:
            stream.write(json.dumps(line) + "\n")
