"""Readers of single libcst nodes shared by every rule family: when the data-flow engine and the
mechanism detectors each had their own copy, a rule written against one disagreed with the other."""

from __future__ import annotations

import libcst as cst

from harness.check.parse import string_literal_value
from harness.check.tree.children import node_memo, walk


def dotted_name(expr: cst.CSTNode) -> str | None:
    """``a.b.c`` for a pure Name/Attribute chain, None for anything else."""
    parts: list[str] = []
    while type(expr) is cst.Attribute:  # exact types: isinstance on libcst's ABCs is a Python call
        parts.append(expr.attr.value)
        expr = expr.value
    if type(expr) is cst.Name:
        parts.append(expr.value)
        return ".".join(reversed(parts))
    return None


def last_identifier(expr: cst.CSTNode) -> str | None:
    """The rightmost identifier of a Name/Attribute (``args.ngram_on`` → ``ngram_on``)."""
    if isinstance(expr, cst.Name):
        return expr.value
    if isinstance(expr, cst.Attribute):
        return expr.attr.value
    return None


_CALL_NAMES: dict[int, tuple[cst.Call, str]] = node_memo()  # detectors ask ~50× per call


def call_name(call: cst.Call) -> str:
    """Dotted callee name, or its last identifier for calls on expressions (``x.sum()``)."""
    entry = _CALL_NAMES.get(id(call))
    if entry is not None and entry[0] is call:
        return entry[1]
    name = dotted_name(call.func)
    if name is None:
        name = "." + call.func.attr.value if type(call.func) is cst.Attribute else ""
    _CALL_NAMES[id(call)] = (call, name)
    return name


def call_tail(call: cst.Call) -> str:
    """Last component of the callee name (``torch.nn.functional.cross_entropy`` → ``cross_entropy``)."""
    return call_name(call).rsplit(".", 1)[-1]


def literal_text(node: cst.SimpleString) -> str | None:
    """The value of a string literal, or None where ``ast.literal_eval`` (libcst's evaluator) raises
    on hostile bytes (NUL, non-ASCII bytes literals): skip the literal, don't crash the family."""
    try:
        value = string_literal_value(node)
    except Exception:  # noqa: BLE001 — malformed escapes in hostile input
        return None
    return value if isinstance(value, str) else value.decode("latin-1")


def string_value(expr: cst.CSTNode, *, fstrings: bool = False) -> str | None:
    """The text of a literal or of adjacent literals (a loop: a shim's payload nests thousands to
    the right). With ``fstrings``, an f-string reads as its literal parts (a log line, a path
    pattern); a setting's key must be an exact literal, so the default leaves them out."""
    pieces: list[str] = []
    while type(expr) is cst.ConcatenatedString:
        left = _one_literal(expr.left, fstrings)
        if left is None:
            return None
        pieces.append(left)
        expr = expr.right
    last = _one_literal(expr, fstrings)
    return None if last is None else "".join(pieces) + last


def _one_literal(expr: cst.CSTNode, fstrings: bool) -> str | None:
    if type(expr) is cst.SimpleString:
        return literal_text(expr)
    if fstrings and type(expr) is cst.FormattedString:
        return "".join(p.value for p in expr.parts if type(p) is cst.FormattedStringText)
    return None


def strings_in(node: cst.CSTNode) -> list[str]:
    """All simple string literal values inside ``node`` (f-string parts included)."""
    found = []
    for child in walk(node):
        if isinstance(child, cst.SimpleString):
            value = literal_text(child)
            if value is not None:
                found.append(value)
        elif isinstance(child, cst.FormattedStringText):
            found.append(child.value)
    return found


def number_value(expr: cst.CSTNode) -> float | int | None:
    """The value of a numeric literal (``-1e-3`` included), None for anything else."""
    if isinstance(expr, cst.Integer):
        return int(expr.value.replace("_", ""), 0)
    if isinstance(expr, cst.Float):
        return float(expr.value.replace("_", ""))
    if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Minus):
        inner = number_value(expr.expression)
        return -inner if inner is not None else None
    return None


def assign_targets(statement: cst.CSTNode) -> list[cst.CSTNode]:
    """Target expressions of an Assign/AnnAssign/AugAssign, with tuples flattened."""
    raw: list[cst.CSTNode] = []
    if isinstance(statement, cst.Assign):
        raw = [t.target for t in statement.targets]
    elif isinstance(statement, (cst.AnnAssign, cst.AugAssign)):
        raw = [statement.target]
    flat: list[cst.CSTNode] = []
    while raw:
        target = raw.pop()
        if isinstance(target, (cst.Tuple, cst.List)):
            raw.extend(element.value for element in target.elements)
        else:
            flat.append(target)
    return flat


def assigned_value(statement: cst.CSTNode) -> cst.BaseExpression | None:
    if isinstance(statement, (cst.Assign, cst.AugAssign, cst.AnnAssign)):
        return statement.value
    return None


def target_names(statement: cst.CSTNode) -> list[str]:
    """Names bound (or attribute/subscript bases written) by an assignment statement."""
    names = []
    for target in assign_targets(statement):
        base = target
        while isinstance(base, cst.Subscript):
            base = base.value
        name = last_identifier(base)
        if name is not None:
            names.append(name)
    return names
