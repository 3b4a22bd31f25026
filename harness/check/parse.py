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
from bisect import bisect_right
from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

import libcst as cst
from libcst._nodes.expression import _BaseParenthesizedNode as ParenthesizedNode
from libcst._nodes.internal import CodegenState

from harness.check.node_init import fast_node_construction
from harness.check.node_types import use_plain_type_tests
from harness.check.parse_compat import libcst_compatible
from harness.python_ast import parse_python, recent_module, remember_module
from harness.submission import SourceFile

use_plain_type_tests()  # every rule family reads trees parsed here


class ParsedSource:
    """One parsed source with the positions and parents every rule family reads.

    Positions and parents are keyed by ``id(node)``: libcst nodes hash through a Python-level
    ``__hash__``, which was a measurable share of the run time, and every keyed node is kept
    alive by ``module``, so an id cannot be reused while this object lives."""

    __slots__ = ("source", "module", "positions", "nodes", "_parents", "_extents", "_text")

    def __init__(
        self,
        source: SourceFile,
        module: cst.Module,
        positions: Positions,
        nodes: list[cst.CSTNode],
        parents: dict[int, cst.CSTNode],
        extents: dict[int, tuple[int, int]] | None = None,
        text: str | None = None,
    ) -> None:
        self.source = source
        # the text the module was parsed from: the source, or its libcst-compatible rewrite
        self._text = source.text if text is None else text
        self.module = module
        self.positions = positions  # syntactic ranges, as libcst's PositionProvider
        self.nodes = nodes  # every node but the module and whitespace/punctuation, in pre-order
        self._parents = parents
        self._extents = extents or {}  # id -> offsets of all the text a node generates

    def parent_of(self, node: cst.CSTNode) -> cst.CSTNode | None:
        return self._parents.get(id(node))

    def line_of(self, node: cst.CSTNode) -> int:
        """1-based start line of ``node`` in this source (0 when unknown)."""
        position = self.positions.get(node)
        return position.start.line if position is not None else 0

    def code_of(self, node: cst.CSTNode) -> str:
        """``module.code_for_node(node)``. For a one-line expression that is the node's slice
        of the source: an expression emits no indentation tokens except on continuation lines
        (which code generation on its own would not indent), so only those are generated."""
        extent = self._extents.get(id(node)) if isinstance(node, cst.BaseExpression) else None
        if extent is not None:
            text = self._text
            start, end = extent
            if "\n" not in text[start:end] and "\r" not in text[start:end]:
                return text[start:end]
        return self.module.code_for_node(node)

    def flat_code(self, node: cst.CSTNode) -> str:
        """``code_of(node)`` with every run of whitespace made one space (messages, searches).

        The source slice serves for any node here: it differs from the generated code only by
        the indentation tokens at line starts, which flattening removes either way."""
        extent = self._extents.get(id(node))
        if extent is None:
            return " ".join(self.module.code_for_node(node).split())
        return " ".join(self._text[extent[0] : extent[1]].split())


def string_literal_value(node: cst.SimpleString) -> str | bytes:
    """``node.evaluated_value``, without compiling a string for the common literal.

    libcst evaluates every literal with ``ast.literal_eval`` (a ``compile`` each, about a tenth
    of the rule time on a large file). A str literal with no backslash, CR or NUL means its
    body, raw or not; anything else goes to ``literal_eval`` and raises as it would."""
    return _literal_value(node.value)


def _evaluate_literal(text: str) -> str | bytes:
    with warnings.catch_warnings():  # invalid escapes in submission code are not our warnings
        warnings.simplefilter("ignore")
        return ast.literal_eval(text)


@lru_cache(maxsize=8192)
def _literal_value(text: str) -> str | bytes:
    prefix_length = 0
    while prefix_length < len(text) and text[prefix_length] not in "'\"":
        prefix_length += 1
    prefix = text[:prefix_length].lower()
    body = text[prefix_length:]
    if "b" in prefix or "\x00" in body or "\r" in body or ("\\" in body and "r" not in prefix):
        return _evaluate_literal(text)
    quote = body[:3] if body[:3] in ('"""', "'''") else body[:1]
    if len(body) < 2 * len(quote) or not body.endswith(quote):
        return _evaluate_literal(text)
    return body[len(quote) : len(body) - len(quote)]


class ParseFailure(Exception):
    """The source is not Python that libcst can parse; carries a one-line reason."""


# Real code nests a few dozen levels; libcst's parse time grows quadratically with long operator
# chains (2,000 terms take seconds, 5,000 take a minute), so a hostile file could stall the audit.
MAX_EXPRESSION_DEPTH = 400
_NESTING_LIMIT_MESSAGES = re.compile(r"too many (nested parentheses|levels of indentation|statically nested blocks)")


# Room for nodes that share their parent's span (3.11 gives an f-string's parts the span of the
# whole f-string), so a span bound stays an upper bound.
_SPAN_SLACK = 16


def _expression_depth(tree: ast.AST, limit: int = MAX_EXPRESSION_DEPTH) -> int:
    """Deepest chain of nested expression nodes, walked iteratively (no recursion limit).

    Exact whenever it exceeds ``limit``. Each nested expression is strictly inside its parent,
    so a one-line expression spanning ``n`` bytes nests at most ``n`` levels: a subtree whose
    bound stays within ``limit`` is not walked, which skips nearly every expression of real
    code and leaves the statements and the long expressions."""
    deepest = 0
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    expression = ast.expr
    while stack:
        node, depth = stack.pop()
        if isinstance(node, expression):
            here = depth + 1
            if here > deepest:
                deepest = here
            if node.lineno == node.end_lineno and (
                here + node.end_col_offset - node.col_offset + _SPAN_SLACK <= limit  # type: ignore[operator]
            ):
                continue
        else:
            here = 0
        stack.extend((child, here) for child in ast.iter_child_nodes(node))
    return deepest


def _precheck(source: SourceFile) -> None:
    """Refuse pathological nesting cheaply with ``ast`` before libcst sees it.

    ``ast`` rejects some valid 3.12 syntax on 3.11 (PEP 701 f-strings); such files skip the
    pre-check and go straight to libcst, which accepts them.
    """
    if "\x00" in source.text:
        # CPython refuses any NUL byte in a source file (even inside a comment, which libcst
        # would accept): such a file cannot run, so its analysis would describe nothing
        raise ParseFailure(f"cannot parse {source.display_name}: the file contains NUL bytes, which Python refuses")
    try:
        tree = parse_python(source.text)  # usually the loader's tree, already parsed
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
            f"cannot analyze {source.display_name}: an expression nests {depth} levels (limit {MAX_EXPRESSION_DEPTH})"
        )


def _parse_unvalidated(text: str) -> cst.Module:
    """``cst.parse_module`` with cheap node construction and no per-node validation, about
    a third faster: every node's ``__post_init__`` re-checks invariants meant for hand-built
    trees (libcst's own comment there suggests skipping it when parsing), and the parser's
    output holds them by construction (see ``node_init``)."""
    with fast_node_construction():
        return cst.parse_module(text)


def parse_libcst(text: str, *, remember: bool = False) -> cst.Module:
    """``_parse_unvalidated``, reusing the module of this very text when the unwrapper already
    parsed it (a decoded payload in 3.12 syntax); ``remember`` keeps the result for that.
    Raises what libcst raises."""
    module = recent_module(text)
    if isinstance(module, cst.Module):
        return module
    module = _parse_unvalidated(text)
    if remember:
        remember_module(text, module)
    return module


def positions_of(module: cst.Module, text: str) -> tuple[Positions, list[cst.CSTNode]]:
    """Syntactic positions of every node of ``module`` parsed from ``text`` (the same pass as
    ``parse_source``), and the nodes in pre-order."""
    positions, nodes, _, _ = _positions_and_parents(module, text)
    return positions, nodes


def parse_source(source: SourceFile) -> ParsedSource:
    _precheck(source)
    text = source.text
    try:
        try:
            module = parse_libcst(text)
        except cst.ParserSyntaxError:
            text = _libcst_compatible(text) or text
            if text is source.text:
                raise
            module = _parse_unvalidated(text)
    except (cst.ParserSyntaxError, RecursionError, ValueError, MemoryError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ParseFailure(f"cannot parse {source.display_name}: {first_line}") from None
    try:
        positions, nodes, parents, extents = _positions_and_parents(module, text)
    except RecursionError:
        raise ParseFailure(f"cannot analyze {source.display_name}: nesting too deep") from None
    return ParsedSource(
        source=source, module=module, positions=positions, nodes=nodes, parents=parents, extents=extents, text=text
    )


def _libcst_compatible(text: str) -> str | None:
    """The source rewritten where libcst's grammar refuses valid Python (``parse_compat``),
    when CPython's ``ast`` accepts it; None otherwise."""
    try:
        tree = parse_python(text)
    except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError):
        return None
    return libcst_compatible(text, tree)


class CodePoint(NamedTuple):
    """A 1-based line and 0-based column, like libcst's CodePosition (tuples are cheaper)."""

    line: int
    column: int


class CodeSpan(NamedTuple):
    """Start and end of a node, like libcst's CodeRange: ``.start.line``, ``.end.column``."""

    start: CodePoint
    end: CodePoint


class Positions:
    """Node → CodeSpan, converted from character offsets only when a rule asks.

    The code-generation pass records two offsets per node (an int add per token instead of
    line/column arithmetic); most of the ~60k recorded nodes of a 3,800-line file are never
    looked up, so turning offsets into lines lazily keeps the pass near libcst's bare codegen."""

    __slots__ = ("_offsets", "_line_starts", "_spans")

    def __init__(self, offsets: dict[int, tuple[int, int]], line_starts: list[int]) -> None:
        self._offsets = offsets
        self._line_starts = line_starts
        self._spans: dict[int, CodeSpan] = {}

    def offsets(self, node: cst.CSTNode) -> tuple[int, int] | None:
        """Start and end character offsets: ordered like (line, column), cheaper to compare."""
        return self._offsets.get(id(node))

    def get(self, node: cst.CSTNode, default: CodeSpan | None = None) -> CodeSpan | None:
        key = id(node)
        span = self._spans.get(key)
        if span is None:
            offsets = self._offsets.get(key)
            if offsets is None:
                return default
            span = self._spans[key] = CodeSpan(self._point(offsets[0]), self._point(offsets[1]))
        return span

    def __getitem__(self, node: cst.CSTNode) -> CodeSpan:
        span = self.get(node)
        if span is None:
            raise KeyError(node)
        return span

    def __contains__(self, node: object) -> bool:
        return id(node) in self._offsets

    def __len__(self) -> int:
        return len(self._offsets)

    def _point(self, offset: int) -> CodePoint:
        line = bisect_right(self._line_starts, offset)
        return CodePoint(line, offset - self._line_starts[line - 1])


# Leaf trivia no rule ever looks at; about half of all nodes (50k of 115k in a 3,800-line file
# are SimpleWhitespace). Neither children helper returns them, so skipping them here changes
# no finding, only the cost of the pass.
_TRIVIA: frozenset[type] = frozenset(
    {
        cst.SimpleWhitespace,
        cst.ParenthesizedWhitespace,
        cst.Newline,
        cst.TrailingWhitespace,
        cst.EmptyLine,
        cst.Comment,
        cst.Comma,
        cst.LeftParen,
        cst.RightParen,
        cst.AssignEqual,
        cst.Semicolon,
    }
)


class _PositionAndParentState(CodegenState):
    """libcst's code generator, reduced to what its ``PositionProvider`` tracks (syntactic
    ranges, same values — a test compares them) plus the parent of every node, in one pass.

    Only offsets are tracked, never the text: the text is the source itself (libcst round-trips
    it exactly), so no token list is built. ``tokens`` stays one empty string long so that
    ``Module`` never believes the file empty and never pops a newline that was not added."""

    def prepare(self) -> None:
        self.offset = 0
        self.tokens = [""]
        self.offsets: dict[int, tuple[int, int]] = {}
        self.extents: dict[int, tuple[int, int]] = {}  # everything a node generates, parentheses included
        self.parents: dict[int, cst.CSTNode] = {}
        self.nodes: list[cst.CSTNode] = []
        # Open syntactic ranges: node, start/end node, start offset, and the right parentheses
        # to emit once the range closes (a parenthesized expression's range excludes them).
        self.syntactic: list[
            tuple[cst.CSTNode, cst.CSTNode | None, cst.CSTNode | None, int, Sequence[cst.CSTNode]]
        ] = []
        self.open_nodes: list[cst.CSTNode] = []
        self.span_exit = _SyntacticSpanExit(self)

    def add_indent_tokens(self) -> None:
        for token in self.indent_tokens:
            self.offset += len(token)

    def add_token(self, value: str) -> None:
        self.offset += len(value)

    def pop_trailing_newline(self) -> None:
        return None  # offsets past the last token are never read

    def record_syntactic_position(  # type: ignore[override]
        self,
        node: cst.CSTNode,
        *,
        start_node: cst.CSTNode | None = None,
        end_node: cst.CSTNode | None = None,
    ) -> _SyntacticSpanExit:
        self.syntactic.append((node, start_node, end_node, self.offset, ()))
        return self.span_exit


class _SyntacticSpanExit:
    """The ``with`` body of ``record_syntactic_position`` and ``_parenthesize``: the opener
    pushes the node and its start, and this one shared object pops and records them on exit
    (libcst's own are generator-based context managers, the largest single cost of the pass
    when used as they are)."""

    __slots__ = ("state",)

    def __init__(self, state: _PositionAndParentState) -> None:
        self.state = state

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> bool:
        state = self.state
        node, start_node, end_node, start, closing_parentheses = state.syntactic.pop()
        offsets = state.offsets
        # A start or end node that is trivia (the right parenthesis of a parenthesized
        # ``from x import (a, b)``) records no offsets of its own; trivia never start a
        # range, and an end that is trivia is the last token of the range, so the current
        # offset is its end.
        if start_node is not None and id(start_node) in offsets:
            start = offsets[id(start_node)][0]
        end_offsets = offsets.get(id(end_node)) if end_node is not None else None
        end = end_offsets[1] if end_offsets is not None else state.offset
        offsets[id(node)] = (start, end)
        for parenthesis in closing_parentheses:
            parenthesis._codegen(state)
        return False


def _recording_codegen(self: cst.CSTNode, state: _PositionAndParentState, **kwargs: object) -> None:
    """``CSTNode._codegen`` during the pass: libcst's ``before_codegen``/``after_codegen`` hooks
    inlined (two method calls fewer for each of the ~60k recorded nodes)."""
    open_nodes = state.open_nodes
    if open_nodes:
        state.parents[id(self)] = open_nodes[-1]
        state.nodes.append(self)
    open_nodes.append(self)
    start = state.offset
    self._codegen_impl(state, **kwargs)
    open_nodes.pop()
    key = id(self)
    extent = state.extents[key] = (start, state.offset)
    if key not in state.offsets:  # a syntactic range recorded inside wins, as in libcst
        state.offsets[key] = extent


def _whitespace_codegen(self: cst.SimpleWhitespace, state: _PositionAndParentState, **kwargs: object) -> None:
    state.offset += len(self.value)


def _parenthesize(self: cst.BaseExpression, state: _PositionAndParentState) -> _SyntacticSpanExit:
    """libcst's ``_parenthesize`` without the generator: left parentheses, then the node's
    syntactic range, then (on exit) the right parentheses."""
    for parenthesis in self.lpar:
        parenthesis._codegen(state)
    state.syntactic.append((self, None, None, state.offset, self.rpar))
    return state.span_exit


def _concatenated_codegen(self: cst.ConcatenatedString, state: _PositionAndParentState, **kwargs: object) -> None:
    """``_recording_codegen`` of a chain of adjacent literals, in a loop. libcst nests them to
    the right, one level per literal: a payload split over a few thousand lines (a shim's
    literal, Sphinx's pydoc topics) would exceed the recursion limit as ordinary recursion.
    Each link records what ``_recording_codegen`` records, in the same order."""
    spine: list[tuple[cst.ConcatenatedString, int]] = []
    open_nodes = state.open_nodes
    node: cst.BaseExpression = self
    while type(node) is cst.ConcatenatedString:
        if open_nodes:
            state.parents[id(node)] = open_nodes[-1]
            state.nodes.append(node)
        open_nodes.append(node)
        spine.append((node, state.offset))  # type: ignore[arg-type]
        _parenthesize(node, state)  # left parentheses, then the open syntactic range
        node.left._codegen(state)  # type: ignore[attr-defined]
        node.whitespace_between._codegen(state)  # type: ignore[attr-defined]
        node = node.right  # type: ignore[attr-defined]
    node._codegen(state)
    offsets, extents, span_exit = state.offsets, state.extents, state.span_exit
    for link, start in reversed(spine):
        span_exit.__exit__(None, None, None)  # closes the range, then the right parentheses
        open_nodes.pop()
        key = id(link)
        extent = extents[key] = (start, state.offset)
        if key not in offsets:
            offsets[key] = extent


def _pass_methods() -> list[tuple[type, str, object]]:
    """(class, attribute, replacement) for the duration of one pass: trivia skip the
    recording hooks entirely, every other node records itself."""
    replacements: list[tuple[type, str, object]] = [
        (cst.CSTNode, "_codegen", _recording_codegen),
        (ParenthesizedNode, "_parenthesize", _parenthesize),
        (cst.ConcatenatedString, "_codegen", _concatenated_codegen),
    ]
    for trivia in _TRIVIA - {cst.SimpleWhitespace}:
        replacements.append((trivia, "_codegen", trivia._codegen_impl))
    replacements.append((cst.SimpleWhitespace, "_codegen", _whitespace_codegen))
    return replacements


_PASS_METHODS = _pass_methods()


def _run_pass(module: cst.Module, state: _PositionAndParentState) -> None:
    """``module._codegen(state)`` with the pass's methods installed, and libcst's own methods
    restored afterwards whatever happens (other code in this process may generate code)."""
    saved = [(owner, name, owner.__dict__.get(name)) for owner, name, _ in _PASS_METHODS]
    try:
        for owner, name, replacement in _PASS_METHODS:
            setattr(owner, name, replacement)
        module._codegen(state)
    finally:
        for owner, name, original in saved:
            if original is None:
                delattr(owner, name)
            else:
                setattr(owner, name, original)


_NEWLINE = re.compile(r"\r\n?|\n")


def _line_starts(code: str) -> list[int]:
    """Offsets where each line begins, splitting on the newlines libcst's positions count."""
    return [0, *(match.end() for match in _NEWLINE.finditer(code))]


def _positions_and_parents(
    module: cst.Module, text: str
) -> tuple[Positions, list[cst.CSTNode], dict[int, cst.CSTNode], dict[int, tuple[int, int]]]:
    state = _PositionAndParentState(default_indent=module.default_indent, default_newline=module.default_newline)
    state.prepare()
    _run_pass(module, state)
    # The generated text is the source (libcst round-trips it; a source without a final newline
    # gets one, popped at the end). Should that ever not hold, the lines come from the code.
    extents = state.extents
    if state.offset not in (len(text), len(text) + len(module.default_newline)):
        text = module.code
        extents = {}  # slices of the source would not be the generated code
    # The state and its span exit refer to each other: left as a cycle, the state (and,
    # through it, the whole tree) would wait for the cyclic GC instead of being freed by
    # reference counting when the audit ends.
    state.span_exit = None  # type: ignore[assignment]
    return Positions(state.offsets, _line_starts(text)), state.nodes, state.parents, extents
