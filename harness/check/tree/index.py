"""The one index of a submission's Python sources that every rule family reads.

Why: walking a 3,800-line decoded submission once and sharing "all calls", "the function this
node sits in", "what ``helper`` was imported from" and the submission's other files (the
decisive code is often in a helper module) keeps every family inside the time budget.
Resolution is by name only: nothing is imported or executed.
"""

from __future__ import annotations

import re
import weakref
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import libcst as cst

from harness.check.parse import ParsedSource
from harness.check.tree.children import children, node_memo
from harness.check.tree.nodes import dotted_name

Definition = cst.FunctionDef | cst.ClassDef


@dataclass(eq=False)
class ModuleIndex:
    """One parsed source: its nodes grouped by kind (each list in source order), its
    module-level definitions and imports, and lookups of enclosing scopes."""

    parsed: ParsedSource
    calls: list[cst.Call] = field(default_factory=list)
    assigns: list[cst.CSTNode] = field(default_factory=list)  # Assign / AugAssign / AnnAssign
    binops: list[cst.BinaryOperation] = field(default_factory=list)
    subscripts: list[cst.Subscript] = field(default_factory=list)
    functions: list[cst.FunctionDef] = field(default_factory=list)  # every def, nested and methods too
    loops: list[cst.CSTNode] = field(default_factory=list)  # For / While
    comparisons: list[cst.Comparison] = field(default_factory=list)
    imports: list[cst.CSTNode] = field(default_factory=list)  # every Import / ImportFrom
    # module-level ``def``s and classes in source order (those under ``if``/``try`` included)
    definitions: list[Definition] = field(default_factory=list)
    # every import wherever it sits: local name -> qualified name (``ur`` -> ``urllib.request``)
    aliases: dict[str, str] = field(default_factory=dict)
    # module-level imports: ``import helper as h`` (h -> helper), ``from pkg.helper import f as g``
    # (g -> (helper, f)); what call resolution follows into the submission's other files
    module_imports: dict[str, str] = field(default_factory=dict)
    from_imports: dict[str, tuple[str, str]] = field(default_factory=dict)
    # per-node answers detectors compute more than once, keyed (question, id(node))
    memo: dict[tuple[str, int], bool] = field(default_factory=dict)

    _keys: dict[int, list[int]] = field(default_factory=dict)  # start offsets of each own list
    _owner: dict[int, cst.FunctionDef | None] = field(default_factory=dict)
    _lines: list[str] = field(default_factory=list)
    _by_name: dict[str, list[cst.FunctionDef]] = field(default_factory=dict)
    # the submission's indexes, set by ``index_submission``; weak, so no index→peers→index
    # cycle keeps the trees alive past the audit (they must go by reference counting alone)
    _peers: list[weakref.ref[ModuleIndex]] = field(default_factory=list)

    def own_lists(self) -> list[list[Any]]:
        return [self.calls, self.assigns, self.binops, self.subscripts, self.functions, self.loops, self.comparisons]

    @property
    def name(self) -> str:
        """The file as findings show it (``train_gpt.py[decoded#1]`` for a decoded shim)."""
        return self.parsed.source.display_name

    @property
    def module(self) -> str:
        """The name other files import it by (``helper`` for ``pkg/helper.py``)."""
        return PurePosixPath(_DECODED_SUFFIX.sub("", self.name)).stem

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
        if key not in self._owner:
            self._owner[key] = next((a for a in self.ancestors(node) if isinstance(a, cst.FunctionDef)), None)
        return self._owner[key]

    def text_of(self, node: cst.CSTNode) -> str:
        """The source lines spanned by ``node`` (a cheap prefilter; no code generation)."""
        if not self._lines:
            self._lines.extend(self.parsed.source.text.splitlines())
        where = self.parsed.positions.get(node)
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
        """Every ``def`` of this source with that name, nested ones and methods included."""
        if not self._by_name:
            for function in self.functions:
                self._by_name.setdefault(function.name.value, []).append(function)
        return self._by_name.get(name, [])


_DECODED_SUFFIX = re.compile(r"\[decoded#\d+\]$")
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
_INDEXES: dict[int, tuple[ParsedSource, ModuleIndex]] = node_memo()


def index_module(parsed: ParsedSource) -> ModuleIndex:
    """The index of one parsed source, built once per audit: one pass over the parse layer's
    pre-order node list instead of another libcst visitor walk."""
    known = _INDEXES.get(id(parsed))
    if known is not None and known[0] is parsed:
        return known[1]
    index = ModuleIndex(parsed=parsed)
    for node in parsed.nodes:
        kind = _KIND_OF.get(type(node))
        if kind is not None:
            getattr(index, kind).append(node)
    for own in index.own_lists():
        own.sort(key=lambda node: _start(index, node))
        index._keys[id(own)] = [_start(index, node) for node in own]
    for statement in index.imports:
        index.aliases.update((local, full) for local, full, _ in _bindings(statement))
    _index_definitions(index, parsed.module.body)
    _INDEXES[id(parsed)] = (parsed, index)
    return index


def index_submission(parsed_sources: list[ParsedSource]) -> list[ModuleIndex]:
    """The indexes of all of a submission's sources, each able to reach the others (``peers``):
    a detector holding the caller's index must follow a call into a helper module
    (``from slot_opt import optimize_slot``, #1229)."""
    indexes = [index_module(parsed) for parsed in parsed_sources]
    refs = [weakref.ref(index) for index in indexes]
    for index in indexes:
        index._peers = refs
    return indexes


def _start(index: ModuleIndex, node: cst.CSTNode) -> int:
    """Start offset: sorts like (line, column) and compares cheaper."""
    where = index.parsed.positions.offsets(node)
    return where[0] if where is not None else -1


# compound statements whose blocks still run at module level (``try: import helper except
# ImportError: …``, guarded defs); loops and ``with`` blocks are not read
_BLOCKS = (cst.If, cst.Else, cst.Try, cst.ExceptHandler, cst.Finally, cst.IndentedBlock)


def _index_definitions(index: ModuleIndex, statements: Sequence[cst.CSTNode]) -> None:
    for statement in statements:
        if isinstance(statement, (cst.FunctionDef, cst.ClassDef)):
            index.definitions.append(statement)
        elif isinstance(statement, _BLOCKS):
            _index_definitions(index, children(statement))
        elif isinstance(statement, cst.SimpleStatementLine):
            for local, full, from_import in (b for small in statement.body for b in _bindings(small)):
                module, _, name = full.rpartition(".")
                if from_import:
                    index.from_imports[local] = (module.rsplit(".", 1)[-1], name)
                else:
                    index.module_imports[local] = name


def _bindings(statement: cst.CSTNode) -> Iterator[tuple[str, str, bool]]:
    """The one reader of an import statement: (local name, qualified name, from-import?) for each
    name it binds. ``import a.b`` binds ``a``; a star import binds nothing we can name."""
    if isinstance(statement, cst.Import):
        for alias in statement.names:
            full = dotted_name(alias.name) or ""
            if alias.asname is not None:
                yield dotted_name(alias.asname.name) or full, full, False
            else:
                yield full.split(".", 1)[0], full.split(".", 1)[0], False
    elif isinstance(statement, cst.ImportFrom) and not isinstance(statement.names, cst.ImportStar):
        module = (dotted_name(statement.module) or "") if statement.module is not None else ""
        for alias in statement.names:
            name = dotted_name(alias.name) or ""
            local = dotted_name(alias.asname.name) if alias.asname is not None else name
            yield local or name, f"{module}.{name}" if module else name, True


def nodes_within(index_nodes: list[Any], container: cst.CSTNode, index: ModuleIndex) -> list[Any]:
    """The members of ``index_nodes`` inside ``container`` (by source range); a binary search on
    the index's own sorted lists keeps per-function analyses linear on 3,800-line files."""
    offsets = index.parsed.positions.offsets
    outer = offsets(container)
    if outer is None:
        return []
    start, end = outer
    keys = index._keys.get(id(index_nodes)) if any(index_nodes is own for own in index.own_lists()) else None
    candidates = index_nodes
    if keys is not None:
        candidates = index_nodes[bisect_left(keys, start) : bisect_right(keys, end)]
    inside = []
    for node in candidates:
        where = offsets(node)
        if where is not None and start <= where[0] and where[1] <= end:
            inside.append(node)
    return inside
