"""Score sinks of the taint walk: telling a running score (``loss_sum += nll.sum()``,
``chunk_nll[ci] = …``, ``with no_grad(): nll = model(x, y)``) from look-alikes — a byte/token
count, a list of document starts, a residual ``x = x + block(x)`` — is its own vocabulary, and
the ordering rules (PG101/PG103) are only as good as it.
"""

from __future__ import annotations

import builtins
import re

import libcst as cst

from harness.check.flow import names as N
from harness.check.flow.loops import own_statements
from harness.check.flow.model import EffectKind, Taint
from harness.check.flow.scope import Scope, literal_key
from harness.check.tree.children import walk
from harness.check.tree.nodes import call_tail


class ScoreSinks:
    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.info = scope.info

    def score_if_no_grad_forward(
        self, target: cst.BaseExpression, value_node: cst.BaseExpression, value: Taint | None, line: int
    ) -> None:
        """``with torch.no_grad(): nll = model(x, y)`` on VAL is the scoring half of score-first
        TTT even when the number is accumulated later or by an unrecognisable name."""
        name = N.dotted_name(target)
        if not self.scope.no_grad_depth or value is None or name is None or not self.scope.loops:
            return
        last = N.last_part(name)
        if N.TRAIN_WORD.search(last) or N.DENOMINATOR_NAME.search(last):
            return
        if not any(isinstance(node, cst.Call) for node in walk(value_node)):
            return
        if "." not in name and name not in self.scope.per_function(N.names_read_outside_logs):
            return  # only logged: the value is kept for a progress line, not a score
        self._scored(f"scored under no_grad into {name}", line, value, value_node)

    def _scored(self, note: str, line: int, value: Taint, value_node: cst.BaseExpression) -> None:
        """A score dated where its losses were computed, unless the model runs right here:
        ``after = model(x, y, lora=adapter)`` runs after any update since ``x`` was sliced, while
        a reduction of an earlier output (``nll = ptl[...].sum()``) dates back to that output."""
        refs = set(N.refs(value_node))
        produced = None if self._runs_model(value_node) else refs
        self.scope.emit(EffectKind.SCORE, line, note, value, refs, produced_from=produced)

    def counts_only(self, value_node: cst.BaseExpression) -> bool:
        """``bs += lut[tg].double().sum()`` / ``tc += tg.numel()``: VAL reaches the value only as
        the index of a fixed table or through a size, so it counts bytes or tokens and is no
        score — the denominator, whatever a minifier named it (``bs``, ``tc``)."""
        found_count = False
        stack: list[cst.CSTNode] = [value_node]
        while stack:
            node = stack.pop()
            if isinstance(node, cst.Subscript) and not self._tainted_expr(node.value):
                found_count = found_count or any(self._tainted_expr(e) for e in N.children(node) if e is not node.value)
                continue
            if isinstance(node, cst.Call) and (
                (isinstance(node.func, cst.Attribute) and node.func.attr.value in ("numel", "nelement", "size"))
                or (isinstance(node.func, cst.Name) and node.func.value == "len")
            ):
                found_count = True
                continue
            dotted = N.dotted_name(node)
            if dotted is not None:
                if self.scope.lookup(dotted, node) is not None:
                    return False
                continue
            stack.extend(N.children(node))
        return found_count

    def _tainted_expr(self, node: cst.CSTNode) -> bool:
        return any(self.scope.lookup(r, node) is not None for r in N.refs(node))

    def _runs_model(self, value_node: cst.BaseExpression) -> bool:
        """A call through a submission object (``model(…)``, ``m.f(…)``, ``fwd(…)``): not a
        library function, a builtin, or a method of an already-computed VAL tensor."""
        for node in walk(value_node):
            callee = N.dotted_name(node.func) if isinstance(node, cst.Call) else None
            if callee is None:
                continue
            root = N.root_part(callee)
            if (
                root not in _LIBRARY_ROOTS
                and not hasattr(builtins, root)
                and not _LOSS_FUNCTION.search(callee)
                and self.scope.lookup(root, node) is None
            ):
                return True
        return False

    def accumulate_if_self_add(
        self, target: cst.BaseExpression, value_node: cst.BaseExpression, value: Taint | None, line: int
    ) -> None:
        """``loss_sum = loss_sum + nll.sum()`` is the same accumulation as ``+=``."""
        name = N.dotted_name(target)
        if value is None or name is None:
            return
        if (
            isinstance(value_node, cst.Call)
            and call_tail(value_node) in _CONCATENATIONS
            and name in set(N.refs(value_node))
            and N.SCORE_LIST_NAME.search(N.last_part(name))
            and self.is_score_target(name)
        ):
            # ``all_nll = torch.cat([all_nll, nll])`` grows the per-token score like an append
            self.accumulated(name, line, value, value_node)
            return
        if not isinstance(value_node, cst.BinaryOperation) or not isinstance(value_node.operator, cst.Add):
            return
        if name not in set(N.refs(value_node)):
            return
        operands = _add_operands(value_node)
        added = [o for o in operands if N.dotted_name(o) != name]
        if not any(self._tainted_expr(o) for o in added):
            # ``bos_pos = [0] + bos_pos``: nothing derived from VAL is added, the old value is
            # only extended by constants (#1953 phased TTT prepending a document start)
            return
        if any(isinstance(o, (cst.List, cst.ListComp, cst.Tuple)) for o in operands) and not N.SCORE_LIST_NAME.search(
            N.last_part(name)
        ):
            return  # a list grown by concatenation is a score only when named as one, like ``append``
        if N.contains_matmul(value_node):
            note = f"activation statistics `{name} = {self.scope.short(value_node)}`"
            self.scope.emit(EffectKind.CALIBRATION, line, note, value, set(N.refs(value_node)))
        elif self.is_score_target(name) and not any(self.reads_itself(name, o) for o in added):
            self.accumulated(name, line, value, value_node)

    def accumulated(self, name: str, line: int, value: Taint, value_node: cst.BaseExpression) -> None:
        """``name`` grows by a VAL-derived term: a score accumulated from its other operands."""
        refs = set(N.refs(value_node))
        self.scope.emit(EffectKind.SCORE, line, f"score accumulated into {name}", value, refs, refs - {name})

    def reads_itself(self, name: str, added: cst.CSTNode) -> bool:
        """``x = x + mlp(norm(x))``, or ``x = x + skip`` with ``skip`` from an earlier ``x``: a residual
        update of a hidden state, not a running total, which never feeds its own value into what it
        adds (a recurrent-block forward of an accepted record, issue #12). ``loss_sum`` stays a score."""
        if N.SCORE_LIST_NAME.search(N.last_part(name)):
            return False
        return name in self.info.closure(set(N.refs(added)))

    def score_if_stored(
        self, target: cst.BaseExpression, value_node: cst.BaseExpression, value: Taint | None, line: int
    ) -> None:
        """``chunk_nll[slot] = ptl[0, -n:].detach().sum()``: a per-chunk slot of a score buffer
        summed into the result later is the same accumulation as ``append`` (per-document
        LoRA TTT storing each chunk's loss before its ``backward()``, rules-research H.6(d))."""
        if value is None or not isinstance(target, cst.Subscript) or literal_key(target) is not None:
            return
        holder = N.dotted_name(target.value)
        if (
            holder is not None
            and N.SCORE_LIST_NAME.search(N.last_part(holder))
            and self.is_score_target(holder)
            and not self.counts_only(value_node)
        ):
            self._scored(f"score stored into {holder}[…]", line, value, value_node)

    def is_score_target(self, name: str) -> bool:
        """An accumulator that can become the reported score: returned or logged as val_*,
        a parameter (the caller's accumulator) or an attribute — not a local training log."""
        last = N.last_part(name)
        if N.TRAIN_WORD.search(last) or last.startswith("tr_") or N.DENOMINATOR_NAME.search(last):
            # a training log, or a byte/token count: the denominator says nothing about
            # whether the model scored a token before training on it
            return False
        root = N.root_part(name)
        if root in self.info.params or "." in name:
            return True
        # a local is a running total when named as one, added to in a loop of this function or
        # started at zero (``s = 0.0``); one addition (``x = x + self.bigram(ids)``) combines two values
        if (
            not self.scope.loops
            and not N.SCORE_LIST_NAME.search(last)
            and root not in self.scope.per_function(_names_started_at_zero)
        ):
            return False
        return name in self.info.flows_out or root in self.info.flows_out


_ZERO_CALLS = frozenset({"zeros", "zeros_like", "zero_", "tensor", "float", "int", "list", "dict"})


def _is_zero(node: cst.BaseExpression) -> bool:
    if isinstance(node, (cst.Integer, cst.Float)):
        return node.value.replace("_", "").strip("0.").strip() == ""
    if isinstance(node, (cst.List, cst.Dict)):
        return not node.elements
    if isinstance(node, cst.Call):
        method = call_tail(node)
        if method in ("zeros", "zeros_like"):
            return True
        if method in _ZERO_CALLS:
            return not node.args or _is_zero(node.args[0].value)
    return False


def _names_started_at_zero(body: list[cst.CSTNode]) -> set[str]:
    """Names assigned a zero (``0``, ``0.0``, ``[]``, ``torch.zeros(…)``, ``torch.tensor(0.0)``)."""
    found: set[str] = set()
    for assign in own_statements(body):
        if not isinstance(assign, cst.Assign):
            continue
        values = [e.value for e in assign.value.elements] if isinstance(assign.value, cst.Tuple) else [assign.value]
        for target in assign.targets:
            names = N.assigned_names(target.target)
            if len(values) == len(names):
                found.update(n for n, v in zip(names, values) if _is_zero(v))
            elif len(values) == 1 and _is_zero(values[0]):
                found.update(names)
    return found


def _add_operands(node: cst.BaseExpression) -> list[cst.BaseExpression]:
    """The terms of ``a + b + c`` (a left-nested chain of additions)."""
    terms: list[cst.BaseExpression] = []
    stack: list[cst.BaseExpression] = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, cst.BinaryOperation) and isinstance(current.operator, cst.Add):
            stack.extend((current.right, current.left))
        else:
            terms.append(current)
    return terms


_CONCATENATIONS = frozenset({"cat", "concat", "concatenate", "stack", "hstack", "vstack"})
# ``criterion(logits, y)`` / ``loss_fn(…)`` re-reduce an earlier output; they do not run the model
_LOSS_FUNCTION = re.compile(r"loss|criterion|entropy|nll", re.IGNORECASE)
_LIBRARY_ROOTS = frozenset({"torch", "F", "nn", "np", "numpy", "math", "dist", "functional", "jnp", "jax"})
