"""Parse each source once with libcst and share the tree with every rule family.

Why libcst and not ``ast``: decoded submissions use Python 3.12 syntax (PEP 701 f-strings)
while the harness runs on 3.11; libcst's native parser accepts it. Positions and parents are
computed here, once, in a single code-generation pass, because every finding needs a line
number and libcst's own metadata providers (two tree walks plus wrapper bookkeeping) cost
more than the parse itself on a 3,800-line submission.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

import libcst as cst
from libcst._position import CodePosition, CodeRange
from libcst.metadata import PositionProvider
from libcst.metadata.position_provider import PositionProvidingCodegenState

from harness.submission import SourceFile


@dataclass
class ParsedSource:
    source: SourceFile
    module: cst.Module
    positions: dict[cst.CSTNode, CodeRange]  # syntactic ranges, as libcst's PositionProvider
    parents: dict[cst.CSTNode, cst.CSTNode]  # every node but the module, in source (pre-)order

    def line_of(self, node: cst.CSTNode) -> int:
        """1-based start line of ``node`` in this source (0 when unknown)."""
        position = self.positions.get(node)
        return position.start.line if position is not None else 0

    def code_of(self, node: cst.CSTNode) -> str:
        return self.module.code_for_node(node)


class ParseFailure(Exception):
    """The source is not Python that libcst can parse; carries a one-line reason."""


# Real code nests a few dozen levels; libcst's parse time grows quadratically with long operator
# chains (2,000 terms take seconds, 5,000 take a minute), so a hostile file could stall the audit.
MAX_EXPRESSION_DEPTH = 400
_NESTING_LIMIT_MESSAGES = re.compile(r"too many (nested parentheses|levels of indentation|statically nested blocks)")


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
    except SyntaxError as error:
        # CPython's own nesting limits: such a file cannot run anywhere, and libcst's native
        # parser can overflow its stack (a segfault) on it, so it must never reach libcst.
        if _NESTING_LIMIT_MESSAGES.search(str(error.msg)):
            raise ParseFailure(f"cannot analyze {source.display_name}: nesting too deep") from None
        return
    except ValueError:
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
        positions, parents = _positions_and_parents(module)
    except RecursionError:
        raise ParseFailure(f"cannot analyze {source.display_name}: nesting too deep") from None
    return ParsedSource(source=source, module=module, positions=positions, parents=parents)


class _PositionAndParentState(PositionProvidingCodegenState):
    """libcst's position-tracking code generator, plus the parent of every node.

    Same ranges as ``PositionProvider`` (a test compares them); newline counting without a
    regex for the common case, and parents recorded on the way down instead of in a second
    visitor walk."""

    __slots__ = ("parents", "_open_nodes")

    def _update_position(self, value: str) -> None:
        if "\r" in value:
            PositionProvidingCodegenState._update_position(self, value)
            return
        newlines = value.count("\n")
        if newlines == 0:
            self.column += len(value)
        else:
            self.line += newlines
            self.column = len(value) - value.rfind("\n") - 1

    def before_codegen(self, node: cst.CSTNode) -> None:
        if self._open_nodes:
            self.parents[node] = self._open_nodes[-1]
        self._open_nodes.append(node)
        self._stack.append(CodePosition(self.line, self.column))

    def after_codegen(self, node: cst.CSTNode) -> None:
        self._open_nodes.pop()
        start = self._stack.pop()
        computed = self.provider._computed
        if node not in computed:
            computed[node] = CodeRange(start, CodePosition(self.line, self.column))


def _positions_and_parents(
    module: cst.Module,
) -> tuple[dict[cst.CSTNode, CodeRange], dict[cst.CSTNode, cst.CSTNode]]:
    provider = PositionProvider()
    state = _PositionAndParentState(
        default_indent=module.default_indent, default_newline=module.default_newline, provider=provider
    )
    state.parents = {}
    state._open_nodes = []
    module._codegen(state)
    return dict(provider._computed), state.parents
