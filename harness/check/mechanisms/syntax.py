"""Small, dependency-free helpers over libcst trees shared by the mechanism detectors.

Why a per-module index: every detector needs "all calls", "all assignments", "the function
this node sits in" and "the statements of this function in order". Walking a 3,800-line
decoded submission once and sharing the lists keeps all detectors together well inside
the golf-check time budget.
"""

from __future__ import annotations

import re
import weakref
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field

import libcst as cst

from harness.check.children import make_child_reader
from harness.check.parse import ParsedSource, string_literal_value
from harness.findings import Step

FunctionNode = cst.FunctionDef


_SKIPPED_FIELDS = re.compile(
    r"^(whitespace\w*|lpar|rpar|comma|semicolon|colon|dot|lbracket|rbracket|lbrace|rbrace|leading_lines|"
    r"lines_after_decorators|header|footer|first_colon|second_colon|equal|star|asynchronous|operator)$"
)
# Syntactic children without whitespace/punctuation nodes (see harness/check/children.py).
children_of, _forget_children = make_child_reader(lambda name: _SKIPPED_FIELDS.match(name) is not None)


def forget_children() -> None:
    """Drop the memos (and the trees they keep alive) once a submission is done."""
    _forget_children()
    _CALL_NAMES.clear()
    _RECENT.clear()


def walk(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """Pre-order walk without recursion (minified code nests deeply)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(children_of(current)))


def dotted_name(expr: cst.CSTNode) -> str | None:
    """``a.b.c`` for Name/Attribute chains, None for anything else."""
    parts: list[str] = []
    while type(expr) is cst.Attribute:  # exact types: isinstance on libcst's ABCs is a Python call
        parts.append(expr.attr.value)  # type: ignore[attr-defined]
        expr = expr.value  # type: ignore[attr-defined]
    if type(expr) is cst.Name:
        parts.append(expr.value)  # type: ignore[attr-defined]
        return ".".join(reversed(parts))
    return None


def last_identifier(expr: cst.CSTNode) -> str | None:
    """The rightmost identifier of a Name/Attribute (``args.ngram_on`` → ``ngram_on``)."""
    if isinstance(expr, cst.Name):
        return expr.value
    if isinstance(expr, cst.Attribute):
        return expr.attr.value
    return None


_CALL_NAMES: dict[int, tuple[cst.Call, str]] = {}  # kept by id next to the call: detectors ask ~50× per call


def call_name(call: cst.Call) -> str:
    """Dotted callee name, or its last identifier for calls on expressions (``x.sum()``)."""
    entry = _CALL_NAMES.get(id(call))
    if entry is not None and entry[0] is call:
        return entry[1]
    name = dotted_name(call.func)
    if name is None:
        name = "." + call.func.attr.value if type(call.func) is cst.Attribute else ""  # type: ignore[attr-defined]
    _CALL_NAMES[id(call)] = (call, name)
    return name


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


def literal_text(node: cst.SimpleString) -> str | None:
    """The value of a string literal, or None when hostile bytes make it unevaluable.

    libcst evaluates literals with ``ast.literal_eval``, which raises on NUL bytes and on
    non-ASCII bytes literals; a detector must skip such a literal, not crash the family."""
    try:
        value = string_literal_value(node)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, str) else value.decode("latin-1")


def string_value(expr: cst.CSTNode) -> str | None:
    """The text of a literal or of adjacent literals. The chain of adjacent literals nests to
    the right, one level per literal, and a shim's payload can hold thousands: it is walked
    in a loop, never by recursion."""
    pieces: list[str] = []
    while isinstance(expr, cst.ConcatenatedString):
        left = literal_text(expr.left) if isinstance(expr.left, cst.SimpleString) else None
        if left is None:
            return None
        pieces.append(left)
        expr = expr.right
    if not isinstance(expr, cst.SimpleString):
        return None
    last = literal_text(expr)
    return None if last is None else "".join(pieces) + last


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

    _keys: dict[int, list[int]] = field(default_factory=dict)  # start offsets of each own list
    _owner: dict[int, cst.FunctionDef | None] = field(default_factory=dict)
    _lines: list[str] = field(default_factory=list)
    _by_name: dict[str, list[cst.FunctionDef]] = field(default_factory=dict)
    # per-node answers detectors compute more than once, keyed (question, id(node)); the nodes
    # live as long as this index's tree, so ids are stable
    memo: dict[tuple[str, int], bool] = field(default_factory=dict)
    # the submission's indexes, set by ``link_submission``; weak, so no index→peers→index cycle
    # keeps the trees alive past the audit (they must go by reference counting alone)
    _peers: list[weakref.ref[ModuleIndex]] = field(default_factory=list)

    def own_lists(self) -> list[list]:
        return [self.calls, self.assigns, self.binops, self.subscripts, self.functions, self.loops, self.comparisons]

    def sorted_keys(self, nodes: list) -> list[int] | None:
        """Start positions of one of this index's own lists (which are kept sorted)."""
        return self._keys.get(id(nodes)) if any(nodes is own for own in self.own_lists()) else None

    @property
    def name(self) -> str:
        return self.parsed.source.display_name

    def line(self, node: cst.CSTNode) -> int:
        return self.parsed.line_of(node)

    def code(self, node: cst.CSTNode, limit: int = 90) -> str:
        text = self.parsed.flat_code(node)
        return text if len(text) <= limit else text[: limit - 1] + "…"

    def parent(self, node: cst.CSTNode) -> cst.CSTNode | None:
        return self.parsed.parent_of(node)

    def ancestors(self, node: cst.CSTNode) -> Iterator[cst.CSTNode]:
        current = self.parent(node)
        while current is not None:
            yield current
            current = self.parent(current)

    def enclosing_function(self, node: cst.CSTNode) -> cst.FunctionDef | None:
        key = id(node)
        if key in self._owner:
            return self._owner[key]
        found = None
        for ancestor in self.ancestors(node):
            if isinstance(ancestor, cst.FunctionDef):
                found = ancestor
                break
        self._owner[key] = found
        return found

    def text_of(self, node: cst.CSTNode) -> str:
        """The source lines spanned by ``node`` (a cheap prefilter; no code generation)."""
        if not self._lines:
            self._lines.extend(self.parsed.source.text.splitlines())
        where = self.parsed.positions.get(node)  # type: ignore[attr-defined]
        if where is None:
            return ""
        return "\n".join(self._lines[where.start.line - 1 : where.end.line])

    def all_nodes(self) -> Iterator[cst.CSTNode]:
        """Every node except the module, in source order (from the parse layer's parent map)."""
        return iter(self.parsed.nodes)

    def enclosing_statement(self, node: cst.CSTNode) -> cst.CSTNode:
        """The small statement (Assign, Expr…) or compound header holding ``node``."""
        current: cst.CSTNode = node
        for ancestor in self.ancestors(node):
            # a one-line body (``def f(a): x = …; y += …``) holds its statements in a suite
            if isinstance(ancestor, (cst.SimpleStatementLine, cst.SimpleStatementSuite, cst.IndentedBlock, cst.Module)):
                return current
            current = ancestor
        return current

    @property
    def peers(self) -> list[ModuleIndex]:
        """Every index of the same submission (this one included); empty when never linked."""
        return [index for index in (ref() for ref in self._peers) if index is not None]

    def functions_named(self, name: str) -> list[cst.FunctionDef]:
        if not self._by_name:
            for function in self.functions:
                self._by_name.setdefault(function.name.value, []).append(function)
        return self._by_name.get(name, [])


def link_submission(indexes: list[ModuleIndex]) -> None:
    """Let each index reach the submission's other sources.

    Why: a per-function detector (SLOT via a helper, #1229) must follow a call into a helper
    module (``from slot_opt import optimize_slot``) while it only holds the caller's index.
    ``Configuration`` links the indexes once per submission, before any detector runs."""
    refs = [weakref.ref(index) for index in indexes]
    for index in indexes:
        index._peers = refs


_KIND_OF: dict[type, str] = {
    cst.Call: "calls",
    cst.Assign: "assigns",
    cst.AugAssign: "assigns",
    cst.AnnAssign: "assigns",
    cst.BinaryOperation: "binops",
    cst.Subscript: "subscripts",
    cst.FunctionDef: "functions",
    cst.For: "loops",
    cst.While: "loops",
    cst.Comparison: "comparisons",
    cst.Import: "imports",
    cst.ImportFrom: "imports",
}
_RECENT: list[tuple[ParsedSource, ModuleIndex]] = []
_RECENT_LIMIT = 8


def index_module(parsed: ParsedSource) -> ModuleIndex:
    """Group the nodes of one parsed source by kind (shared by both rule families).

    The parse layer's parent map already lists every node in pre-order, so indexing is one
    pass over a dict instead of another libcst visitor walk; the last few indexes are kept
    so the second family reuses the first one's work."""
    for known, index in _RECENT:
        if known is parsed:
            return index
    index = ModuleIndex(parsed=parsed)
    for node in parsed.nodes:
        kind = _KIND_OF.get(type(node))
        if kind is not None:
            getattr(index, kind).append(node)
    for own in index.own_lists():
        own.sort(key=lambda node: _start(index, node))
        index._keys[id(own)] = [_start(index, node) for node in own]
    _RECENT.append((parsed, index))
    del _RECENT[:-_RECENT_LIMIT]
    return index


def _start(index: ModuleIndex, node: cst.CSTNode) -> int:
    """Start offset: sorts like (line, column) and compares cheaper."""
    where = index.parsed.positions.offsets(node)
    return where[0] if where is not None else -1


def nodes_within(index_nodes: list, container: cst.CSTNode, index: ModuleIndex) -> list:
    """The members of ``index_nodes`` that sit inside ``container`` (by source range).

    For the index's own (position-sorted) lists this is a binary search, which keeps the
    per-function analyses linear overall on 3,800-line files."""
    offsets = index.parsed.positions.offsets
    outer = offsets(container)
    if outer is None:
        return []
    start, end = outer
    keys = index.sorted_keys(index_nodes)
    candidates = index_nodes
    if keys is not None:
        candidates = index_nodes[bisect_left(keys, start) : bisect_right(keys, end)]
    inside = []
    for node in candidates:
        where = offsets(node)
        if where is not None and start <= where[0] and where[1] <= end:
            inside.append(node)
    return inside


@dataclass(frozen=True)
class Hit:
    """A detector's raw result, before the configuration decides its final severity.

    ``node`` is what the configuration guards are looked up from (the flagged statement);
    ``path`` is the evidence trail shown to the reviewer.
    """

    rule: str
    index: ModuleIndex
    node: cst.CSTNode
    message: str
    path: tuple[Step, ...] = ()
    zero_factors: tuple[cst.CSTNode, ...] = ()  # factors that switch the mechanism off when 0
    when: str | None = None  # a situation the rule's page declares a lower severity for


def step(index: ModuleIndex, node: cst.CSTNode, note: str) -> Step:
    return Step(file=index.name, line=index.line(node), note=note)
