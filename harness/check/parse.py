"""Parse each source once with libcst and share the tree with every rule family.

Why libcst and not ``ast``: decoded submissions use Python 3.12 syntax (PEP 701 f-strings)
while the harness runs on 3.11; libcst's native parser accepts it. Positions are resolved
once here because every finding needs a line number.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from harness.submission import SourceFile


@dataclass
class ParsedSource:
    source: SourceFile
    module: cst.Module
    wrapper: MetadataWrapper
    positions: object  # Mapping[cst.CSTNode, CodeRange]
    parents: object  # Mapping[cst.CSTNode, cst.CSTNode]

    def line_of(self, node: cst.CSTNode) -> int:
        """1-based start line of ``node`` in this source (0 when unknown)."""
        position = self.positions.get(node)  # type: ignore[attr-defined]
        return position.start.line if position is not None else 0

    def code_of(self, node: cst.CSTNode) -> str:
        return self.module.code_for_node(node)


class ParseFailure(Exception):
    """The source is not Python that libcst can parse; carries a one-line reason."""


# Real code nests a few dozen levels; libcst's parse time grows quadratically with long operator
# chains (2,000 terms take seconds, 5,000 take a minute), so a hostile file could stall the audit.
MAX_EXPRESSION_DEPTH = 400


def _expression_depth(tree: ast.AST) -> int:
    """Deepest chain of nested expression nodes, walked iteratively (no recursion limit)."""
    deepest = 0
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        here = depth + 1 if isinstance(node, ast.expr) else 0
        deepest = max(deepest, here)
        stack.extend((child, here) for child in ast.iter_child_nodes(node))
    return deepest


def _precheck(source: SourceFile) -> None:
    """Refuse pathological nesting cheaply with ``ast`` before libcst sees it.

    ``ast`` rejects some valid 3.12 syntax on 3.11 (PEP 701 f-strings); such files skip the
    pre-check and go straight to libcst, which accepts them.
    """
    try:
        tree = ast.parse(source.text)
    except (SyntaxError, ValueError):
        return
    except (RecursionError, MemoryError):
        raise ParseFailure(f"cannot analyze {source.display_name}: nesting too deep") from None
    depth = _expression_depth(tree)
    if depth > MAX_EXPRESSION_DEPTH:
        raise ParseFailure(
            f"cannot analyze {source.display_name}: an expression nests {depth} levels "
            f"(limit {MAX_EXPRESSION_DEPTH})"
        )


def parse_source(source: SourceFile) -> ParsedSource:
    _precheck(source)
    try:
        module = cst.parse_module(source.text)
    except (cst.ParserSyntaxError, RecursionError, ValueError, MemoryError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ParseFailure(f"cannot parse {source.display_name}: {first_line}") from None
    try:
        wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
        positions = wrapper.resolve(PositionProvider)
        parents = _parent_map(module)
    except RecursionError:
        raise ParseFailure(f"cannot analyze {source.display_name}: nesting too deep") from None
    return ParsedSource(
        source=source,
        module=module,
        wrapper=wrapper,
        positions=positions,
        parents=parents,
    )


class _ParentRecorder(cst.CSTVisitor):
    """One plain walk recording each node's parent: about 3x cheaper than libcst's
    ParentNodeProvider, which matters for the 1.5 s budget on 3,800-line files."""

    def __init__(self) -> None:
        self.parents: dict[cst.CSTNode, cst.CSTNode] = {}
        self._stack: list[cst.CSTNode] = []

    def on_visit(self, node: cst.CSTNode) -> bool:
        if self._stack:
            self.parents[node] = self._stack[-1]
        self._stack.append(node)
        return True

    def on_leave(self, original_node: cst.CSTNode) -> None:
        self._stack.pop()


def _parent_map(module: cst.Module) -> dict[cst.CSTNode, cst.CSTNode]:
    recorder = _ParentRecorder()
    module.visit(recorder)
    return recorder.parents
