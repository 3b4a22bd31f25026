"""Import aliases and which helper sources the entry script actually loads.

Why: a call is only recognisable as ``huggingface_hub.hf_hub_download`` once ``from
huggingface_hub import hf_hub_download as fetch`` is resolved, and a download in a data-prep
script the README runs *before* training is not evaluation-time network access (R-ART-
SELFCONTAINED) while the same call in a helper imported by ``train_gpt.py`` is.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import libcst as cst

from harness.check.tree.index import ModuleIndex
from harness.check.tree.nodes import call_tail, dotted_name, literal_text, strings_in

# Calls that load or run another file of the submission: importlib by path, runpy, exec of
# an opened file, or a subprocess/os.system running ``python helper.py``.
_LOADING_CALLS = frozenset(
    "spec_from_file_location SourceFileLoader run_path run_module open read_text system run Popen check_call call"
    " check_output with_name replace".split()
)


def qualified(name: str, aliases: dict[str, str]) -> str:
    """``ur.urlopen`` with ``import urllib.request as ur`` → ``urllib.request.urlopen``."""
    head, _, rest = name.partition(".")
    if head in aliases:
        return aliases[head] + ("." + rest if rest else "")
    return name


def imported_modules(index: ModuleIndex) -> set[str]:
    names: set[str] = set()
    for statement in index.imports:
        if isinstance(statement, cst.Import):
            names.update(dotted_name(alias.name) or "" for alias in statement.names)
        elif isinstance(statement, cst.ImportFrom) and statement.module is not None:
            module = dotted_name(statement.module) or ""
            names.add(module)
            if not isinstance(statement.names, cst.ImportStar):
                for alias in statement.names:
                    name = dotted_name(alias.name) or ""
                    names.update((name, f"{module}.{name}"))
    for call in index.calls:
        tail = call_tail(call)
        if tail in {"import_module", "__import__"} and call.args:
            value = call.args[0].value
            text = literal_text(value) if isinstance(value, cst.SimpleString) else None
            if text is not None:
                names.add(text)
        elif tail in _LOADING_CALLS:
            words = [word for text in strings_in(call) for word in text.split()]
            names.update(PurePosixPath(word).with_suffix("").name for word in words if word.endswith(".py"))
    return names


def _stem(display_name: str) -> str:
    base = display_name.split("[", 1)[0]
    path = PurePosixPath(base)
    return ".".join(path.with_suffix("").parts)


def run_at_evaluation(indexes: list[ModuleIndex]) -> set[int]:
    """ids of indexes run by the entry script: entries, and helpers they import (transitively)."""
    by_module: dict[str, ModuleIndex] = {}
    for index in indexes:
        stem = _stem(index.name)
        by_module[stem] = index
        by_module.setdefault(stem.rsplit(".", 1)[-1], index)
    reached = [index for index in indexes if index.parsed.source.is_entry]
    if not reached:
        return {id(index) for index in indexes}
    seen = {id(index) for index in reached}
    while reached:
        current = reached.pop()
        for module in imported_modules(current):
            target = by_module.get(module)
            if target is not None and id(target) not in seen:
                seen.add(id(target))
                reached.append(target)
    return seen


def imported_functions(index: ModuleIndex, call: cst.Call) -> list[tuple[ModuleIndex, cst.FunctionDef]]:
    """Functions of the submission's other sources that ``call`` reaches through an import:
    ``optimize_slot(...)`` after ``from slot_opt import optimize_slot [as o]``, or
    ``slot_opt.optimize_slot(...)`` after ``import slot_opt``. Resolution is by module stem
    (``pkg.slot_opt`` or ``slot_opt``) and function name only; nothing is imported."""
    if not index.peers:
        return []
    callee = dotted_name(call.func)
    if callee is None:
        return []
    full = qualified(callee, index.aliases)
    module, _, function = full.rpartition(".")
    if not module:
        return []
    wanted = module.rsplit(".", 1)[-1]
    found: list[tuple[ModuleIndex, cst.FunctionDef]] = []
    for peer in index.peers:
        stem = _stem(peer.name)
        if peer is not index and (stem == module or stem.rsplit(".", 1)[-1] == wanted):
            found += [(peer, f) for f in peer.functions_named(function)]
    return found
