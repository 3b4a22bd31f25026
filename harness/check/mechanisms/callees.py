"""Calls into the submission's own helper functions, seen from a scoring function.

Why: real scorers split the work. The n-gram lookup that hashes the target into its key
sits in a helper method the scoring loop calls (``cache.score_positions(tokens, pos)``,
#982), and a causal hint table is built by a helper handed the whole target stream
(``build_hints_for_targets(targets)``, the token-only tilt of #1514/#2135). Both facts are
decided by reading the helper itself: its lookups are analysed as part of the scoring
path, and a value it returns is not, by that alone, "the target at the scored position" —
whether the helper reads ahead is the helper's own finding.
"""

from __future__ import annotations

from itertools import takewhile

import libcst as cst

from harness.check.tree.index import ModuleIndex, nodes_within
from harness.check.tree.nodes import call_tail

from .imports import imported_functions
from .targets import value_names

# Library-looking method names: a submission method with such a name (a cache class's
# ``get``/``update``) still must not hide a ``d.get(tgt)`` read from the caller's analysis.
_GENERIC = frozenset(
    "get update item sum mean min max to view reshape forward __call__ append extend add pop setdefault copy clone"
    " float int long numpy".split()
)
# Shape, placement and type of a tensor say nothing about the token values in it
# (``torch.ones(targets.size(0), 1, device=targets.device)``, #1283's mixer mask).
_METADATA = frozenset({"shape", "device", "dtype", "ndim", "is_cuda", "layout"})
_METADATA_METHODS = frozenset({"size", "numel", "dim", "nelement", "get_device"})


def helper_of(index: ModuleIndex, call: cst.Call) -> tuple[ModuleIndex, cst.FunctionDef] | None:
    """The module-level submission function a plain call (``helper(...)`` or an imported
    ``mod.helper(...)``) reaches, or None for library calls, methods and unknown names."""
    tail = call_tail(call)
    if not isinstance(call.func, (cst.Name, cst.Attribute)) or not tail or tail in _GENERIC:
        return None
    if isinstance(call.func, cst.Name):
        for function in index.functions_named(tail):
            if isinstance(index.parent(function), cst.Module):
                return index, function
    for peer, function in imported_functions(index, call):
        if isinstance(peer.parent(function), cst.Module):
            return peer, function
    return None


def names_outside_helper_calls(index: ModuleIndex, expr: cst.CSTNode) -> list[cst.Name]:
    """Variable references in ``expr`` except those only passed as arguments to a submission
    helper — the helper's result depends on what the helper does with them, which the
    helper's own analysis decides (a causal hint builder handed the target stream) — and
    those whose shape, length or device only is read."""

    def skip(node: cst.CSTNode) -> bool:
        if type(node) is cst.Attribute:  # exact types: isinstance on libcst's ABCs is a Python call
            return node.attr.value in _METADATA
        return type(node) is cst.Call and (_metadata_call(node) or helper_of(index, node) is not None)

    return value_names(expr, skip)


def _metadata_call(call: cst.Call) -> bool:
    if isinstance(call.func, cst.Attribute) and call.func.attr.value in _METADATA_METHODS:
        return True
    return isinstance(call.func, cst.Name) and call.func.value == "len"


def scoring_callees(index: ModuleIndex, scoring: list[cst.FunctionDef]) -> list[tuple[ModuleIndex, cst.FunctionDef]]:
    """Submission functions and methods called from a scoring function, one level down;
    methods by name within the same source (``self.cache.score_positions``: a scoring loop's
    own cache class sits beside it)."""
    found: list[tuple[ModuleIndex, cst.FunctionDef]] = []
    seen = {id(f) for f in scoring}
    for function in scoring:
        for call in nodes_within(index.calls, function, index):
            tail = call_tail(call)
            if not tail or tail in _GENERIC:
                continue
            targets = [(index, f) for f in index.functions_named(tail)] + imported_functions(index, call)
            for peer, callee in targets:
                if id(callee) not in seen:
                    seen.add(id(callee))
                    found.append((peer, callee))
    return found


def call_arguments(call: cst.Call, function: cst.FunctionDef) -> dict[str, cst.BaseExpression]:
    """What ``call`` passes for each parameter of ``function`` (up to a ``*args``). ``self`` is
    bound by the receiver of a method call, and by a constructor call whatever its name."""
    params = [p.name.value for p in function.params.params]
    keywords = set(params) | {p.name.value for p in function.params.kwonly_params}
    method = isinstance(call.func, cst.Attribute)
    if (function.name.value == "__init__" and not method) or (method and params[:1] in (["self"], ["cls"])):
        params = params[1:]
    args = list(takewhile(lambda arg: not arg.star, call.args))
    passed = dict(zip(params, [arg.value for arg in args if arg.keyword is None]))
    for arg in args:
        if arg.keyword is not None and arg.keyword.value in keywords:
            passed.setdefault(arg.keyword.value, arg.value)
    return passed
