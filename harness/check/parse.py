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
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import libcst as cst
from libcst._nodes.internal import CodegenState

from harness.submission import SourceFile


@dataclass
class ParsedSource:
    source: SourceFile
    module: cst.Module
    positions: dict[cst.CSTNode, CodeSpan]  # syntactic ranges, as libcst's PositionProvider
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
        with warnings.catch_warnings():  # SyntaxWarnings about submission code are noise here
            warnings.simplefilter("ignore")
            tree = ast.parse(source.text)
    except SyntaxError as error:
        # CPython's own nesting limits: such a file cannot run anywhere, and libcst's native
        # parser can overflow its stack (a segfault) on it, so it must never reach libcst.
        if _NESTING_LIMIT_MESSAGES.search(str(error.msg)):
            raise ParseFailure(f"cannot analyze {source.display_name}: nesting too deep") from None
        return
    except (ValueError, OverflowError):
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


class CodePoint(NamedTuple):
    """A 1-based line and 0-based column, like libcst's CodePosition (tuples are cheaper)."""

    line: int
    column: int


class CodeSpan(NamedTuple):
    """Start and end of a node, like libcst's CodeRange: ``.start.line``, ``.end.column``."""

    start: CodePoint
    end: CodePoint


class _SyntacticSpan:
    """Class-based stand-in for libcst's ``@contextmanager`` recorder: generator-based context
    managers were the largest single cost of the position pass (80k per 3,800 lines)."""

    __slots__ = ("state", "node", "start_node", "end_node", "start")

    def __init__(self, state: _PositionAndParentState, node: cst.CSTNode,
                 start_node: cst.CSTNode | None, end_node: cst.CSTNode | None) -> None:
        self.state, self.node, self.start_node, self.end_node = state, node, start_node, end_node

    def __enter__(self) -> None:
        self.start = CodePoint(self.state.line, self.state.column)

    def __exit__(self, *exc_info: object) -> bool:
        state = self.state
        start = state.positions[self.start_node].start if self.start_node is not None else self.start
        end = (state.positions[self.end_node].end if self.end_node is not None
               else CodePoint(state.line, state.column))
        state.positions[self.node] = CodeSpan(start, end)
        return False


class _PositionAndParentState(CodegenState):
    """libcst's code generator, tracking what its ``PositionProvider`` tracks (syntactic ranges,
    same values — a test compares them) plus the parent of every node, in one pass."""

    __slots__ = ("line", "column", "positions", "parents", "_starts", "_open_nodes")

    def prepare(self) -> None:
        self.line, self.column = 1, 0
        self.positions: dict[cst.CSTNode, CodeSpan] = {}
        self.parents: dict[cst.CSTNode, cst.CSTNode] = {}
        self._starts: list[CodePoint] = []
        self._open_nodes: list[cst.CSTNode] = []

    def add_indent_tokens(self) -> None:
        self.tokens.extend(self.indent_tokens)
        for token in self.indent_tokens:
            self._advance(token)

    def add_token(self, value: str) -> None:
        self.tokens.append(value)
        self._advance(value)

    def _advance(self, value: str) -> None:
        if "\r" in value:
            segments = _NEWLINE.split(value)
            if len(segments) > 1:
                self.line += len(segments) - 1
                self.column = len(segments[-1])
            else:
                self.column += len(value)
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
        self._starts.append(CodePoint(self.line, self.column))

    def after_codegen(self, node: cst.CSTNode) -> None:
        self._open_nodes.pop()
        start = self._starts.pop()
        if node not in self.positions:  # a syntactic range recorded inside wins, as in libcst
            self.positions[node] = CodeSpan(start, CodePoint(self.line, self.column))

    def record_syntactic_position(  # type: ignore[override]
        self, node: cst.CSTNode, *, start_node: cst.CSTNode | None = None,
        end_node: cst.CSTNode | None = None,
    ) -> _SyntacticSpan:
        return _SyntacticSpan(self, node, start_node, end_node)


_NEWLINE = re.compile(r"\r\n?|\n")


def _positions_and_parents(
    module: cst.Module,
) -> tuple[dict[cst.CSTNode, CodeSpan], dict[cst.CSTNode, cst.CSTNode]]:
    state = _PositionAndParentState(default_indent=module.default_indent, default_newline=module.default_newline)
    state.prepare()
    module._codegen(state)
    return state.positions, state.parents
