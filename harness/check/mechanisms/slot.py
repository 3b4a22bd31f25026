"""PG201, SLOT: per-window tensors created with ``requires_grad`` and optimized against the
targets that are then scored (#1229; #1240's flip-a-future-target proof) — sample-specific
optimization on the scored positions, in the scoring function or in a helper it calls.
Score-first TTT, which scores a chunk before it updates on it, is legal and stays quiet.
"""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from harness.check.tree.children import walk
from harness.check.tree.index import ModuleIndex, nodes_within
from harness.check.tree.nodes import assigned_value, call_tail, target_names

from .hit import Hit, step
from .imports import imported_functions
from .targets import TargetInfo, value_names


def find_slot(index: ModuleIndex, info: TargetInfo) -> Iterator[Hit]:
    """Per-window tensors optimized on the targets that are scored afterwards (SLOT)."""
    function = info.function
    calls = nodes_within(index.calls, function, index)
    fresh: dict[str, cst.CSTNode] = {}
    for call in calls:
        if not _makes_trainable(index, call):
            continue
        for name in target_names(index.enclosing_statement(call)):
            fresh.setdefault(name, call)
        if call_tail(call) == "requires_grad_" and isinstance(call.func, cst.Attribute):
            for used in value_names(call.func.value):
                fresh.setdefault(used.value, call)
    if not fresh:
        return
    for loop in nodes_within(index.loops, function, index):
        loop_calls = nodes_within(calls, loop, index)
        backward = next((c for c in loop_calls if call_tail(c) in {"backward", "grad"}), None)
        if backward is None:
            continue
        body_names = {n.value for n in value_names(loop.body)}
        params = sorted(body_names & set(fresh))
        if not params:
            continue
        targets = sorted(body_names & info.names - _rebound(index, loop))
        score = _score_after(index, loop, function, set(targets), set(params)) if targets else None
        if score is None:
            continue
        context_only = _context_only(index, loop, function)
        what = (
            "context-only SLOT: the mask limits the loss to already-scored context positions, a form never "
            "ruled on (issue #1336)"
            if context_only
            else "SLOT on scored positions"
        )
        yield Hit(
            rule="PG201",
            when="context-only-slot" if context_only else None,
            index=index,
            node=backward,
            message=(
                f"per-window tensors {', '.join(params)} are optimized (backward at line {index.line(backward)}) "
                f"against targets {', '.join(targets)} that are then scored at line {index.line(score)} "
                f"({what})"
            ),
            path=(
                step(index, fresh[params[0]], f"fresh trainable tensor {params[0]} per window"),
                step(index, backward, f"optimized against targets {', '.join(targets)}"),
                step(index, score, "the same targets are scored with the optimized tensors"),
            ),
        )


def find_slot_via_helper(index: ModuleIndex, info: TargetInfo) -> Iterator[Hit]:
    """``delta = optimize_delta(model, hidden, y, ...)`` then ``cross_entropy(head(hidden + delta), y)``:
    the SLOT optimization (#1229) moved into a helper — of the same module, or of a helper
    module it imports (``from slot_opt import optimize_slot``, ``import slot_opt``)."""
    function = info.function
    for call in nodes_within(index.calls, function, index):
        passed = {  # argument position → the target name passed there
            i: a.value.value
            for i, a in enumerate(call.args)
            if a.keyword is None and isinstance(a.value, cst.Name) and a.value.value in info.names
        }
        if not passed:
            continue
        helpers = [(index, f) for f in index.functions_named(call_tail(call))] + imported_functions(index, call)
        for helper_index, helper in helpers:
            if helper is function or not _optimizes_on_parameter(helper_index, helper, list(passed)):
                continue
            statement = index.enclosing_statement(call)
            outputs = set(target_names(statement))
            targets = set(passed.values())
            score = _score_after(index, statement, function, targets, outputs) if outputs else None
            if score is None:
                continue
            yield Hit(
                rule="PG201",
                index=index,
                node=statement,
                message=(
                    f"`{helper.name.value}` optimizes fresh per-window tensors against targets "
                    f"{', '.join(sorted(targets))}, which are then scored with them at line {index.line(score)} "
                    "(SLOT on scored positions)"
                ),
                path=(
                    step(helper_index, helper, f"{helper.name.value} runs backward on a loss of its target argument"),
                    step(index, statement, "called with the targets of this window"),
                    step(index, score, "the same targets are scored with the optimized tensors"),
                ),
            )


def _optimizes_on_parameter(index: ModuleIndex, helper: cst.FunctionDef, positions: list[int]) -> bool:
    """The helper creates a trainable tensor and runs backward in a loop whose body reads
    one of the parameters at ``positions``, without rebinding it."""
    params = [p.name.value for p in helper.params.params]
    watched = {params[i] for i in positions if i < len(params)}
    calls = nodes_within(index.calls, helper, index)
    if not watched or not any(_makes_trainable(index, c) for c in calls):
        return False
    return any(
        any(call_tail(c) == "backward" for c in nodes_within(calls, loop, index))
        and {n.value for n in value_names(loop.body)} & (watched - _rebound(index, loop))
        for loop in nodes_within(index.loops, helper, index)
    )


def _makes_trainable(index: ModuleIndex, call: cst.Call) -> bool:
    """``torch.zeros(..., requires_grad=True)``, ``delta.requires_grad_()``, ``nn.Parameter(x)``."""
    return call_tail(call) in {"requires_grad_", "Parameter"} or any(
        a.keyword is not None and a.keyword.value == "requires_grad" and index.code(a.value) == "True"
        for a in call.args
    )


def _rebound(index: ModuleIndex, loop: cst.CSTNode) -> set[str]:
    """Names the loop rebinds (its own variables included): those no longer hold what came in."""
    rebound = {n for s in nodes_within(index.assigns, loop, index) for n in target_names(s)}
    if isinstance(loop, cst.For):
        rebound |= {n.value for n in value_names(loop.target)}
    return rebound


def _context_only(index: ModuleIndex, loop: cst.For | cst.While, function: cst.FunctionDef) -> bool:
    """Every loss mask used in ``loop`` is set on a leading slice only (``mask[:, :s] = 1``), none
    on a trailing one (``mask[:, s:] = 1``)."""
    used = {n.value for n in value_names(loop.body)}
    leading: set[bool] = set()
    for statement in nodes_within(index.assigns, function, index):
        for target in (t.target for t in statement.targets) if isinstance(statement, cst.Assign) else ():
            if not (isinstance(target, cst.Subscript) and isinstance(target.value, cst.Name) and target.slice):
                continue
            element = target.slice[-1].slice
            if target.value.value in used and isinstance(element, cst.Slice):
                leading.add(element.upper is not None and (element.lower is None or index.code(element.lower) == "0"))
    return leading == {True}


def _score_after(
    index: ModuleIndex, loop: cst.CSTNode, function: cst.FunctionDef, targets: set[str], params: set[str]
) -> cst.CSTNode | None:
    """The first scoring call after ``loop`` on the same targets, with the optimized tensors
    used somewhere between the loop and that call (``logits = f(h + delta)``)."""
    loop_end = index.parsed.positions[loop].end.line
    params_used = False
    for statement in nodes_within(index.assigns, function, index):
        if index.line(statement) <= loop_end:
            continue
        value = assigned_value(statement)
        if value is None:
            continue
        names = {n.value for n in value_names(value)}
        params_used = params_used or bool(names & params)
        if params_used and any(
            isinstance(n, cst.Call)
            and call_tail(n) in {"cross_entropy", "nll_loss", "gather"}
            and {v.value for v in value_names(n)} & targets
            for n in walk(value)
        ):
            return statement
    return None
