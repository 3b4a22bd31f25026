"""Small, dependency-free helpers over libcst trees shared by the mechanism detectors.

Why a per-module index: every detector needs "all calls", "all assignments", "the function
this node sits in" and "the statements of this function in order". Walking a 3,800-line
decoded submission once and sharing the lists keeps all detectors together well inside
the golf-check time budget.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import libcst as cst

from harness.check.parse import ParsedSource
from harness.findings import Severity, Step

FunctionNode = cst.FunctionDef


def walk(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """Pre-order walk without recursion (minified code nests deeply)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


def dotted_name(expr: cst.CSTNode) -> str | None:
    """``a.b.c`` for Name/Attribute chains, None for anything else."""
    parts: list[str] = []
    while isinstance(expr, cst.Attribute):
        parts.append(expr.attr.value)
        expr = expr.value
    if isinstance(expr, cst.Name):
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


def call_name(call: cst.Call) -> str:
    """Dotted callee name, or its last identifier for calls on expressions (``x.sum()``)."""
    dotted = dotted_name(call.func)
    if dotted is not None:
        return dotted
    if isinstance(call.func, cst.Attribute):
        return "." + call.func.attr.value
    return ""


def call_tail(call: cst.Call) -> str:
    """Last component of the callee name (``torch.nn.functional.cross_entropy`` → ``cross_entropy``)."""
    return call_name(call).rsplit(".", 1)[-1]


def identifiers(expr: cst.CSTNode) -> set[str]:
    """Every Name identifier and every dotted Name/Attribute chain inside ``expr``."""
    found: set[str] = set()
    for node in walk(expr):
        if isinstance(node, cst.Name):
            found.add(node.value)
        elif isinstance(node, cst.Attribute):
            dotted = dotted_name(node)
            if dotted is not None:
                found.add(dotted)
            found.add(node.attr.value)
    return found


def string_value(expr: cst.CSTNode) -> str | None:
    if isinstance(expr, cst.SimpleString):
        value = expr.evaluated_value
        return value if isinstance(value, str) else value.decode("latin-1")
    if isinstance(expr, cst.ConcatenatedString):
        left, right = string_value(expr.left), string_value(expr.right)
        if left is not None and right is not None:
            return left + right
    return None


def number_value(expr: cst.CSTNode) -> float | int | None:
    if isinstance(expr, cst.Integer):
        return int(expr.value.replace("_", ""), 0)
    if isinstance(expr, cst.Float):
        return float(expr.value.replace("_", ""))
    if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Minus):
        inner = number_value(expr.expression)
        return -inner if inner is not None else None
    return None


def strings_in(node: cst.CSTNode) -> list[str]:
    """All simple string literal values inside ``node`` (f-string parts included)."""
    found = []
    for child in walk(node):
        if isinstance(child, cst.SimpleString):
            value = string_value(child)
            if value is not None:
                found.append(value)
        elif isinstance(child, cst.FormattedStringText):
            found.append(child.value)
    return found


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
    if isinstance(statement, (cst.Assign, cst.AugAssign)):
        return statement.value
    if isinstance(statement, cst.AnnAssign):
        return statement.value
    return None


def target_names(statement: cst.CSTNode) -> list[str]:
    """Names bound (or attribute/subscript bases written) by an assignment statement."""
    names = []
    for target in assign_targets(statement):
        base = target
        while isinstance(base, cst.Subscript):
            base = base.value
        name = last_identifier(base) if isinstance(base, (cst.Name, cst.Attribute)) else None
        if name is not None:
            names.append(name)
    return names


def word_match(pattern: re.Pattern[str], names: set[str] | list[str]) -> str | None:
    for name in names:
        if pattern.search(name):
            return name
    return None


@dataclass
class ModuleIndex:
    """Nodes of one parsed source grouped by kind, and a lookup of enclosing scopes."""

    parsed: ParsedSource
    calls: list[cst.Call] = field(default_factory=list)
    assigns: list[cst.CSTNode] = field(default_factory=list)  # Assign / AugAssign / AnnAssign
    binops: list[cst.BinaryOperation] = field(default_factory=list)
    subscripts: list[cst.Subscript] = field(default_factory=list)
    functions: list[cst.FunctionDef] = field(default_factory=list)
    loops: list[cst.CSTNode] = field(default_factory=list)  # For / While
    comparisons: list[cst.Comparison] = field(default_factory=list)
    imports: list[cst.CSTNode] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.parsed.source.display_name

    def line(self, node: cst.CSTNode) -> int:
        return self.parsed.line_of(node)

    def code(self, node: cst.CSTNode, limit: int = 90) -> str:
        text = " ".join(self.parsed.code_of(node).split())
        return text if len(text) <= limit else text[: limit - 1] + "…"

    def parent(self, node: cst.CSTNode) -> cst.CSTNode | None:
        return self.parsed.parents.get(node)  # type: ignore[attr-defined]

    def ancestors(self, node: cst.CSTNode) -> Iterator[cst.CSTNode]:
        current = self.parent(node)
        while current is not None:
            yield current
            current = self.parent(current)

    def enclosing_function(self, node: cst.CSTNode) -> cst.FunctionDef | None:
        for ancestor in self.ancestors(node):
            if isinstance(ancestor, cst.FunctionDef):
                return ancestor
        return None

    def enclosing_statement(self, node: cst.CSTNode) -> cst.CSTNode:
        """The small statement (Assign, Expr…) or compound header holding ``node``."""
        current: cst.CSTNode = node
        for ancestor in self.ancestors(node):
            if isinstance(ancestor, (cst.SimpleStatementLine, cst.IndentedBlock, cst.Module)):
                return current
            current = ancestor
        return current

    def functions_named(self, name: str) -> list[cst.FunctionDef]:
        return [function for function in self.functions if function.name.value == name]


class _Collector(cst.CSTVisitor):
    def __init__(self, index: ModuleIndex) -> None:
        self.index = index

    def visit_Call(self, node: cst.Call) -> None:
        self.index.calls.append(node)

    def visit_Assign(self, node: cst.Assign) -> None:
        self.index.assigns.append(node)

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self.index.assigns.append(node)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        self.index.assigns.append(node)

    def visit_BinaryOperation(self, node: cst.BinaryOperation) -> None:
        self.index.binops.append(node)

    def visit_Subscript(self, node: cst.Subscript) -> None:
        self.index.subscripts.append(node)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.index.functions.append(node)

    def visit_For(self, node: cst.For) -> None:
        self.index.loops.append(node)

    def visit_While(self, node: cst.While) -> None:
        self.index.loops.append(node)

    def visit_Comparison(self, node: cst.Comparison) -> None:
        self.index.comparisons.append(node)

    def visit_Import(self, node: cst.Import) -> None:
        self.index.imports.append(node)

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        self.index.imports.append(node)


def index_module(parsed: ParsedSource) -> ModuleIndex:
    index = ModuleIndex(parsed=parsed)
    parsed.module.visit(_Collector(index))
    return index


def nodes_within(index_nodes: list, container: cst.CSTNode, index: ModuleIndex) -> list:
    """The members of ``index_nodes`` that sit inside ``container`` (by source range)."""
    positions = index.parsed.positions
    outer = positions.get(container)  # type: ignore[attr-defined]
    if outer is None:
        return []
    start, end = (outer.start.line, outer.start.column), (outer.end.line, outer.end.column)
    inside = []
    for node in index_nodes:
        where = positions.get(node)  # type: ignore[attr-defined]
        if where is None:
            continue
        if start <= (where.start.line, where.start.column) and (where.end.line, where.end.column) <= end:
            inside.append(node)
    return inside


@dataclass(frozen=True)
class Hit:
    """A detector's raw result, before the configuration decides its final severity.

    ``node`` is what the configuration guards are looked up from (the flagged statement);
    ``path`` is the evidence trail shown to the reviewer.
    """

    rule: str
    severity: Severity
    index: ModuleIndex
    node: cst.CSTNode
    message: str
    path: tuple[Step, ...] = ()
    zero_factors: tuple[cst.CSTNode, ...] = ()  # factors that switch the mechanism off when 0


def step(index: ModuleIndex, node: cst.CSTNode, note: str) -> Step:
    return Step(file=index.name, line=index.line(node), note=note)
