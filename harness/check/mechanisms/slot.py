"""PG201, SLOT: per-window tensors created with ``requires_grad`` and optimized against the
targets that are then scored (#1229; #1240's flip-a-future-target proof) — sample-specific
optimization on the scored positions, in the scoring function or in a helper it calls.
Score-first TTT, which scores a chunk before it updates on it, is legal and stays quiet.
"""

from __future__ import annotations

import libcst as cst

from harness.check.tree.children import walk
from harness.check.tree.index import ModuleIndex, nodes_within
from harness.check.tree.nodes import assigned_value, call_tail, target_names

from .hit import Hit, step
from .imports import imported_functions
from .targets import TargetInfo, value_names


def find_slot(index: ModuleIndex, info: TargetInfo) -> list[Hit]:
    """Per-window tensors optimized on the targets that are scored afterwards (SLOT)."""
    function = info.function
    calls = nodes_within(index.calls, function, index)
    fresh: dict[str, cst.CSTNode] = {}
    for call in calls:
        grad_on = any(
            a.keyword is not None and a.keyword.value == "requires_grad" and index.code(a.value) == "True"
            for a in call.args
        ) or call_tail(call) in {"requires_grad_", "Parameter"}
        if not grad_on:
            continue
        statement = index.enclosing_statement(call)
        for name in target_names(statement):
            fresh.setdefault(name, call)
        if call_tail(call) == "requires_grad_" and isinstance(call.func, cst.Attribute):
            for used in value_names(call.func.value):
                fresh.setdefault(used.value, call)
    if not fresh:
        return []
    hits: list[Hit] = []
    for loop in nodes_within(index.loops, function, index):
        loop_calls = nodes_within(calls, loop, index)
        backward = next((c for c in loop_calls if call_tail(c) in {"backward", "grad"}), None)
        if backward is None:
            continue
        body_names = {n.value for n in value_names(loop.body)}
        params = sorted(body_names & set(fresh))
        used_targets = sorted(body_names & info.names)
        if not params or not used_targets:
            continue
        rebound = {n for s in nodes_within(index.assigns, loop, index) for n in target_names(s)}
        if isinstance(loop, cst.For):
            rebound |= {n.value for n in value_names(loop.target)}
        targets = [t for t in used_targets if t not in rebound]
        score = _score_after(index, loop, function, set(targets), set(params))
        if not targets or score is None:
            continue
        context_only = _optimized_positions(index, loop, function) == "context"
        what = (
            "context-only SLOT: the mask limits the loss to already-scored context positions, a form never "
            "ruled on (issue #1336)"
            if context_only
            else "SLOT on scored positions"
        )
        hits.append(
            Hit(
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
        )
    return hits


def find_slot_via_helper(index: ModuleIndex, info: TargetInfo) -> list[Hit]:
    """``delta = optimize_delta(model, hidden, y, ...)`` then ``cross_entropy(head(hidden + delta), y)``:
    the SLOT optimization (#1229) moved into a helper — of the same module, or of a helper
    module it imports (``from slot_opt import optimize_slot``, ``import slot_opt``)."""
    hits: list[Hit] = []
    function = info.function
    for call in nodes_within(index.calls, function, index):
        positions = [
            i
            for i, a in enumerate(call.args)
            if a.keyword is None and isinstance(a.value, cst.Name) and a.value.value in info.names
        ]
        if not positions:
            continue
        helpers = [(index, f) for f in index.functions_named(call_tail(call))] + imported_functions(index, call)
        for helper_index, helper in helpers:
            if helper is function or not _optimizes_on_parameter(helper_index, helper, positions):
                continue
            statement = index.enclosing_statement(call)
            outputs = set(target_names(statement))
            targets = {call.args[i].value.value for i in positions}
            score = _score_after(index, statement, function, targets, outputs) if outputs else None
            if score is None:
                continue
            hits.append(
                Hit(
                    rule="PG201",
                    index=index,
                    node=statement,
                    message=(
                        f"`{helper.name.value}` optimizes fresh per-window tensors against targets "
                        f"{', '.join(sorted(targets))}, which are then scored with them at line {index.line(score)} "
                        "(SLOT on scored positions)"
                    ),
                    path=(
                        step(
                            helper_index, helper, f"{helper.name.value} runs backward on a loss of its target argument"
                        ),
                        step(index, statement, "called with the targets of this window"),
                        step(index, score, "the same targets are scored with the optimized tensors"),
                    ),
                )
            )
    return hits


def _optimizes_on_parameter(index: ModuleIndex, helper: cst.FunctionDef, positions: list[int]) -> bool:
    """The helper creates a trainable tensor and runs backward in a loop whose body reads
    one of the parameters at ``positions``, without rebinding it."""
    params = [p.name.value for p in helper.params.params]
    watched = {params[i] for i in positions if i < len(params)}
    calls = nodes_within(index.calls, helper, index)
    fresh = any(
        any(
            a.keyword is not None and a.keyword.value == "requires_grad" and index.code(a.value) == "True"
            for a in c.args
        )
        or call_tail(c) in {"requires_grad_", "Parameter"}
        for c in calls
    )
    if not fresh or not watched:
        return False
    for loop in nodes_within(index.loops, helper, index):
        if not any(call_tail(c) == "backward" for c in nodes_within(calls, loop, index)):
            continue
        rebound = {n for s in nodes_within(index.assigns, loop, index) for n in target_names(s)}
        if {n.value for n in value_names(loop.body)} & (watched - rebound):
            return True
    return False


def _optimized_positions(index: ModuleIndex, loop: cst.For | cst.While, function: cst.FunctionDef) -> str | None:
    """ "context" when every loss mask used in ``loop`` is set only on a leading slice
    (``mask[:, :s] = 1``), "scored" when a mask covers a trailing slice (``mask[:, s:] = 1``)."""
    used = {n.value for n in value_names(loop.body)}
    kinds: set[str] = set()
    for statement in nodes_within(index.assigns, function, index):
        if not isinstance(statement, cst.Assign):
            continue
        for target in (t.target for t in statement.targets):
            if not (isinstance(target, cst.Subscript) and isinstance(target.value, cst.Name)):
                continue
            if target.value.value not in used or not target.slice:
                continue
            element = target.slice[-1].slice
            if not isinstance(element, cst.Slice):
                continue
            leading = element.lower is None or index.code(element.lower) == "0"
            kinds.add("context" if leading and element.upper is not None else "scored")
    if kinds == {"context"}:
        return "context"
    return "scored" if kinds else None


def _score_after(
    index: ModuleIndex, loop: cst.CSTNode, function: cst.FunctionDef, targets: set[str], params: set[str]
) -> cst.CSTNode | None:
    """The first scoring call after ``loop`` on the same targets, with the optimized tensors
    used somewhere between the loop and that call (``logits = f(h + delta)``)."""
    loop_end = index.parsed.positions[loop].end.line
    params_used = False
    for statement in sorted(nodes_within(index.assigns, function, index), key=index.line):
        if index.line(statement) <= loop_end:
            continue
        value = assigned_value(statement)
        if value is None:
            continue
        names = {n.value for n in value_names(value)}
        params_used = params_used or bool(names & params)
        scoring = [
            n
            for n in walk(value)
            if isinstance(n, cst.Call) and call_tail(n) in {"cross_entropy", "nll_loss", "gather"}
        ]
        if params_used and any({v.value for v in value_names(c)} & targets for c in scoring):
            return statement
    return None
