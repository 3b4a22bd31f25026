"""Which values in a scoring function are the *target* tokens (the tokens being predicted).

C1 (#1017) is the target of the scored position leaking into its own prediction, so every
causality/normalization detector first needs the target. Names alone are unreliable (``y`` is an
activation in model code): a name counts only in a function that scores something, and ``y``-style
names need evidence (the target argument of ``cross_entropy``/``gather``, or the ``[1:]``-shifted
slice of a token sequence). Of ``tokens[p-2]``, ``tokens[p-1]`` and ``tokens[p]``, the largest
offset is the token being predicted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import libcst as cst

from harness.check.tree.children import children, walk
from harness.check.tree.index import ModuleIndex, nodes_within
from harness.check.tree.nodes import assigned_value, call_tail, number_value, target_names
from harness.check.words import any_word, first_word, last_word

STRONG_TARGET = (
    first_word("tgts?", "targets?", "labels?", "next_tokens?")
    | last_word("tgts?", "targets?", "labels")
    | (first_word("y_?(batch|true|tgt)") & last_word("batch", "true", "tgt"))
)
# Metadata about targets (lengths, shapes, masks, files, where they sit: ``target_lo``/
# ``target_hi`` bound a window of #2147's hint table) is not the target token itself.
NOT_TARGET = (
    last_word("*len", "lens", "length", "lengths", "shape", "*size", "sizes", "*count", "*counts", "dtype", "*mask")
    | last_word("device", "*path", "*file", "*files", "*dir", "*name", "*names", "*bytes?", "*pattern", "*offsets?")
    | last_word("*start", "*end", "lo", "hi", "pos", "positions", "ptr", "begin", "stop")
)
WEAK_TARGET = first_word("y", "ys", "yb", "yy") | last_word("y")
_SCORE_CALLS = {"cross_entropy", "nll_loss", "log_softmax", "log", "log2", "logsumexp", "gather"}
# a cheap first look at a function's text, before its calls and names are asked
_SCORING_TEXT = re.compile(
    r"cross_entropy|nll_loss|log_softmax|logsumexp|gather|\blog2?\(|nll|loss_sum|log_?prob|logp|bits|score|bpb",
    re.IGNORECASE,
)
_NORMALIZER_CALLS = {"logsumexp", "log_softmax", "logaddexp"}
_SCORE_WORDS = any_word("*nll*", "loss_sums?", "log_?prob*", "logp*", "*bits*", "*score*", "*bpb*")
# tables of positions or lengths (``starts[i + 1]``), not token sequences
_POSITION_TABLE = any_word("*start*", "*end", "end*", "*offset*", "pos*", "*pos", "*bound*", "*len*", "*ptr*", "*idx*")
_POSITION_TABLE |= any_word("*index*", "cum*")
# pass a target through unchanged in meaning: index, reshape, cast, move
_CARRIER_METHODS = {"reshape", "view", "flatten", "squeeze", "unsqueeze", "view_as", "expand", "ravel", "contiguous"}
_CARRIER_METHODS |= {"long", "int", "to", "cpu", "cuda", "numpy", "tolist", "astype", "item", "clone", "detach"}
_CARRIER_FUNCS = {"as_tensor", "from_numpy", "asarray", "array", "int", "tensor", "ascontiguousarray"}


def value_names(expr: cst.CSTNode, skip: Callable[[cst.CSTNode], bool] | None = None) -> list[cst.Name]:
    """Name nodes that are variable references (not attribute members or keyword names), outside
    the nodes ``skip`` accepts."""
    found: list[cst.Name] = []
    stack: list[cst.CSTNode] = [expr]
    while stack:
        node = stack.pop()
        if skip is not None and skip(node):
            continue
        # exact types: isinstance on libcst's ABCs is a Python call
        if type(node) is cst.Name:
            found.append(node)
        elif type(node) is cst.Attribute or type(node) is cst.Arg:
            stack.append(node.value)
        elif type(node) is not cst.Lambda and type(node) is not cst.FunctionDef:
            stack.extend(children(node))
    return found


def identifiers(expr: cst.CSTNode) -> list[str]:
    """The variables and attribute members ``expr`` names (``args.vocab_size`` → ``args``, ``vocab_size``)."""
    return [n.value for n in value_names(expr)] + [n.attr.value for n in walk(expr) if isinstance(n, cst.Attribute)]


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
        if read_ids and any(id(node) in read_ids for node in walk(expr)):
            return "the predicted-position token"
        return None


def is_scoring_function(index: ModuleIndex, function: cst.FunctionDef, calls: list[cst.Call]) -> bool:
    """Minified scoring loops call a local helper (``def lse(r): ... np.log(np.exp(r - m).sum())``)
    instead of ``log_softmax``: a call to a module function that computes a log-normalizer
    makes this a scoring function too."""
    if _SCORING_TEXT.search(index.text_of(function)) and (
        any(call_tail(call) in _SCORE_CALLS for call in calls)
        or any(_SCORE_WORDS.search(name.value) for name in value_names(function.body))
    ):
        return True
    return any(_calls_helper_normalizer(index, function, call) for call in calls)


def _calls_helper_normalizer(index: ModuleIndex, function: cst.FunctionDef, call: cst.Call) -> bool:
    return any(h is not function and _computes_log_normalizer(index, h) for h in index.functions_named(call_tail(call)))


def _computes_log_normalizer(index: ModuleIndex, helper: cst.FunctionDef) -> bool:
    """Kept per helper: every scoring candidate that calls it asks again."""
    key = ("log_normalizer", id(helper))
    if key not in index.memo:
        tails = {call_tail(c) for c in nodes_within(index.calls, helper, index)}
        index.memo[key] = bool(tails & _NORMALIZER_CALLS) or {"log", "exp"} <= tails
    return index.memo[key]


def infer_targets(index: ModuleIndex, function: cst.FunctionDef, on_scoring_path: bool = False) -> TargetInfo | None:
    """Target-derived names in ``function``; None when it scores nothing. ``on_scoring_path``: a
    helper a scoring function calls (``cache.score_positions``, #982) forms part of the prediction
    without itself taking a log, so it is read as if it scored."""
    calls = nodes_within(index.calls, function, index)
    if not on_scoring_path and not is_scoring_function(index, function, calls):
        return None
    info = TargetInfo(function=function)
    # a helper handed the whole stream (``hints(target_ids)``, read at ``seq[p - 1]``): its offsets decide
    reads = _position_reads(index, function) if on_scoring_path else []
    streams = {name for read, name, _, _ in reads if isinstance(_single_index(read), cst.BinaryOperation)}
    for name in [p.name.value for p in function.params.params]:
        if name not in streams and STRONG_TARGET.search(name) and not NOT_TARGET.search(name):
            info.names.add(name)
            info.origin[name] = function
    for call in calls:
        target_arg = target_argument(call)
        for used in value_names(target_arg) if target_arg is not None else []:
            named = STRONG_TARGET.search(used.value) or WEAK_TARGET.search(used.value)
            if (named or call_tail(call) != "gather") and used.value not in info.names:
                info.names.add(used.value)
                info.origin[used.value] = call
    assigns = nodes_within(index.assigns, function, index)
    for statement in assigns:
        value = assigned_value(statement)
        if value is None:
            continue
        for name in target_names(statement):
            named = STRONG_TARGET.search(name) or (WEAK_TARGET.search(name) and is_shifted_slice(value))
            if named and not NOT_TARGET.search(name):
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
        return keywords.get("index", positional[-1] if len(positional) >= 2 else None)
    return None


def is_shifted_slice(expr: cst.CSTNode) -> bool:
    """``seq[1:]``, ``seq[s + 1 : e + 1]`` (possibly followed by reshape/to)."""
    while isinstance(expr, cst.Call) and isinstance(expr.func, cst.Attribute):
        expr = expr.func.value
    element = expr.slice[-1].slice if isinstance(expr, cst.Subscript) and expr.slice else None
    lower = element.lower if isinstance(element, cst.Slice) else None
    if isinstance(lower, cst.BinaryOperation) and isinstance(lower.operator, cst.Add):
        lower = lower.right  # ``s + 1``
    return lower is not None and number_value(lower) == 1


def _offset(index_expr: cst.CSTNode, starts: dict[str, int]) -> tuple[str, int] | None:
    """``p`` → (p, 0); ``p - 2`` → (p, -2); ``p + 1`` → (p, 1); ``p - k - 1`` → (p, -1 - start of k).
    A subtracted loop variable (``tokens[p - k]`` over context orders, #779's BackoffNgramMixer)
    reaches back from where its ``range`` starts: over ``range(1, n)`` a plain ``tokens[p]`` is the
    predicted token; when ``k`` can be 0, ``tokens[p]`` is context and the read is left out."""
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
            start = starts.get(index_expr.right.value)
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


def _single_index(subscript: cst.Subscript) -> cst.BaseExpression | None:
    """``seq[e]``'s ``e``; None for a slice or several indices."""
    element = subscript.slice[0].slice if len(subscript.slice) == 1 else None
    return element.value if isinstance(element, cst.Index) else None


def _position_reads(index: ModuleIndex, function: cst.FunctionDef) -> Iterator[tuple[cst.Subscript, str, str, int]]:
    """``seq[p + k]``: the subscript, ``seq``, ``p`` and ``k``."""
    starts = _range_starts(function)
    for subscript in nodes_within(index.subscripts, function, index):
        position = _single_index(subscript)
        offset = _offset(position, starts) if position is not None else None
        if isinstance(subscript.value, cst.Name) and offset is not None:
            yield subscript, subscript.value.value, *offset


def _predicted_position_reads(
    index: ModuleIndex, function: cst.FunctionDef, look_back_only_is_context: bool = False
) -> list[cst.Subscript]:
    """Subscripts ``arr[p + k]`` with the largest k among ≥2 offsets of the same ``arr``/``p``.
    ``look_back_only_is_context``: in a helper handed the scored positions (``rows_for(tokens,
    positions)``), reads at ``p - 2`` and ``p - 1`` only are the context of position p."""
    groups: dict[tuple[str, str], list[tuple[int, cst.Subscript]]] = {}
    for subscript, name, base, amount in _position_reads(index, function):
        if not _POSITION_TABLE.search(name):
            groups.setdefault((name, base), []).append((amount, subscript))
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
        chosen = _single_index(subscript)
        if not (isinstance(chosen, cst.Subscript) and isinstance(chosen.value, cst.Name)):
            continue
        if _POSITION_TABLE.search(chosen.value.value):
            continue
        calls = [n for n in walk(subscript.value) if isinstance(n, cst.Call)]
        if any(call_tail(c) in _NORMALIZER_CALLS or _calls_helper_normalizer(index, function, c) for c in calls):
            picked.add(index.code(chosen, 1 << 20))
    if not picked:
        return []
    return [s for s in subscripts if _is_read(index, s) and index.code(s, 1 << 20) in picked]


def _is_read(index: ModuleIndex, node: cst.CSTNode) -> bool:
    parent = index.parent(node)
    if isinstance(parent, cst.AugAssign):
        return parent.target is not node
    return not isinstance(parent, cst.AssignTarget)


def _carries(node: cst.CSTNode, info: TargetInfo) -> bool:
    """Does ``node`` pass a target through unchanged in meaning (index, reshape, cast)?"""
    while True:
        if isinstance(node, cst.Name):
            return node.value in info.names
        if isinstance(node, cst.Subscript):
            if any(node is read for read in info.reads):
                return True
            node = node.value
        elif (
            isinstance(node, cst.Call)
            and isinstance(node.func, cst.Attribute)
            and node.func.attr.value in _CARRIER_METHODS
        ):
            node = node.func.value
        elif isinstance(node, cst.Call) and call_tail(node) in _CARRIER_FUNCS and node.args:
            node = node.args[0].value
        else:
            return False


def _propagate(info: TargetInfo, assigns: list[cst.CSTNode]) -> None:
    for _ in range(6):
        known = len(info.names)
        for statement in assigns:
            value = assigned_value(statement)
            if not isinstance(statement, (cst.Assign, cst.AnnAssign)) or value is None or not _carries(value, info):
                continue
            for target in statement.targets if isinstance(statement, cst.Assign) else [statement]:
                if isinstance(target.target, cst.Name) and target.target.value not in info.names:
                    info.names.add(target.target.value)
                    info.origin[target.target.value] = statement
        if len(info.names) == known:
            return
