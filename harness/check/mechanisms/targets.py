"""Which values in a scoring function are the *target* tokens (the tokens being predicted).

Why a dedicated inference: C1 (#1017) is about the target of the scored position leaking
into its own prediction, so every causality/normalization detector first needs to know
what the target is. Names alone are unreliable (``y`` is an activation in model code), so a
name counts as a target only in a function that scores something, and plain ``y``-style
names need evidence: being the target argument of ``cross_entropy``/``gather``, or being the
``[1:]``-shifted slice of a token sequence whose ``[:-1]`` twin is the input. Position
arithmetic is also recognised: when a function reads ``tokens[p-2]``, ``tokens[p-1]`` and
``tokens[p]``, the largest offset (``tokens[p]``) is the token being predicted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import libcst as cst

from harness.check.tree.children import children, walk
from harness.check.tree.index import ModuleIndex, nodes_within
from harness.check.tree.nodes import assigned_value, call_tail, number_value, target_names

STRONG_TARGET = re.compile(
    r"^(tgt|tgts|target|targets|labels?|next_tokens?)(_\w+)?$|_(tgt|tgts|targets?|labels)$|^y_?(batch|true|tgt)$"
)
# Metadata about targets (lengths, shapes, masks, files, where they sit: ``target_lo``/
# ``target_hi`` bound a window of #2147's hint table) is not the target token itself.
NOT_TARGET = re.compile(
    r"(len|length|lens|lengths|shape|size|sizes|count|counts|dtype|device|mask|path|file|files|dir|name|names|"
    r"bytes|byte|pattern|ids_len|offset|offsets|start|end|_lo|_hi|_pos|_positions|_ptr|_begin|_stop)$",
    re.IGNORECASE,
)
WEAK_TARGET = re.compile(r"^(y|ys|yb|yy|y_\w+|\w+_y)$")
_SCORE_CALLS = {"cross_entropy", "nll_loss", "log_softmax", "log", "log2", "logsumexp", "gather"}
_SCORE_WORDS = re.compile(r"nll|loss_sum|log_?prob|logp|bits|score|bpb")
_POSITION_TABLE = re.compile(r"seqlen|start|end|offset|pos|bound|len|ptr|idx|index|cum", re.IGNORECASE)
_CARRIER_METHODS = {
    "reshape",
    "view",
    "flatten",
    "long",
    "int",
    "to",
    "cpu",
    "cuda",
    "numpy",
    "tolist",
    "astype",
    "contiguous",
    "squeeze",
    "unsqueeze",
    "item",
    "clone",
    "detach",
    "view_as",
    "expand",
    "ravel",
}
_CARRIER_FUNCS = {"as_tensor", "from_numpy", "asarray", "array", "int", "tensor", "ascontiguousarray"}


def value_names(expr: cst.CSTNode) -> list[cst.Name]:
    """Name nodes that are variable references (not attribute members or keyword names)."""
    found: list[cst.Name] = []
    stack: list[cst.CSTNode] = [expr]
    while stack:
        node = stack.pop()
        kind = type(node)  # exact types: isinstance on libcst's ABCs is a Python call
        if type(node) is cst.Name:
            found.append(node)
        elif type(node) is cst.Attribute or type(node) is cst.Arg:
            stack.append(node.value)
        elif kind is cst.Lambda or kind is cst.FunctionDef:
            continue
        else:
            stack.extend(children(node))
    return found


@dataclass
class TargetInfo:
    """Target-derived names of one function, and subscripts that read the predicted token."""

    function: cst.FunctionDef
    names: set[str] = field(default_factory=set)
    reads: list[cst.Subscript] = field(default_factory=list)
    origin: dict[str, cst.CSTNode] = field(default_factory=dict)

    def mentions(self, expr: cst.CSTNode) -> bool:
        return self.first_mention(expr) is not None

    def first_mention(self, expr: cst.CSTNode) -> str | None:
        for name in value_names(expr):
            if name.value in self.names:
                return name.value
        read_ids = {id(r) for r in self.reads}
        if read_ids:
            for node in walk(expr):
                if id(node) in read_ids:
                    return "the predicted-position token"
        return None


_SCORING_TEXT = re.compile(
    r"cross_entropy|nll_loss|log_softmax|logsumexp|gather|\blog2?\(|nll|loss_sum|log_?prob|logp|bits|score|bpb",
    re.IGNORECASE,
)


def is_scoring_function(index: ModuleIndex, function: cst.FunctionDef, calls: list[cst.Call]) -> bool:
    if not _SCORING_TEXT.search(index.text_of(function)):
        return _calls_log_normalizer(index, function, calls)
    if any(call_tail(call) in _SCORE_CALLS for call in calls):
        return True
    return any(_SCORE_WORDS.search(name.value) for name in value_names(function.body)) or _calls_log_normalizer(
        index, function, calls
    )


_NORMALIZER_CALLS = {"logsumexp", "log_softmax", "logaddexp"}


def _calls_log_normalizer(index: ModuleIndex, function: cst.FunctionDef, calls: list[cst.Call]) -> bool:
    """Minified scoring loops call a local helper (``def lse(r): ... np.log(np.exp(r - m).sum())``)
    instead of ``log_softmax``: a call to a module function that computes a log-normalizer
    makes this a scoring function too."""
    for call in calls:
        for helper in index.functions_named(call_tail(call)):
            if helper is not function and _computes_log_normalizer(index, helper):
                return True
    return False


def _computes_log_normalizer(index: ModuleIndex, helper: cst.FunctionDef) -> bool:
    """Kept per helper: every scoring candidate that calls it asks again."""
    known = index.memo.get(("log_normalizer", id(helper)))
    if known is None:
        tails = {call_tail(c) for c in nodes_within(index.calls, helper, index)}
        known = index.memo[("log_normalizer", id(helper))] = bool(
            tails & _NORMALIZER_CALLS or ({"log", "exp"} <= tails)
        )
    return known


def infer_targets(index: ModuleIndex, function: cst.FunctionDef, on_scoring_path: bool = False) -> TargetInfo | None:
    """Target-derived names in ``function``; None when the function scores nothing.

    ``on_scoring_path``: a helper a scoring function calls (``cache.score_positions``,
    #982) forms part of the prediction without itself taking a log, so it is read as if it
    scored."""
    calls = nodes_within(index.calls, function, index)
    if not on_scoring_path and not is_scoring_function(index, function, calls):
        return None
    info = TargetInfo(function=function)
    params = [p.name.value for p in function.params.params]
    streams = _position_indexed(index, function) if on_scoring_path else set()
    for name in params:
        if name in streams:
            continue  # a helper handed the whole stream (``hints(target_ids)``): its offsets decide
        if STRONG_TARGET.search(name) and not NOT_TARGET.search(name):
            info.names.add(name)
            info.origin[name] = function
    for call in calls:
        target_arg = target_argument(call)
        if target_arg is not None:
            for used in value_names(target_arg):
                if STRONG_TARGET.search(used.value) or WEAK_TARGET.match(used.value) or call_tail(call) != "gather":
                    if used.value not in info.names:
                        info.names.add(used.value)
                        info.origin[used.value] = call
    assigns = nodes_within(index.assigns, function, index)
    for statement in assigns:
        value = assigned_value(statement)
        if value is None:
            continue
        for name in target_names(statement):
            if NOT_TARGET.search(name):
                continue
            if STRONG_TARGET.search(name) or (WEAK_TARGET.match(name) and is_shifted_slice(value)):
                info.names.add(name)
                info.origin[name] = statement  # the binding explains more than a later use
    info.reads = _predicted_position_reads(index, function, look_back_only_is_context=on_scoring_path)
    info.reads += [r for r in _scored_index_reads(index, function) if all(r is not known for known in info.reads)]
    _propagate(info, assigns)
    return info


def target_argument(call: cst.Call) -> cst.CSTNode | None:
    tail = call_tail(call)
    positional = [a.value for a in call.args if a.keyword is None]
    keywords = {a.keyword.value: a.value for a in call.args if a.keyword is not None}
    if tail in {"cross_entropy", "nll_loss"}:
        return keywords.get("target", positional[1] if len(positional) > 1 else None)
    if tail == "gather":
        if "index" in keywords:
            return keywords["index"]
        return positional[-1] if len(positional) >= 2 else None
    return None


def is_shifted_slice(expr: cst.CSTNode) -> bool:
    """``seq[1:]``, ``seq[s + 1 : e + 1]`` (possibly followed by reshape/to)."""
    while isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute):
        expr = expr.func.value
    if not isinstance(expr, cst.Subscript) or not expr.slice:
        return False
    element = expr.slice[-1].slice
    if not isinstance(element, cst.Slice) or element.lower is None:
        return False
    lower = element.lower
    if number_value(lower) == 1:
        return True
    return (
        isinstance(lower, cst.BinaryOperation)
        and isinstance(lower.operator, cst.Add)
        and number_value(lower.right) == 1
    )


def _offset(index_expr: cst.CSTNode, starts: dict[str, int] | None = None) -> tuple[str, int] | None:
    """``p`` → (p, 0); ``p - 2`` → (p, -2); ``p + 1`` → (p, 1); ``p - k - 1`` → (p, -1 - start of k).

    A subtracted loop variable (``tokens[p - k]`` over context orders, the #779
    BackoffNgramMixer shape) reaches back to ``p - start`` where ``start`` is where its
    ``range`` begins; ``range(1, n)`` makes it a pure look-back, so a plain ``tokens[p]`` in
    the same function is the predicted token. When ``k`` can be 0, ``tokens[p]`` itself is
    context, and the read is left out."""
    if isinstance(index_expr, cst.Name):
        return index_expr.value, 0
    if isinstance(index_expr, cst.BinaryOperation):
        base = _offset(index_expr.left, starts)
        if base is None:
            return None
        amount = number_value(index_expr.right)
        if isinstance(amount, int):
            if isinstance(index_expr.operator, cst.Add):
                return base[0], base[1] + amount
            if isinstance(index_expr.operator, cst.Subtract):
                return base[0], base[1] - amount
        elif isinstance(index_expr.operator, cst.Subtract) and isinstance(index_expr.right, cst.Name):
            start = (starts or {}).get(index_expr.right.value)
            if start is not None and base[1] - start < 0:
                return base[0], base[1] - start
    return None


def _range_starts(function: cst.FunctionDef) -> dict[str, int]:
    """Loop variables of ``for k in range(a, ...)`` (statements and comprehensions) → ``a``."""
    starts: dict[str, int] = {}
    for node in walk(function.body):
        if isinstance(node, (cst.For, cst.CompFor)) and isinstance(node.target, cst.Name):
            iterator = node.iter
            if isinstance(iterator, cst.Call) and call_tail(iterator) == "range" and iterator.args:
                first = number_value(iterator.args[0].value) if len(iterator.args) >= 2 else 0
                if isinstance(first, int):
                    starts[node.target.value] = first
    return starts


def _position_indexed(index: ModuleIndex, function: cst.FunctionDef) -> set[str]:
    """Names subscripted at a position expression (``seq[p]``, ``seq[p - 1]``): sequences."""
    found: set[str] = set()
    starts = _range_starts(function)
    for subscript in nodes_within(index.subscripts, function, index):
        if isinstance(subscript.value, cst.Name) and len(subscript.slice) == 1:
            element = subscript.slice[0].slice
            if isinstance(element, cst.Index) and isinstance(element.value, cst.BinaryOperation):
                if _offset(element.value, starts) is not None:
                    found.add(subscript.value.value)
    return found


def _predicted_position_reads(
    index: ModuleIndex, function: cst.FunctionDef, look_back_only_is_context: bool = False
) -> list[cst.Subscript]:
    """Subscripts ``arr[p + k]`` with the largest k among ≥2 offsets of the same ``arr``/``p``.

    ``look_back_only_is_context``: in a helper handed the scored positions
    (``rows_for(tokens, positions)``), reads at ``p - 2`` and ``p - 1`` only are the context
    of position p; the predicted token is the one at offset 0 or later, when read at all."""
    groups: dict[tuple[str, str], list[tuple[int, cst.Subscript]]] = {}
    starts = _range_starts(function)
    for subscript in nodes_within(index.subscripts, function, index):
        if not isinstance(subscript.value, cst.Name) or len(subscript.slice) != 1:
            continue
        if _POSITION_TABLE.search(subscript.value.value):
            continue
        element = subscript.slice[0].slice
        if not isinstance(element, cst.Index):
            continue
        offset = _offset(element.value, starts)
        if offset is None:
            continue
        groups.setdefault((subscript.value.value, offset[0]), []).append((offset[1], subscript))
    reads: list[cst.Subscript] = []
    for entries in groups.values():
        offsets = {amount for amount, _ in entries}
        if len(offsets) < 2:
            continue
        top = max(offsets)
        if look_back_only_is_context and top < 0:
            continue
        reads.extend(node for amount, node in entries if amount == top and _is_read(index, node))
    return reads


def _scored_index_reads(index: ModuleIndex, function: cst.FunctionDef) -> list[cst.Subscript]:
    """``nll = -(r - lse(r))[tokens[p]]``: the token that picks the scored entry out of a
    log-normalized row is the target, even where ``tokens[p]`` is the only offset of ``tokens``
    in the function (a helper class's ``nll_at(row, tokens, p)``, the #1420 tilt moved into
    ``online_ngram_tilt.py``). Every read of that same token expression is a target read."""
    picked: set[str] = set()
    subscripts = nodes_within(index.subscripts, function, index)
    for subscript in subscripts:
        if len(subscript.slice) != 1 or not isinstance(subscript.slice[0].slice, cst.Index):
            continue
        chosen = subscript.slice[0].slice.value
        if not (isinstance(chosen, cst.Subscript) and isinstance(chosen.value, cst.Name)):
            continue
        if _POSITION_TABLE.search(chosen.value.value):
            continue
        if any(isinstance(n, cst.Call) and _normalizes(index, function, n) for n in walk(subscript.value)):
            picked.add(index.code(chosen, 1 << 20))
    if not picked:
        return []
    return [s for s in subscripts if _is_read(index, s) and index.code(s, 1 << 20) in picked]


def _normalizes(index: ModuleIndex, function: cst.FunctionDef, call: cst.Call) -> bool:
    tail = call_tail(call)
    if tail in _NORMALIZER_CALLS:
        return True
    return any(h is not function and _computes_log_normalizer(index, h) for h in index.functions_named(tail))


def _is_read(index: ModuleIndex, node: cst.CSTNode) -> bool:
    parent = index.parent(node)
    if isinstance(parent, cst.AssignTarget):
        return False
    return not (isinstance(parent, cst.AugAssign) and parent.target is node)


def _carries(value: cst.CSTNode, info: TargetInfo) -> bool:
    """Does ``value`` pass a target through unchanged in meaning (index, reshape, cast)?"""
    node = value
    while True:
        if isinstance(node, cst.Name):
            return node.value in info.names
        if isinstance(node, cst.Subscript):
            if any(node is read for read in info.reads):
                return True
            node = node.value
            continue
        if isinstance(node, cst.Call):
            if isinstance(node.func, cst.Attribute) and node.func.attr.value in _CARRIER_METHODS:
                node = node.func.value
                continue
            if call_tail(node) in _CARRIER_FUNCS and node.args:
                node = node.args[0].value
                continue
            return False
        return False


def _propagate(info: TargetInfo, assigns: list[cst.CSTNode]) -> None:
    changed = True
    rounds = 0
    while changed and rounds < 6:
        changed, rounds = False, rounds + 1
        for statement in assigns:
            if not isinstance(statement, (cst.Assign, cst.AnnAssign)):
                continue
            value = assigned_value(statement)
            if value is None or not _carries(value, info):
                continue
            for target in statement.targets if isinstance(statement, cst.Assign) else [statement]:
                node = target.target
                if isinstance(node, cst.Name) and node.value not in info.names:
                    info.names.add(node.value)
                    info.origin[node.value] = statement
                    changed = True
